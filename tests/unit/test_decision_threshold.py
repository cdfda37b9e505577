"""The decision threshold: a spec's policy, chosen on the training split, reported, and served by the version."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import yaml

from include.modelops.evaluation import threshold as dt
from include.modelops.evaluation.gate import decide
from include.modelops.evaluation.report import evaluate, render_html
from include.modelops.spec import ModelSpec, ModelSpecError, load_spec

PREVALENCE = 0.02


def spec_dict(**evaluation: Any) -> dict[str, Any]:
    return {
        "name": "rare_events",
        "description": "Flags rare events.",
        "owner": {"team": "risk", "email": "risk@example.com"},
        "task": "binary_classification",
        "data": {"path": "data/rare.parquet"},
        "target": {"name": "event", "classes": [0, 1]},
        "features": [{"name": "x1", "type": "numeric"}, {"name": "x2", "type": "numeric"}],
        "evaluation": {"primary_metric": "roc_auc", **evaluation},
    }


def make_spec(**evaluation: Any) -> ModelSpec:
    return ModelSpec.model_validate(spec_dict(**evaluation))


def rare_positive_rows(n: int, seed: int = 0) -> pd.DataFrame:
    """~2% positives; the true probability rarely reaches 0.5, so a 0.5 threshold flags few of them."""
    rng = np.random.default_rng(seed)
    x1, x2 = rng.normal(size=n), rng.normal(size=n)
    logit = -4.6 + 1.3 * x1 + 0.8 * x2
    event = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int)
    return pd.DataFrame({"x1": x1, "x2": x2, "event": event})


def true_probability(df: pd.DataFrame) -> np.ndarray:
    return 1 / (1 + np.exp(-(-4.6 + 1.3 * df["x1"].to_numpy() + 0.8 * df["x2"].to_numpy())))


# ------------------------------------------------------------------------------ choosing


def test_target_recall_reaches_recall_that_half_misses_on_rare_positives():
    df = rare_positive_rows(20_000)
    y, s = df["event"].to_numpy(), true_probability(df)
    assert 0.01 < y.mean() < 0.03
    at_half = dt.operating_point(y, s, 0.5)
    value, met = dt.choose_threshold(y, s, policy="target_recall", target=0.6)
    chosen = dt.operating_point(y, s, value)
    assert at_half["recall"] < 0.3
    assert met and chosen["recall"] >= 0.6
    assert value < 0.5
    # The highest such threshold: the next score above it loses the target.
    above = np.min(s[s > value])
    assert dt.operating_point(y, s, above)["recall"] < 0.6


def test_target_precision_takes_the_most_recall_that_keeps_the_precision():
    y = np.array([1, 1, 0, 1, 0, 0, 1, 0, 0, 0])
    s = np.array([0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2, 0.1, 0.05])
    value, met = dt.choose_threshold(y, s, policy="target_precision", target=0.75)
    assert met and value == 0.6  # 3 of 4 flagged are positive; at 0.5 it is 3 of 5
    assert dt.operating_point(y, s, value)["precision"] == 0.75
    assert dt.operating_point(y, s, 0.5)["precision"] < 0.75


def test_unreachable_precision_takes_the_most_precise_threshold_and_says_so():
    y = np.array([0, 1, 0, 1, 0, 0])
    s = np.array([0.9, 0.8, 0.7, 0.6, 0.5, 0.4])
    value, met = dt.choose_threshold(y, s, policy="target_precision", target=0.9)
    assert not met
    assert value == 0.6  # precision 0.5, the best on offer (ties: the lower threshold, more recall)


def test_choosing_needs_both_classes():
    with pytest.raises(ValueError, match="positive and negative"):
        dt.choose_threshold(np.zeros(5), np.linspace(0, 1, 5), policy="target_recall", target=0.5)


def test_threshold_is_chosen_on_a_slice_of_training_scored_by_a_model_fit_on_the_rest():
    spec = make_spec(threshold={"policy": "target_recall", "target": 0.6})
    train = rare_positive_rows(10_000, seed=1)
    seen: dict[str, Any] = {}

    def fit_and_score(fit_rows: pd.DataFrame, slice_rows: pd.DataFrame) -> np.ndarray:
        seen["fit"], seen["slice"] = fit_rows, slice_rows
        return true_probability(slice_rows)

    info = dt.threshold_info(spec, train, fit_and_score)
    fit_x, slice_x = set(seen["fit"]["x1"]), set(seen["slice"]["x1"])
    assert not fit_x & slice_x and len(fit_x | slice_x) == len(train)
    assert len(seen["slice"]) == pytest.approx(0.2 * len(train), abs=2)
    # Each class keeps its share in the slice (stratified), so a rare class is not left out.
    assert seen["slice"]["event"].sum() == pytest.approx(0.2 * train["event"].sum(), abs=1)
    assert info["policy"] == "target_recall" and info["target_met"] is True
    assert info["slice"]["recall"] >= 0.6
    expected = dt.operating_point(seen["slice"]["event"], true_probability(seen["slice"]), info["value"])
    assert info["slice"]["recall"] == expected["recall"]
    assert info["slice"]["fit_rows"] == len(seen["fit"])


def test_with_a_time_column_the_threshold_slice_is_the_latest_training_rows():
    raw = spec_dict(threshold={"policy": "target_recall", "target": 0.5, "slice_fraction": 0.25})
    raw["time_column"] = "ts"
    spec = ModelSpec.model_validate(raw)
    train = rare_positive_rows(4_000, seed=2)
    train["ts"] = pd.date_range("2026-01-01", periods=len(train), freq="min")
    train = train.sample(frac=1.0, random_state=0)  # stored order must not matter
    seen: dict[str, Any] = {}

    def fit_and_score(fit_rows: pd.DataFrame, slice_rows: pd.DataFrame) -> np.ndarray:
        seen["fit"], seen["slice"] = fit_rows, slice_rows
        return true_probability(slice_rows)

    info = dt.threshold_info(spec, train, fit_and_score)
    assert seen["slice"]["ts"].min() > seen["fit"]["ts"].max()
    assert len(seen["slice"]) == 1_000
    assert "latest 25%" in info["slice"]["how"]


def test_a_slice_without_positives_is_an_error_naming_the_field():
    spec = make_spec(threshold={"policy": "target_recall", "target": 0.6})
    train = rare_positive_rows(500, seed=3)
    train["event"] = 0
    train.loc[0, "event"] = 1  # one positive: it cannot be on both sides
    with pytest.raises(dt.ThresholdError, match=r"evaluation\.threshold"):
        dt.threshold_info(spec, train, lambda fit, sl: np.zeros(len(sl)))


def test_a_fixed_threshold_fits_nothing():
    spec = make_spec(threshold={"policy": "fixed", "value": 0.3})
    info = dt.threshold_info(spec, rare_positive_rows(100), lambda *_: pytest.fail("no extra fit for fixed"))
    assert info["value"] == 0.3 and info["policy"] == "fixed"


def test_training_entrypoint_chooses_the_threshold_with_a_second_real_fit():
    from include.modelops.training import get_trainer
    from include.modelops.training.entrypoint import _choose_threshold

    spec = make_spec(threshold={"policy": "target_recall", "target": 0.6})
    train = rare_positive_rows(6_000, seed=4)
    info = _choose_threshold(spec, get_trainer("sklearn"), train, {"max_iter": 50}, None)
    assert info["source"] == "training split"
    assert info["slice"]["recall"] >= 0.6
    assert 0.0 < info["value"] < 0.5


# ------------------------------------------------------------------------------ recording


def test_the_choice_round_trips_through_mlflow_tags():
    info = {
        "value": 0.0312,
        "policy": "target_recall",
        "target": 0.6,
        "target_met": True,
        "source": "training split",
        "slice": {"rows": 10, "recall": 0.7},
    }
    tags = dt.to_tags(info)
    assert tags[dt.VALUE_TAG] == "0.0312"
    assert dt.from_tags(tags) == info
    assert dt.from_tags({dt.VALUE_TAG: "0.2"})["value"] == 0.2


def test_a_version_without_a_recorded_threshold_gets_the_spec_fixed_value():
    spec = make_spec(threshold={"policy": "fixed", "value": 0.35})
    assert dt.version_threshold(spec, {}, {})["value"] == 0.35
    run_tags = dt.to_tags({"value": 0.1, "policy": "target_recall", "target": 0.6})
    assert dt.version_threshold(spec, {}, run_tags)["value"] == 0.1
    version_tags = dt.to_tags({"value": 0.2, "policy": "target_recall", "target": 0.6})
    assert dt.version_threshold(spec, version_tags, run_tags)["value"] == 0.2


# ------------------------------------------------------------------------------ the spec


def _load(tmp_path: Path, raw: dict[str, Any]) -> ModelSpec:
    path = tmp_path / f"{raw['name']}.yaml"
    path.write_text(yaml.safe_dump(raw))
    return load_spec(path)


def test_old_decision_threshold_reads_as_a_fixed_threshold(tmp_path):
    spec = _load(tmp_path, spec_dict(decision_threshold=0.3))
    assert spec.evaluation.threshold.policy == "fixed"
    assert spec.evaluation.threshold.value == 0.3


def test_default_threshold_is_fixed_at_one_half():
    t = make_spec().evaluation.threshold
    assert (t.policy, t.value, t.target) == ("fixed", 0.5, None)


@pytest.mark.parametrize(
    ("evaluation", "field", "words"),
    [
        (
            {"decision_threshold": 0.3, "threshold": {"policy": "fixed", "value": 0.3}},
            "evaluation.decision_threshold",
            "not both",
        ),
        ({"decision_threshold": 1.5}, "evaluation.decision_threshold", "from 0 to 1"),
        ({"threshold": {"policy": "target_recall"}}, "evaluation.threshold.target", "needs a target"),
        (
            {"threshold": {"policy": "target_recall", "target": 1.0}},
            "evaluation.threshold.target",
            "less than 1",
        ),
        (
            {"threshold": {"policy": "target_precision", "target": 0.0}},
            "evaluation.threshold.target",
            "greater than 0",
        ),
        (
            {"threshold": {"policy": "target_recall", "target": 0.6, "value": 0.2}},
            "evaluation.threshold.value",
            "only for policy fixed",
        ),
        (
            {"threshold": {"policy": "fixed", "value": 0.5, "target": 0.6}},
            "evaluation.threshold.target",
            "only for policy target",
        ),
        (
            {"threshold": {"policy": "fixed", "slice_fraction": 0.3}},
            "evaluation.threshold.slice_fraction",
            "only for the target policies",
        ),
        ({"threshold": {"policy": "top_k"}}, "evaluation.threshold.policy", "fixed"),
    ],
)
def test_bad_threshold_settings_name_the_field(tmp_path, evaluation, field, words):
    with pytest.raises(ModelSpecError) as err:
        _load(tmp_path, spec_dict(**evaluation))
    assert f"field '{field}'" in str(err.value)
    assert words in str(err.value)


def test_a_threshold_policy_is_only_for_binary_classification(tmp_path):
    raw = spec_dict(threshold={"policy": "target_recall", "target": 0.6})
    raw.update(
        task="regression",
        target={"name": "event"},
        evaluation={**raw["evaluation"], "primary_metric": "rmse"},
    )
    with pytest.raises(ModelSpecError, match=r"field 'evaluation\.threshold\.policy'.*only for binary"):
        _load(tmp_path, raw)


# ------------------------------------------------------------------------------ the reports


@pytest.fixture(scope="module")
def evaluated():
    """A candidate with a low chosen threshold and a champion at a fixed 0.5, on one rare-positive holdout."""
    spec = make_spec(threshold={"policy": "target_recall", "target": 0.6})
    holdout = rare_positive_rows(8_000, seed=5)
    scores = true_probability(holdout)
    cand_info = {
        "value": 0.05,
        "policy": "target_recall",
        "target": 0.6,
        "target_met": True,
        "source": "training split",
        "slice": {
            "rows": 2000,
            "positives": 40,
            "fit_rows": 8000,
            "how": "a seeded random 20% of each class",
            "precision": 0.2,
            "recall": 0.62,
            "flagged_share": 0.06,
        },
    }
    champ_info = {
        "value": 0.5,
        "policy": "fixed",
        "target": None,
        "target_met": None,
        "slice": None,
        "source": "spec",
    }
    report = evaluate(
        spec,
        holdout,
        candidate_scores=scores,
        baseline_scores=np.full(len(holdout), PREVALENCE),
        champion_scores=scores,
        champion_version="1",
        candidate_version="2",
        candidate_threshold=cand_info,
        champion_threshold=champ_info,
    )
    return spec, holdout, scores, report


def test_report_states_precision_recall_and_share_flagged_at_each_models_own_threshold(evaluated):
    spec, holdout, scores, report = evaluated
    y = holdout["event"].to_numpy()
    cand, champ = report["operating_point"]["candidate"], report["operating_point"]["champion"]
    assert report["decision_threshold"] == 0.05
    assert cand["threshold"] == 0.05 and cand["choice"]["policy"] == "target_recall"
    flagged = scores >= 0.05
    assert cand["flagged_share"] == pytest.approx(flagged.mean(), abs=1e-6)
    assert cand["recall"] == pytest.approx(y[flagged].sum() / y.sum(), abs=1e-6)
    assert cand["precision"] == pytest.approx(y[flagged].mean(), abs=1e-6)
    # The metrics are each model's at its own threshold: same scores, different recall.
    assert report["models"]["candidate"]["metrics"]["recall"] == cand["recall"]
    assert report["models"]["champion"]["metrics"]["recall"] == champ["recall"] < cand["recall"]
    assert champ["threshold"] == 0.5
    json.dumps(report)


def test_gate_summary_and_notes_state_the_operating_point(evaluated):
    spec, _, _, report = evaluated
    decision = decide(spec, report)
    point = report["operating_point"]["candidate"]
    assert "at threshold 0.05 (target_recall 0.6)" in decision["summary"]
    assert f"recall {point['recall']:.1%}" in decision["summary"]
    assert decision["operating_point"] == point
    assert any(n.startswith("champion decision threshold 0.5 (fixed") for n in decision["notes"])
    assert any("target_recall 0.6, chosen on a seeded random 20%" in n for n in decision["notes"])


def test_gate_bound_on_recall_says_it_is_at_the_threshold(evaluated):
    spec, holdout, scores, report = evaluated
    raw = spec_dict(
        threshold={"policy": "target_recall", "target": 0.6}, gate={"thresholds": {"recall": {"min": 0.9}}}
    )
    decision = decide(ModelSpec.model_validate(raw), report)
    check = next(c for c in decision["checks"] if c["name"] == "recall min")
    assert not check["passed"]
    assert "recall at threshold 0.05" in check["reason"]


def test_html_report_has_the_operating_threshold_table(evaluated):
    spec, _, _, report = evaluated
    page = render_html(report, decide(spec, report))
    assert "Operating threshold" in page
    assert "target_recall 0.6, chosen on a seeded random 20% of each class" in page


def test_model_card_shows_the_operating_point_and_serves_the_versions_threshold(evaluated):
    from include.modelops.governance import card_render, model_card

    spec, _, _, report = evaluated
    card = model_card.build_card(
        spec,
        model_name=spec.name,
        version="2",
        run={},
        validation=None,
        evaluation=report,
        decision=decide(spec, report),
    )
    rows = card["evaluation"]["operating_point"]
    cand = next(r for r in rows if r["model"] == "candidate")
    assert cand["threshold"] == 0.05 and cand["recall"] == report["operating_point"]["candidate"]["recall"]
    assert "score >= 0.05 " in card["serving"]["response"]
    md = card_render.render_markdown(card)
    assert "Operating threshold" in md and "target_recall 0.6" in md


def test_multiclass_report_has_no_operating_point():
    raw = spec_dict()
    raw.update(
        task="multiclass_classification",
        target={"name": "event", "classes": ["a", "b", "c"]},
        evaluation={"primary_metric": "macro_f1"},
    )
    spec = ModelSpec.model_validate(raw)
    holdout = pd.DataFrame({"x1": [0.0] * 6, "x2": [0.0] * 6, "event": list("abcabc")})
    probs = np.tile([0.5, 0.3, 0.2], (6, 1))
    report = evaluate(spec, holdout, candidate_scores=probs, baseline_scores=probs)
    assert report["operating_point"] is None and report["decision_threshold"] is None


# ------------------------------------------------------------------------------ the service


def test_service_labels_rows_with_the_versions_threshold_not_the_specs():
    from include.modelops.serving.contract import predictions_from_scores, served_threshold

    spec = make_spec(threshold={"policy": "target_recall", "target": 0.6})
    bento_model = {"model_version": "3", "decision_threshold": 0.04, "threshold": {"value": 0.04}}
    threshold = served_threshold(spec, bento_model)
    labels = [
        p["label"] for p in predictions_from_scores(spec, np.array([0.039, 0.04, 0.3]), threshold=threshold)
    ]
    assert threshold == 0.04
    assert labels == [0, 1, 1]


def test_a_bento_without_a_recorded_threshold_labels_with_the_specs_fixed_value():
    from include.modelops.serving.contract import predictions_from_scores, served_threshold

    spec = make_spec(threshold={"policy": "fixed", "value": 0.3})
    threshold = served_threshold(spec, {"model_version": "1"})
    labels = [p["label"] for p in predictions_from_scores(spec, np.array([0.29, 0.3]), threshold=threshold)]
    assert threshold == 0.3 and labels == [0, 1]


# ------------------------------------------------------------------------------ monitoring


def test_live_recall_is_measured_at_the_monitored_versions_threshold():
    from include.modelops.monitoring.drift import live_performance
    from include.modelops.monitoring.window import LABEL_COLUMN

    spec = make_spec(primary_metric="recall", threshold={"policy": "target_recall", "target": 0.6})
    rows = rare_positive_rows(5_000, seed=6)
    rows["score"], rows[LABEL_COLUMN] = true_probability(rows), rows["event"]
    y, s = rows["event"].to_numpy(), rows["score"].to_numpy()
    at_version = live_performance(spec, rows, label_column=LABEL_COLUMN, offline=0.6, threshold=0.05)
    assert at_version["live"] == pytest.approx(dt.operating_point(y, s, 0.05)["recall"], abs=1e-6)
    assert at_version["live"] > 0.5  # at 0.5 recall collapses, which would read as a drop and a retrain
    assert live_performance(spec, rows, label_column=LABEL_COLUMN, offline=0.6)["live"] < 0.3


def test_torch_threshold_fit_checkpoints_apart_from_the_final_fit(tmp_path):
    from include.modelops.training import get_trainer
    from include.modelops.training.entrypoint import _choose_threshold
    from include.modelops.training.torch_trainer import CHECKPOINT_FILE

    raw = spec_dict(threshold={"policy": "target_recall", "target": 0.6})
    raw["training"] = {"framework": "torch"}
    spec = ModelSpec.model_validate(raw)
    info = _choose_threshold(
        spec,
        get_trainer("torch"),
        rare_positive_rows(3_000, seed=8),
        {"epochs": 2, "device": "cpu"},
        str(tmp_path),
    )
    assert info["slice"]["recall"] >= 0.6
    assert (tmp_path / "threshold_fit" / CHECKPOINT_FILE).exists()
    assert not (tmp_path / CHECKPOINT_FILE).exists()  # the final fit's resume point stays its own


def test_a_drafted_binary_spec_writes_the_threshold_policy(tmp_path):
    from include.modelops.data.spec_draft import draft_spec, write_spec_draft

    data = tmp_path / "data"
    data.mkdir()
    rare_positive_rows(2_000, seed=10).to_csv(data / "rows.csv", index=False)
    path = write_spec_draft(draft_spec(data, "event", "drafted"), tmp_path / "specs")
    assert "threshold: {policy: fixed, value: 0.5}" in path.read_text()
    assert load_spec(path).evaluation.threshold.policy == "fixed"


@pytest.mark.parametrize(
    "evaluation",
    [
        {},
        {"decision_threshold": 0.3},
        {"threshold": {"policy": "fixed", "value": 0.4}},
        {"threshold": {"policy": "target_recall", "target": 0.6}},
        {"threshold": {"policy": "target_precision", "target": 0.8, "slice_fraction": 0.3}},
    ],
    ids=["default", "legacy-fixed", "fixed", "target-recall", "target-precision"],
)
def test_a_spec_dumped_and_read_again_is_the_same_spec(evaluation):
    # The bento carries the spec as its JSON dump and validates it again when the service starts.
    spec = make_spec(**evaluation)
    again = ModelSpec.model_validate(spec.model_dump(mode="json"))
    assert again == spec and again.spec_hash() == spec.spec_hash()
