"""The monitoring DAG, run by a real Airflow (`airflow dags test`) against a real MLflow server,
over inference-log windows written in the serving contract's schema with the champion's own
scores: no drift triggers nothing; drift triggers once, with the reason; a burst of drifted
windows requests one retrain; the retraining run carries the reason.

Tests run in file order and share one model (its own, so other modules' runs do not count).
"""

from __future__ import annotations

import json
import sqlite3
from datetime import UTC, datetime, timedelta

import pytest

from tests.integration.conftest import write_test_spec
from tests.monitoring_traffic import log_scored_traffic

pytestmark = pytest.mark.integration
MODEL = "fraud_monitoring"
MONITORING, TRAINING = f"{MODEL}_monitoring", f"{MODEL}_training"
DAY = datetime(2026, 3, 2, tzinfo=UTC)
DRIFT = (
    "scale=amount:4 shift=channel:online:0.8 scale=distance_from_home_km:6 shift=merchant_category:gaming:0.6"
)


@pytest.fixture(scope="module")
def champion(stack):
    write_test_spec(
        stack.specs_dir,
        stack.data_dir,
        name=MODEL,
        monitoring={
            "min_window_rows": 200,
            "min_labelled_rows_for_metric": 200,
            "retrain_cooldown_hours": 24,
            "max_retrains_per_week": 3,
        },
    )
    run = stack.run_dag(TRAINING, model=MODEL)
    assert run["rc"] == 0, run["log"][-4000:]
    version = stack.alias("champion", model=MODEL)
    assert version is not None
    return version


def monitor(stack, start: datetime, hours: int = 6) -> dict:
    """One monitoring run over [start, start + hours); its decision as recorded in MLflow."""
    run = stack.run_dag(
        MONITORING,
        {"window_start": start.isoformat(), "window_end": (start + timedelta(hours=hours)).isoformat()},
        model=MODEL,
    )
    assert run["rc"] == 0, run["log"][-4000:]
    key = f"{start.isoformat()}/{(start + timedelta(hours=hours)).isoformat()}"
    runs = stack.client().search_runs(
        [stack.client().get_experiment_by_name(MODEL).experiment_id],
        filter_string=f"tags.`modelops.monitoring.window` = '{key}'",
        order_by=["attributes.start_time DESC"],
    )
    assert runs, f"no monitoring run recorded for {key}"
    return {
        "tags": runs[0].data.tags,
        "metrics": runs[0].data.metrics,
        "run_id": runs[0].info.run_id,
        "log": run["log"],
    }


def asset_events(stack, name: str) -> list[dict]:
    """The asset events Airflow recorded for ``<model>.<name>``, oldest first."""
    with sqlite3.connect(stack.state_dir / "airflow" / "airflow.db") as db:
        rows = db.execute(
            "SELECT e.extra FROM asset_event e JOIN asset a ON a.id = e.asset_id "
            "WHERE a.name = ? ORDER BY e.id",
            (f"{MODEL}.{name}",),
        ).fetchall()
    return [json.loads(r[0]) if isinstance(r[0], str) else r[0] for r in rows]


def test_window_without_drift_and_an_empty_window_trigger_nothing(stack, champion):
    log_scored_traffic(MODEL, champion, DAY + timedelta(hours=1), seed=1)
    quiet = monitor(stack, DAY)
    assert quiet["tags"]["modelops.monitoring.status"] == "checked"
    assert quiet["tags"]["modelops.monitoring.outcome"] == "no_action", quiet["tags"][
        "modelops.monitoring.reason"
    ]
    assert quiet["metrics"]["rows"] == 2000 and quiet["metrics"]["labelled_rows"] == 2000
    assert quiet["metrics"]["drift_share"] < 0.3 and "live_roc_auc" in quiet["metrics"]
    assert quiet["tags"]["modelops.monitoring.model_version"] == champion
    assert {a.path for a in stack.client().list_artifacts(quiet["run_id"], "drift")} >= {
        "drift/drift_report.html",
        "drift/drift_summary.json",
    }
    assert "Drift report: runs:/" in quiet["log"], "the task log links the report"

    empty = monitor(stack, DAY + timedelta(hours=6))  # nothing was served then
    assert empty["tags"]["modelops.monitoring.status"] == "no_traffic"
    assert empty["tags"]["modelops.monitoring.outcome"] == "no_traffic"

    figures = asset_events(stack, "drift_report")
    assert [f["status"] for f in figures] == ["checked", "no_traffic"]
    assert figures[0]["rows"] == 2000 and "drift_share" in figures[0]
    assert asset_events(stack, "retrain_requested") == []


def test_burst_of_drifted_windows_requests_one_retrain_with_the_reason(stack, champion):
    starts = [DAY + timedelta(days=1, hours=6 * i) for i in range(5)]
    for i, start in enumerate(starts):
        log_scored_traffic(MODEL, champion, start + timedelta(hours=1), drift=DRIFT, seed=10 + i)
    decisions = [monitor(stack, start)["tags"] for start in starts]

    outcomes = [d["modelops.monitoring.outcome"] for d in decisions]
    assert outcomes == ["retrain"] + ["suppressed"] * 4, [d["modelops.monitoring.reason"] for d in decisions]
    first = decisions[0]["modelops.monitoring.reason"]
    assert "of features drifted" in first and "amount" in first.split("most drifted:")[1]
    assert [d["modelops.monitoring.guard"] for d in decisions[1:]] == ["cooldown"] * 4
    assert "cooldown 24 h" in decisions[1]["modelops.monitoring.reason"]

    requested = asset_events(stack, "retrain_requested")
    assert len(requested) == 1, requested
    assert requested[0]["reason"] == f"drift monitoring: {first}"
    assert requested[0]["window"] == f"{starts[0].isoformat()}/{(starts[0] + timedelta(hours=6)).isoformat()}"
    assert requested[0]["drift_report"].endswith("drift/drift_report.html")
    assert requested[0]["labelled_data"].endswith("drift/labelled_window.parquet")


def test_retraining_run_trains_on_the_labelled_window_and_its_version_carries_the_reason(
    stack, champion, tmp_path
):
    (event,) = asset_events(stack, "retrain_requested")
    # What the training DAG takes from the asset event when the scheduler starts it (see _conf in
    # dags/model_training.py); `airflow dags test` cannot start an asset-triggered run, so it is passed as conf.
    conf = {k: event[k] for k in ("reason", "drift_report", "labelled_data")}
    run = stack.run_dag(TRAINING, conf, model=MODEL)
    assert run["rc"] == 0, run["log"][-4000:]
    version = run["steps"]["register_candidate"]["result"]["version"]
    mv = stack.client().get_model_version(MODEL, version)
    assert mv.tags["modelops.trigger_reason"] == event["reason"]
    assert mv.tags["modelops.drift_report"] == event["drift_report"]
    training_run = stack.client().get_run(mv.run_id)
    assert training_run.data.metrics["labelled_window_rows"] == 2000
    assert "+ 2000 labelled live rows in train" in training_run.data.tags["modelops.split"]
    card = stack.client().download_artifacts(mv.run_id, "model_card/model_card.md", str(tmp_path))
    text = open(card).read()
    assert "Why this model was trained" in text and "most drifted:" in text
