"""The training DAG, run by a real Airflow (`airflow dags test`) against a real MLflow server.

Tests run in file order and share one stack: the first run makes the champion that the
later ones are compared against.
"""

from __future__ import annotations

import sqlite3

import pandas as pd
import pytest

from include.modelops.data.example import BROKEN_VARIANTS, generate_transactions
from include.modelops.data.reading import read_dataset

pytestmark = pytest.mark.integration
DAG_ID = "fraud_detection_training"


def test_first_run_registers_a_carded_packaged_champion(stack):
    run = stack.run_dag(DAG_ID)
    assert run["rc"] == 0, run["log"][-4000:]
    steps = run["steps"]
    assert all(steps[t]["state"] == "success" for t in steps), {t: s["state"] for t, s in steps.items()}
    version = steps["register_candidate"]["result"]["version"]
    assert stack.alias("champion") == version
    assert stack.alias("challenger") is None  # moved on to champion
    mv = stack.client().get_model_version("fraud_detection", version)
    for tag in (
        "modelops.data_fingerprint",
        "modelops.git_commit",
        "modelops.dag_run_id",
        "modelops.spec_hash",
    ):
        assert mv.tags.get(tag) and mv.tags[tag] != "unknown" or tag == "modelops.git_commit", tag
    assert mv.tags["modelops.dag_run_id"] == run["dag_run_id"]
    assert mv.tags["modelops.deployable"] == "true"
    assert mv.tags["modelops.approval.by"] == "policy:auto"
    assert mv.tags["modelops.bento_tag"] == f"fraud_detection_service:v{version}"
    artifacts = {a.path for a in stack.client().list_artifacts(mv.run_id, "model_card")}
    assert {
        "model_card/model_card.md",
        "model_card/model_card.json",
        "model_card/model_card.html",
    } <= artifacts
    assert {a.path for a in stack.client().list_artifacts(mv.run_id, "validation")} >= {
        "validation/validation_report.html",
        "validation/validation_report.json",
    }
    decision = steps["evaluate_candidate"]["result"]["summary"]
    assert decision.startswith("PASSED") and "first model" in decision.lower()
    assert steps["smoke_serve_bento"]["result"]["max_abs_diff"] <= 1e-6
    # The spec's target_recall policy chose the threshold on the training split; the version carries
    # it and the gate summary states the holdout's precision and recall at it.
    threshold = float(mv.tags["modelops.decision_threshold"])
    assert 0 < threshold < 0.5
    assert f"at threshold {threshold:.4g} (target_recall 0.6): holdout precision" in decision


def test_second_run_compares_with_champion_and_says_why(stack):
    champion_before = stack.alias("champion")
    run = stack.run_dag(DAG_ID, {"reason": "second demo run"})
    assert run["rc"] == 0, run["log"][-4000:]
    evaluated = run["steps"]["evaluate_candidate"]["result"]
    assert evaluated["champion_version"] == champion_before
    assert "vs champion" in evaluated["summary"]
    if evaluated["passed"]:
        assert stack.alias("champion") == run["steps"]["register_candidate"]["result"]["version"]
        assert stack.alias("previous") == champion_before
    else:
        assert stack.alias("champion") == champion_before


def test_worse_candidate_keeps_champion(stack):
    shuffled = stack.state_dir / "data" / "shuffled_labels"
    df = read_dataset(stack.data_dir)
    df["is_fraud"] = df["is_fraud"].sample(frac=1.0, random_state=7).to_numpy()
    shuffled.mkdir(parents=True, exist_ok=True)
    df.to_parquet(shuffled / "part-0000.parquet", index=False)
    champion_before = stack.alias("champion")
    versions_before = stack.versions()

    run = stack.run_dag(DAG_ID, {"data_path": str(shuffled), "reason": "shuffled labels"})

    assert run["rc"] == 0, run["log"][-4000:]  # a rejected candidate is an outcome, not a failure
    evaluated = run["steps"]["evaluate_candidate"]["result"]
    assert evaluated["passed"] is False and evaluated["summary"].startswith("REJECTED")
    assert stack.alias("champion") == champion_before
    assert run["steps"]["promote_to_champion"]["state"] == "skipped"
    assert run["steps"]["package_bento"]["state"] == "skipped"
    new = run["steps"]["register_candidate"]["result"]["version"]
    assert new not in versions_before
    assert stack.client().get_model_version("fraud_detection", new).tags["modelops.gate.status"] == "rejected"


@pytest.mark.parametrize(
    "variant,expected",
    [
        ("missing_column", "merchant_category"),
        ("wrong_type", "amount"),
        ("nulls", "amount"),
        ("out_of_range", "hour_of_day"),
        ("empty", "expect_table_row_count_to_be_between"),
        # used to pass validation and crash the split with a numpy TypeError after 3 tries
        ("time_as_text", "column 'event_time': expect_column_values_to_be_in_type_list"),
        # used to pass the gate with a holdout of one class
        ("class_sorted", "holdout: class 1 has 0 rows"),
    ],
)
def test_broken_data_stops_at_validation_and_registers_nothing(stack, variant, expected):
    assert variant in BROKEN_VARIANTS
    data = stack.state_dir / "data" / variant
    generate_transactions(data, rows=5_000, days=5, variant=variant)
    champion_before, versions_before = stack.alias("champion"), stack.versions()

    run = stack.run_dag(DAG_ID, {"data_path": str(data)})

    assert run["rc"] != 0
    assert run["failed_steps"] == ["validate_dataset"]
    assert run["steps"]["train_candidate"]["state"] == "upstream_failed"
    assert "Data validation failed for model 'fraud_detection'" in run["log"]
    assert expected in run["log"]
    assert stack.versions() == versions_before
    assert stack.alias("champion") == champion_before
    # the report that names the failure is attached to the run for people to read
    runs = stack.client().search_runs(
        [stack.client().get_experiment_by_name("fraud_detection").experiment_id],
        filter_string=f"tags.`modelops.dag_run_id` = '{run['dag_run_id']}'",
    )
    assert runs and runs[0].data.tags["modelops.validation.status"] == "failed"
    assert runs[0].info.status == "FAILED"


def test_validation_failure_is_not_retried(stack):
    data = stack.state_dir / "data" / "nulls"
    if not data.exists():
        generate_transactions(data, rows=5_000, days=5, variant="nulls")
    run = stack.run_dag(DAG_ID, {"data_path": str(data)})
    with sqlite3.connect(stack.state_dir / "airflow" / "airflow.db") as db:
        ((tries, state),) = db.execute(
            "select try_number, state from task_instance where dag_id=? and run_id=? and task_id=?",
            (DAG_ID, run["dag_run_id"], "validate_dataset"),
        ).fetchall()
    assert (tries, state) == (1, "failed")  # retries: 2, but a data error fails at once


def test_holdout_is_the_latest_time_window(stack):
    run_dir = sorted((stack.state_dir / "runs" / "fraud_detection").glob("*/train.parquet"))[0].parent
    train = pd.read_parquet(run_dir / "train.parquet")
    holdout = pd.read_parquet(run_dir / "holdout.parquet")
    assert train["event_time"].max() <= holdout["event_time"].min()
    assert 0.15 < len(holdout) / (len(train) + len(holdout)) < 0.25
