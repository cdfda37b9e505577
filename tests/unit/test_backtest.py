"""make backtest: the gate replayed over recorded runs under a changed spec names exactly the decisions that flip."""

from __future__ import annotations

import json

import pytest

from include.modelops.governance import backtest
from include.modelops.platform.tags import TAG_DAG_RUN_ID, TAG_GATE_STATUS
from tests.conftest import mlflow_uris_restored
from tests.unit.test_evaluation import FraudHoldout, fraud_spec, run_gate

MODEL = "fraud_detection"


@pytest.fixture(scope="module")
def history(tmp_path_factory):
    """Three recorded training runs of the fraud model, as the training DAG leaves them in MLflow."""
    import mlflow

    root = tmp_path_factory.mktemp("backtest")
    data = FraudHoldout(seed=3)
    spec = fraud_spec()
    weak, good, strong = data.scores(1.5), data.scores(2.0), data.scores(2.5)
    cases = {
        "manual__first": run_gate(spec, data, candidate=weak),  # first model, roc_auc ~0.86: passed
        "manual__better": run_gate(spec, data, candidate=strong, champion=weak),  # passed
        "manual__worse": run_gate(spec, data, candidate=good, champion=strong),  # rejected
    }
    with mlflow_uris_restored():
        mlflow.set_tracking_uri(f"sqlite:///{root}/mlflow.db")
        exp = mlflow.set_experiment(MODEL)
        runs = {}
        for dag_run, (report, decision) in cases.items():
            with mlflow.start_run(experiment_id=exp.experiment_id) as run:
                (root / dag_run).mkdir()
                (root / dag_run / "evaluation.json").write_text(json.dumps(report))
                (root / dag_run / "decision.json").write_text(json.dumps(decision))
                mlflow.log_artifacts(str(root / dag_run), "evaluation")
                mlflow.set_tags(
                    {TAG_DAG_RUN_ID: dag_run, TAG_GATE_STATUS: "passed" if decision["passed"] else "rejected"}
                )
                runs[dag_run] = run.info.run_id
        client = mlflow.MlflowClient()
        client.create_registered_model(MODEL)
        client.create_model_version(MODEL, f"runs:/{runs['manual__first']}/model", runs["manual__first"])
        windows = _monitoring_history(root, exp.experiment_id, spec)
        yield {"runs": runs, "cases": cases, "spec": spec, "windows": windows}


# Three drift windows: the first retrains, the second (6 h later) is held back by the 24 h cooldown,
# the third (two days on) retrains again. Decided by the real policy, in order, as the DAG does.
WINDOWS = [(0, 0.5), (6, 0.4), (48, 0.35)]  # (hours after T0 the window ends, drift share)


def _monitoring_history(root, experiment_id: str, spec) -> list[tuple[str, str]]:
    from datetime import UTC, datetime, timedelta

    import mlflow

    from include.modelops.monitoring.policy import PastDecision, PolicyContext, WindowFigures, decide
    from include.modelops.platform.tags import KIND_MONITORING, MONITORING, TAG_KIND

    t0 = datetime(2026, 3, 2, tzinfo=UTC)
    memory, recorded = [], []
    for hours, share in WINDOWS:
        end = t0 + timedelta(hours=hours)
        key = f"{(end - timedelta(hours=6)).isoformat()}/{end.isoformat()}"
        figures = {
            "rows": 5000,
            "labelled_rows": 0,
            "status": "checked",
            "drift_share": share,
            "top_drifted": ["amount"],
        }
        d = decide(
            spec.monitoring,
            WindowFigures.from_figures(key, end, figures),
            PolicyContext(now=end, history=memory),
        )
        memory.append(PastDecision(key, end, end, d.outcome, bool(d.triggers)))
        folder = root / f"window-{hours}"
        folder.mkdir()
        (folder / "drift_summary.json").write_text(json.dumps({"figures": figures}))
        with mlflow.start_run(experiment_id=experiment_id):
            mlflow.log_artifact(str(folder / "drift_summary.json"), "drift")
            mlflow.set_tags(
                {
                    TAG_KIND: KIND_MONITORING,
                    f"{MONITORING}window": key,
                    f"{MONITORING}window_end": end.isoformat(),
                    f"{MONITORING}decided_at": end.isoformat(),
                    f"{MONITORING}outcome": d.outcome,
                    f"{MONITORING}reason": d.reason,
                    f"{MONITORING}guard": d.guard or "",
                }
            )
        recorded.append((key, d.outcome))
    return recorded


def test_the_recorded_windows_are_what_the_policy_said_then(history):
    assert [outcome for _, outcome in history["windows"]] == ["retrain", "suppressed", "retrain"]


def test_a_shorter_cooldown_names_the_window_it_would_have_retrained(history):
    shorter = fraud_spec().model_copy(
        update={"monitoring": fraud_spec().monitoring.model_copy(update={"retrain_cooldown_hours": 1})}
    )
    bt = backtest.run_backtest(MODEL, shorter, current=history["spec"])
    assert [(w.window, w.recorded, w.replayed) for w in bt.window_flips] == [
        (history["windows"][1][0], "suppressed", "retrain")
    ]
    assert bt.flips == []  # the gate did not change
    assert bt.changes == [("monitoring.retrain_cooldown_hours", 24, 1)]
    assert "3 monitoring window(s) replayed: 1 decision(s) flip" in backtest.render_text(bt)


