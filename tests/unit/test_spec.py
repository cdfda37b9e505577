"""The model spec: valid specs load, bad ones name the file and the field."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from include.modelops.spec import ModelSpecError, load_all_specs, load_spec

REF = Path(__file__).resolve().parents[2] / "include" / "models" / "fraud_detection.yaml"


def write_spec(tmp_path: Path, mutate) -> Path:
    raw = yaml.safe_load(REF.read_text())
    mutate(raw)
    path = tmp_path / f"{raw['name']}.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def test_reference_spec_loads_with_derived_columns(reference_spec):
    assert reference_spec.dag_id == "fraud_detection_training"
    assert "merchant_category" in reference_spec.categorical_features
    assert reference_spec.required_columns[-2:] == ["event_time", "card_id"]
    assert len(reference_spec.spec_hash()) == 16


def test_unknown_field_is_named(tmp_path):
    path = write_spec(tmp_path, lambda r: r["evaluation"].update(primary_metirc="roc_auc"))
    with pytest.raises(ModelSpecError) as err:
        load_spec(path)
    assert str(path) in str(err.value) and "evaluation.primary_metirc" in str(err.value)


def test_wrong_type_names_the_feature_field(tmp_path):
    def mutate(r):
        r["features"][0]["min"] = "zero"

    with pytest.raises(ModelSpecError, match=r"features\.0\.min"):
        load_spec(write_spec(tmp_path, mutate))


def test_categorical_feature_without_categories_is_rejected(tmp_path):
    def mutate(r):
        del r["features"][1]["categories"]

    with pytest.raises(ModelSpecError, match="categorical feature needs 'categories'"):
        load_spec(write_spec(tmp_path, mutate))


def test_metric_not_known_for_task_is_rejected_with_the_choices(tmp_path):
    path = write_spec(tmp_path, lambda r: r["evaluation"].update(primary_metric="rmse"))
    with pytest.raises(ModelSpecError, match="'rmse' is not known for binary_classification"):
        load_spec(path)


def test_auto_approval_requires_low_risk(tmp_path):
    path = write_spec(tmp_path, lambda r: r.update(risk_tier="high"))
    with pytest.raises(ModelSpecError, match="'auto' is only allowed for risk_tier 'low'"):
        load_spec(path)


def test_name_must_match_file_name(tmp_path):
    path = write_spec(tmp_path, lambda r: None)
    other = tmp_path / "other_model.yaml"
    path.rename(other)
    with pytest.raises(ModelSpecError, match="must equal the file name 'other_model'"):
        load_spec(other)


def test_not_yaml_mapping_is_reported(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text("- just\n- a list\n")
    with pytest.raises(ModelSpecError, match="must be a YAML mapping"):
        load_spec(path)


def test_load_all_specs_reports_every_bad_file(tmp_path):
    write_spec(tmp_path, lambda r: r.update(name="model_a", task="ranking"))
    (tmp_path / "model_b.yaml").write_text("name: model_b\n")
    with pytest.raises(ModelSpecError) as err:
        load_all_specs(tmp_path)
    assert "model_a.yaml" in str(err.value) and "model_b.yaml" in str(err.value)


def test_data_path_expands_state_dir(reference_spec, monkeypatch, tmp_path):
    monkeypatch.setenv("MODELOPS_STATE_DIR", str(tmp_path))
    assert reference_spec.data.resolved_path() == tmp_path / "data" / "fraud_transactions"


def test_data_path_with_unset_variable_names_it(reference_spec):
    spec = reference_spec.model_copy(
        update={"data": reference_spec.data.model_copy(update={"path": "${NOPE_X}/d"})}
    )
    with pytest.raises(ModelSpecError, match="NOPE_X"):
        spec.data.resolved_path()


def test_spec_reference_doc_is_up_to_date():
    from include.modelops import spec_docs

    committed = (REF.parents[2] / "docs" / "model-spec.md").read_text()
    assert committed == spec_docs.render(), "docs/model-spec.md is stale: run `make spec-docs`"


# --- errors name the real field ---------------------------------------------------------------


@pytest.mark.parametrize(
    "mutate,field,message",
    [
        (
            lambda r: r["evaluation"].update(primary_metric="rmse"),
            "evaluation.primary_metric",
            "metric 'rmse' is not known for binary_classification; use one of brier (lower is better), "
            "calibration_error (lower is better), f1, pr_auc, precision, recall, roc_auc",
        ),
        (
            lambda r: r["evaluation"]["gate"]["thresholds"].update(mae={"max": 3}),
            "evaluation.gate.thresholds.mae",
            "metric 'mae' is not known for binary_classification",
        ),
        (
            lambda r: r.update(risk_tier="high"),
            "approval.policy",
            "'auto' is only allowed for risk_tier 'low'",
        ),
        (
            lambda r: r.update(segment_columns=["region", "postcode"]),
            "segment_columns.1",
            "segment column 'postcode' is not a feature",
        ),
        (lambda r: r["target"].update(classes=[0, 1, 2]), "target.classes", "exactly two values"),
        (lambda r: r.update(entity_id="amount"), "entity_id", "entity_id 'amount' must not be a feature"),
        (lambda r: r["target"].update(name="amount"), "target.name", "is also listed as a feature"),
    ],
)
def test_rules_across_fields_name_the_field_to_fix(tmp_path, mutate, field, message):
    with pytest.raises(ModelSpecError) as err:
        load_spec(write_spec(tmp_path, mutate))

    assert f"  - field '{field}': " in str(err.value)
    assert message in str(err.value)
    assert "(top level)" not in str(err.value)


def test_validation_fields_have_defaults_and_are_checked(tmp_path, reference_spec):
    assert reference_spec.data.max_duplicate_row_fraction == 0.01
    assert reference_spec.data.max_duplicate_key_fraction == 0.01
    assert reference_spec.split.min_class_count == 5
    assert reference_spec.split.on_missing_class == "fail"

    with pytest.raises(
        ModelSpecError, match=r"field 'split\.on_missing_class': Input should be 'fail' or 'warn'"
    ):
        load_spec(write_spec(tmp_path, lambda r: r.update(split={"on_missing_class": "ignore"})))
    with pytest.raises(ModelSpecError, match=r"field 'data\.max_duplicate_row_fraction'"):
        load_spec(write_spec(tmp_path, lambda r: r["data"].update(max_duplicate_row_fraction=1.5)))
    with pytest.raises(ModelSpecError, match=r"field 'split\.min_class_count'"):
        load_spec(write_spec(tmp_path, lambda r: r.update(split={"min_class_count": 0})))


def test_reference_doc_lists_metrics_per_task_explains_error_metrics_and_draft_spec():
    from include.modelops.metrics_catalog import METRICS

    doc = (REF.parents[2] / "docs" / "model-spec.md").read_text()

    for task, metrics in METRICS.items():
        row = next(line for line in doc.splitlines() if line.startswith(f"| {task} |"))
        higher, lower = row.split(" | ")[1:3]
        for metric, high in metrics.items():
            assert f"`{metric}`" in (higher if high else lower), (task, metric)
    assert "lets rmse *rise* by at most" in doc
    assert "for rmse, mae and log_loss it is the\nbaseline's value minus the candidate's" in doc
    assert "make draft-spec DATA=" in doc
    for field in (
        "data.max_duplicate_row_fraction",
        "data.max_duplicate_key_fraction",
        "split.min_class_count",
        "split.on_missing_class",
    ):
        assert f"| `{field}` |" in doc


def test_without_a_rollout_section_there_is_no_rollout(tmp_path):
    assert load_spec(write_spec(tmp_path, lambda r: r.pop("rollout", None))).rollout is None


def test_an_empty_rollout_section_takes_four_canary_steps(tmp_path):
    spec = load_spec(write_spec(tmp_path, lambda r: r.update(rollout={})))
    assert [s.traffic_percent for s in spec.rollout.steps] == [5, 25, 50, 100]
    assert spec.rollout.shadow is None and spec.rollout.backend == "local"
    assert spec.rollout_dag_id == "fraud_detection_rollout"


def test_rollout_steps_mix_bare_percentages_and_paused_steps_with_their_own_budget(tmp_path):
    def mutate(r):
        r["rollout"] = {
            "steps": [10, {"traffic_percent": 50, "pause": True, "min_requests": 40}, 100],
            "min_requests": 7,
            "max_wait_s": 30,
            "shadow": {"requests": 50},
        }

    rollout = load_spec(write_spec(tmp_path, mutate)).rollout
    first, paused, last = rollout.steps
    assert (first.traffic_percent, first.pause, rollout.step_min_requests(first)) == (10, False, 7)
    assert (paused.pause, rollout.step_min_requests(paused), rollout.step_max_wait_s(paused)) == (
        True,
        40,
        30,
    )
    assert last.traffic_percent == 100 and rollout.shadow.requests == 50


@pytest.mark.parametrize(
    "steps, message",
    [
        ([5, 25, 50], "the last step must be 100"),
        ([25, 5, 100], "steps must rise strictly"),
        ([0, 100], "rollout.steps.0.traffic_percent"),
    ],
)
def test_bad_rollout_steps_are_named(tmp_path, steps, message):
    path = write_spec(tmp_path, lambda r: r.setdefault("rollout", {}).update(steps=steps))
    with pytest.raises(ModelSpecError) as err:
        load_spec(path)
    assert "rollout.steps" in str(err.value) and message in str(err.value)


@pytest.mark.parametrize(
    "mutate, field, message",
    [
        (
            lambda r: r["monitoring"].update(drift_method="g_test"),
            r"monitoring\.drift_method",
            r"'g_test' is not supported: .*fails unless they hold exactly as many rows.*use chisquare",
        ),
        (
            lambda r: r["monitoring"].update(feature_drift={"channel": {"method": "g_test"}}),
            r"monitoring\.feature_drift\.channel\.method",
            "'g_test' is not supported",
        ),
        (
            lambda r: r["monitoring"].update(feature_drift={"is_international": {"method": "fisher_exact"}}),
            r"monitoring\.feature_drift\.is_international\.method",
            "'fisher_exact' is not supported: .*use z",
        ),
        (
            lambda r: r["monitoring"].update(feature_drift={"amount": {"method": "kss"}}),
            r"monitoring\.feature_drift\.amount\.method",
            r"unknown drift method 'kss'; use one of \[.*'ks'.*\]",
        ),
    ],
)
def test_drift_methods_are_checked_when_the_spec_loads(tmp_path, mutate, field, message):
    """A method the drift step cannot run fails `make check-specs` and DAG parsing, naming the field,
    not the monitoring run a day after deployment."""
    with pytest.raises(ModelSpecError, match=rf"field '{field}'.*{message}"):
        load_spec(write_spec(tmp_path, mutate))
