"""Monitoring wiring: one monitoring DAG per spec that emits the drift and retrain assets, and a
training DAG that is scheduled on the retrain request as well as on its cron."""

from __future__ import annotations

import pytest

from tests.dags.test_dag_policy import PROJECT_ROOT


@pytest.fixture(scope="module")
def dagbag():
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(dag_folder=str(PROJECT_ROOT / "dags"))


def test_every_spec_has_a_monitoring_dag_on_its_drift_schedule(dagbag):
    from include.modelops.spec import load_all_specs

    for spec in load_all_specs():
        dag = dagbag.dags[f"{spec.name}_monitoring"]
        assert dag.max_active_runs == 1, "decisions are serialised: a burst of runs requests one retrain"
        order = ["monitor_window", "decide_retraining", "retrain_decided", "request_retraining"]
        for up, down in zip(order, order[1:]):
            assert down in dag.get_task(up).downstream_task_ids
        outlets = {t.task_id: [a.name for a in t.outlets] for t in dag.tasks}
        assert outlets["monitor_window"] == [f"{spec.name}.drift_report"]
        assert outlets["request_retraining"] == [f"{spec.name}.retrain_requested"]
        assert outlets["decide_retraining"] == [], "a decision not to retrain must emit nothing"


def test_training_dag_is_scheduled_on_the_retrain_request_and_its_cron(tmp_path):
    import json
    import os
    import subprocess
    import sys

    import yaml

    from tests.dags.test_dag_policy import PYTHONPATH

    raw = yaml.safe_load((PROJECT_ROOT / "include/models/fraud_detection.yaml").read_text())
    raw["schedule"] = "0 3 * * 1"
    (tmp_path / "fraud_detection.yaml").write_text(yaml.safe_dump(raw))
    code = (
        "import json\n"
        "from airflow.dag_processing.dagbag import DagBag\n"
        f"for specs in ({str(tmp_path)!r}, None):\n"
        "    import os\n"
        "    if specs: os.environ['MODELOPS_SPECS_DIR'] = specs\n"
        "    else: os.environ.pop('MODELOPS_SPECS_DIR', None)\n"
        f"    d = DagBag({str(PROJECT_ROOT / 'dags')!r}).dags['fraud_detection_training']\n"
        "    t, c = d.timetable, d.timetable.asset_condition\n"
        "    print(json.dumps([type(t).__name__, [a.name for a in getattr(c, 'objects', [c])]]))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        cwd=PROJECT_ROOT,
        env={**os.environ, "PYTHONPATH": PYTHONPATH},
        timeout=120,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    with_cron, asset_only = [json.loads(line) for line in out.stdout.splitlines() if line.startswith('["')]
    assert with_cron == ["AssetOrTimeSchedule", ["fraud_detection.retrain_requested"]]
    assert asset_only == ["AssetTriggeredTimetable", ["fraud_detection.retrain_requested"]]