def test_a_higher_drift_threshold_replays_with_the_replays_own_memory(history):
    """At 45% only the first window drifts: the third, no longer drifted, would not have retrained."""
    higher = fraud_spec().model_copy(
        update={"monitoring": fraud_spec().monitoring.model_copy(update={"drift_share_threshold": 0.45})}
    )
    bt = backtest.run_backtest(MODEL, higher, current=history["spec"])
    assert [w.replayed for w in bt.windows] == ["retrain", "no_action", "no_action"]
    assert [w.window for w in bt.window_flips] == [history["windows"][1][0], history["windows"][2][0]]


def test_the_recorded_history_is_what_the_gate_said_then(history):
    assert [d["passed"] for _, d in history["cases"].values()] == [True, True, False]


def test_the_unchanged_spec_flips_nothing(history):
    bt = backtest.run_backtest(MODEL, history["spec"], current=history["spec"])
    assert len(bt.candidates) == 3 and bt.flips == [] and bt.changes == []
    assert len(bt.windows) == 3 and bt.window_flips == []


def test_a_stricter_threshold_names_exactly_the_decisions_that_flip(history):
    stricter = fraud_spec(thresholds={"roc_auc": {"min": 0.9}})
    bt = backtest.run_backtest(MODEL, stricter, current=history["spec"], spec_path="stricter.yaml")

    assert [c.dag_run_id for c in bt.flips] == ["manual__first"]
    [flip] = bt.flips
    assert (flip.recorded, flip.replayed, flip.version) == ("passed", "rejected", "1")
    assert "roc_auc" in " ".join(flip.replayed_failed)
    assert ("evaluation.gate.thresholds.roc_auc.min", 0.75, 0.9) in bt.changes
    text = backtest.render_text(bt)
    assert "FLIPS" in text and "manual__first" in text
    assert (
        "3 past candidate(s) replayed: 1 decision(s) flip (v1 passed -> rejected), 2 stay the same." in text
    )
    assert "Nothing was written" in text
    page = backtest.render_html(bt)
    assert page.startswith("<!DOCTYPE html>") and 'class="flip"' in page


def test_a_looser_rule_can_flip_a_rejection_into_a_pass(history):
    looser = fraud_spec(max_drop_vs_champion=1.0, slices={"max_drop_vs_champion": 1.0, "max_gap": 1.0})
    bt = backtest.run_backtest(MODEL, looser, current=history["spec"])
    flipped = {c.dag_run_id: (c.recorded, c.replayed) for c in bt.flips}
    assert flipped == {"manual__worse": ("rejected", "passed")}


def test_a_change_to_how_evidence_is_computed_is_said(history):
    resampled = fraud_spec().model_copy(
        update={"evaluation": fraud_spec().evaluation.model_copy(update={"bootstrap_samples": 50})}
    )
    bt = backtest.run_backtest(MODEL, resampled, current=history["spec"])
    assert any("evaluation.bootstrap_samples" in n and "keeps it" in n for n in bt.notes)


def test_nothing_to_replay_is_a_clear_error(history):
    other = fraud_spec().model_copy(update={"name": "churn"})
    with pytest.raises(backtest.BacktestError, match="not 'fraud_detection'"):
        backtest.run_backtest(MODEL, other, current=history["spec"])


def test_make_backtest_reads_a_changed_copy_whatever_its_file_is_called(
    history, tmp_path, monkeypatch, capsys
):
    import mlflow
    import yaml

    from include.modelops import cli
    from tests.unit.test_evaluation import FRAUD_YAML

    raw = yaml.safe_load(FRAUD_YAML.read_text())
    raw["evaluation"]["gate"]["thresholds"]["roc_auc"]["min"] = 0.9
    changed = tmp_path / "fraud_stricter.yaml"  # not named after the model: a copy to try out
    changed.write_text(yaml.safe_dump(raw, sort_keys=False))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow.get_tracking_uri())
    page = tmp_path / "backtest.html"

    assert cli.main(["backtest", "--model", MODEL, "--spec", str(changed), "--html", str(page)]) == 0
    out = capsys.readouterr().out
    assert "1 decision(s) flip (v1 passed -> rejected)" in out
    assert page.read_text().startswith("<!DOCTYPE html>")
    assert cli.main(["backtest", "--model", MODEL, "--spec", str(tmp_path / "missing.yaml")]) == 2


def test_the_backtest_dags_task_takes_the_changed_spec_as_yaml_and_writes_its_report(
    history, tmp_path, monkeypatch
):
    import yaml

    from include.modelops.pipelines import backtest as task
    from include.modelops.spec import ModelSpecError
    from tests.unit.test_evaluation import FRAUD_YAML

    monkeypatch.setenv("MODELOPS_RUNS_DIR", str(tmp_path / "runs"))
    raw = yaml.safe_load(FRAUD_YAML.read_text())
    raw["evaluation"]["gate"]["thresholds"]["roc_auc"]["min"] = 0.9
    result = task.run(MODEL, yaml.safe_dump(raw), dag_run_id="manual__2026-12-04T10:00:00+00:00")

    assert result["gate_flips"] == ["manual__first: passed -> rejected"]
    assert result["window_flips"] == [] and (result["candidates"], result["windows"]) == (3, 3)
    report = tmp_path / "runs" / MODEL / "backtest" / "manual__2026-12-04T10_00_00_00_00.html"
    assert result["report_html"] == str(report)
    page = report.read_text()
    assert 'class="flip"' in page and "manual__first" in page and "roc_auc" in page

    with pytest.raises(ModelSpecError, match="not valid YAML"):
        task.run(MODEL, "name: [unclosed", dag_run_id="x")
    with pytest.raises(ModelSpecError, match="this DAG backtests 'fraud_detection'"):
        task.run(MODEL, yaml.safe_dump({**raw, "name": "churn"}), dag_run_id="x")
    with pytest.raises(ModelSpecError, match="a whole model spec"):
        task.run(MODEL, "", dag_run_id="x")
