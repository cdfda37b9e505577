"""Gate fields in the spec: a threshold no model could fail, or a negative limit, is refused by name."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

from include.modelops.spec import ModelSpecError, load_spec

# A small spec of our own (not the bundled example), one per task type.
BASE = {
    "name": "gatekeeper",
    "description": "Test spec.",
    "owner": {"team": "t", "email": "t@example.com"},
    "task": "binary_classification",
    "data": {"path": "data.parquet"},
    "target": {"name": "label", "classes": [0, 1]},
    "features": [{"name": "x", "type": "numeric"}],
    "evaluation": {"primary_metric": "roc_auc", "gate": {}},
}
TASKS = {
    "binary_classification": ({"name": "label", "classes": [0, 1]}, "roc_auc"),
    "multiclass_classification": ({"name": "label", "classes": ["a", "b", "c"]}, "macro_f1"),
    "regression": ({"name": "label"}, "r2"),
}


def load(tmp_path: Path, task: str = "binary_classification", **gate) -> object:
    raw = copy.deepcopy(BASE)
    target, metric = TASKS[task]
    raw.update(task=task, target=target)
    raw["evaluation"] = {"primary_metric": metric, "gate": gate}
    path = tmp_path / "gatekeeper.yaml"
    path.write_text(yaml.safe_dump(raw))
    return load_spec(path)


def refused(tmp_path: Path, field: str, task: str = "binary_classification", **gate) -> str:
    with pytest.raises(ModelSpecError) as err:
        load(tmp_path, task, **gate)
    text = str(err.value)
    assert f"field '{field}'" in text, text
    return text


def test_a_negative_roc_auc_minimum_is_refused_by_name(tmp_path):
    text = refused(tmp_path, "evaluation.gate.thresholds.roc_auc.min", thresholds={"roc_auc": {"min": -0.6}})
    assert "no model can fail it" in text and "between 0 and 1" in text


@pytest.mark.parametrize(
    ("task", "metric", "bound", "why"),
    [
        ("binary_classification", "roc_auc", {"min": 0.5}, "chance scores roc_auc 0.5"),
        ("binary_classification", "roc_auc", {"min": 1.2}, "no model can pass it"),
        ("binary_classification", "brier", {"max": 0.3}, "chance scores brier 0.25"),
        ("binary_classification", "recall", {"max": 1.0}, "no model can fail it"),
        ("multiclass_classification", "macro_f1", {"min": 0.26}, "chance scores macro_f1 0.3333"),
        ("multiclass_classification", "accuracy", {"min": 0.3}, "chance scores accuracy 0.3333"),
        ("multiclass_classification", "log_loss", {"max": 1.2}, "chance scores log_loss 1.099"),
        ("regression", "r2", {"min": 0.0}, "chance scores r2 0"),
        ("regression", "r2", {"min": 1.0}, "only a perfect model can pass it"),
        ("regression", "rmse", {"max": 0.0}, "only a perfect model can pass it"),
        ("regression", "mae", {"max": -1.0}, "no model can pass it"),
    ],
)
def test_a_threshold_no_model_could_fail_or_pass_is_refused(tmp_path, task, metric, bound, why):
    kind = next(iter(bound))
    text = refused(tmp_path, f"evaluation.gate.thresholds.{metric}.{kind}", task, thresholds={metric: bound})
    assert why in text, text


@pytest.mark.parametrize(
    "field", ["min_margin_over_baseline", "max_drop_vs_champion", "max_relative_drop_vs_champion"]
)
def test_a_negative_gate_limit_is_refused_by_name(tmp_path, field):
    text = refused(tmp_path, f"evaluation.gate.{field}", **{field: -0.01})
    assert "greater than or equal to 0" in text


@pytest.mark.parametrize("field", ["max_drop_vs_champion", "max_gap"])
def test_a_negative_slice_limit_is_refused_by_name(tmp_path, field):
    refused(tmp_path, f"evaluation.gate.slices.{field}", slices={field: -0.1})


def test_an_empty_or_inverted_bound_is_refused(tmp_path):
    assert "needs 'min' or 'max'" in refused(
        tmp_path, "evaluation.gate.thresholds.roc_auc", thresholds={"roc_auc": {}}
    )
    assert "no model can pass" in refused(
        tmp_path, "evaluation.gate.thresholds.roc_auc", thresholds={"roc_auc": {"min": 0.9, "max": 0.8}}
    )


def test_thresholds_just_better_than_chance_and_zero_limits_load(tmp_path):
    # The weakest gate the spec allows: it still loads (the gate's chance check does the rest).
    for task, (_, metric) in TASKS.items():
        spec = load(
            tmp_path,
            task,
            thresholds={metric: {"min": {"roc_auc": 0.501, "macro_f1": 0.334, "r2": 0.001}[metric]}},
            min_margin_over_baseline=0.0,
            max_drop_vs_champion=None,
            slices={"max_gap": 0.0},
        )
        assert spec.evaluation.gate.min_margin_over_baseline == 0.0
    spec = load(tmp_path, "regression", thresholds={"rmse": {"max": 3.5}, "mae": {"max": 2}})
    assert spec.evaluation.gate.thresholds["rmse"].max == 3.5
    # Without target.classes the number of classes is unknown: only the metric's range is checked.
    raw = copy.deepcopy(BASE)
    raw.update(task="multiclass_classification", target={"name": "label"})
    raw["evaluation"] = {"primary_metric": "accuracy", "gate": {"thresholds": {"accuracy": {"min": 0.3}}}}
    (tmp_path / "gatekeeper.yaml").write_text(yaml.safe_dump(raw))
    assert load_spec(tmp_path / "gatekeeper.yaml").evaluation.gate.thresholds["accuracy"].min == 0.3
