"""`make audit` lists every monitoring decision: the window's figures, the outcome, its reason and
the guard that suppressed it, read from the monitoring runs in a temporary SQLite MLflow store."""

from __future__ import annotations

import pytest

from include.modelops.governance import audit

MODEL = "fraud_watch"
P = "modelops.monitoring."


def monitoring_run(
    c, exp: str, n: int, *, outcome: str, reason: str, guard: str = "", share: float = 0.0, top: str = ""
) -> None:
    window = f"2026-03-0{n}T00:00:00+00:00/2026-03-0{n}T06:00:00+00:00"
    run = c.create_run(
        exp,
        tags={
            "modelops.kind": "monitoring",
            "modelops.dag_id": f"{MODEL}_monitoring",
            "modelops.dag_run_id": f"manual__watch{n}",
            f"{P}model_version": "1",
            f"{P}window": window,
            f"{P}status": "checked",
            f"{P}report": f"runs:/w{n}/drift/drift_report.html",
            f"{P}top_drifted": top,
            f"{P}outcome": outcome,
            f"{P}reason": reason,
            f"{P}guard": guard,
            f"{P}triggers": "drift" if top else "",
            f"{P}decided_at": f"2026-03-0{n}T06:05:00+00:00",
        },
    )
    c.log_metric(run.info.run_id, "rows", 2000)
    c.log_metric(run.info.run_id, "drift_share", share)
    c.set_terminated(run.info.run_id)


@pytest.fixture(scope="module")
def registry(tmp_path_factory):
    import mlflow

    tmp = tmp_path_factory.mktemp("audit_watch")
    uri = f"sqlite:///{tmp / 'mlflow.db'}"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MLFLOW_TRACKING_URI", uri)
        mp.setenv("MODELOPS_MLFLOW_UI_URL", "http://mlflow.test")
        c = mlflow.MlflowClient(tracking_uri=uri, registry_uri=uri)
        exp = c.create_experiment(
            MODEL, artifact_location=str(tmp / "artifacts"), tags={"modelops.model": MODEL}
        )
        c.create_registered_model(MODEL)
        train = c.create_run(
            exp,
            tags={
                "modelops.dag_run_id": "manual__train1",
                "modelops.dag_id": f"{MODEL}_training",
                "modelops.validation.status": "passed",
            },
        )
        c.set_terminated(train.info.run_id)
        c.create_model_version(MODEL, source=str(tmp / "model1"), run_id=train.info.run_id)
        monitoring_run(
            c, exp, 1, outcome="no_action", reason="no trigger: 0% of features drifted (threshold 30%)"
        )
        monitoring_run(
            c,
            exp,
            2,
            outcome="retrain",
            share=0.4,
            top="amount, channel",
            reason="retrain requested: 40% of features drifted (threshold 30%); most drifted: amount",
        )
        monitoring_run(
            c,
            exp,
            3,
            outcome="suppressed",
            guard="cooldown",
            share=0.4,
            top="amount, channel",
            reason="retrain suppressed by cooldown: the last retrain was requested at ...",
        )
        yield uri


def test_every_decision_is_listed_with_its_reason_and_guard(registry):
    events = audit.collect_events(MODEL)
    decisions = [e for e in events if e["kind"] == "retrain"]
    assert [e["details"]["outcome"] for e in decisions] == ["no_action", "retrain", "suppressed"]
    assert (
        decisions[2]["details"]["guard"] == "cooldown" and "suppressed by cooldown" in decisions[2]["summary"]
    )
    assert "most drifted: amount" in decisions[1]["summary"]
    drift = [e for e in events if e["kind"] == "drift"]
    assert len(drift) == 3 and "40% of features drifted (amount, channel)" in drift[1]["summary"]
    assert drift[1]["details"]["report"] == "runs:/w2/drift/drift_report.html"
    assert all(e["version"] == "1" for e in decisions + drift)


def test_version_audit_shows_the_windows_it_served_and_the_summary_counts_them(registry):
    kinds = [e["kind"] for e in audit.collect_events(MODEL, "1")]
    assert kinds.count("drift") == 3 and kinds.count("retrain") == 3
    text = audit.report(MODEL, airflow_env=None)
    assert "1, of which 0 stopped at data validation; 3 monitoring window(s), 1 retrain request(s)" in text
    assert "Retraining decision (suppressed)" in text
