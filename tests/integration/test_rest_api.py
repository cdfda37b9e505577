"""Retraining from other systems: Airflow's REST API, driven by the official Python client
(`apache-airflow-client`) and by the README's curl example, against a real `airflow standalone`
(API server, scheduler, dag processor, triggerer) on the session's MLflow.

The last test is the end-to-end path as the scheduler runs it: drifted traffic in the inference
log -> the monitoring DAG -> the `<model>.retrain_requested` asset event -> a training run that
Airflow starts on that event, whose version carries the reason.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import requests

from include.modelops.platform import processes
from tests.conftest import PROJECT_ROOT
from tests.integration.conftest import write_test_spec
from tests.monitoring_traffic import log_scored_traffic

pytestmark = pytest.mark.integration
MODEL = "fraud_rest"
TRAINING, MONITORING = f"{MODEL}_training", f"{MODEL}_monitoring"
DONE = ("success", "failed")


@pytest.fixture(scope="module")
def airflow(stack):
    """`airflow standalone` on the session stack's metadata DB and MLflow; stopped after the module."""
    from include.modelops.platform import local_stack

    write_test_spec(
        stack.specs_dir,
        stack.data_dir,
        name=MODEL,
        monitoring={"min_window_rows": 200, "min_labelled_rows_for_metric": 200},
    )
    env = dict(stack.env)
    base = env["AIRFLOW__API__BASE_URL"]
    # Only this module's DAGs run: other modules' DAGs (and asset events they left) stay out of the scheduler.
    local_stack.airflow(
        ["dags", "pause", "--treat-dag-id-as-regex", "-y", f"^(?!{MODEL}_)"], env
    )  # none yet: fine
    log_file = stack.state_dir / "logs" / "airflow-standalone.log"
    proc = subprocess.Popen(
        [sys.executable, "-m", "airflow", "standalone"],
        env=env,
        cwd=PROJECT_ROOT,
        start_new_session=True,
        stdout=open(log_file, "ab"),
        stderr=subprocess.STDOUT,
    )  # noqa: SIM115
    try:
        local_stack.wait_http(f"{base}/api/v2/monitor/health", 300, proc, "Airflow API server")
        pw_file = Path(env["AIRFLOW_HOME"]) / "simple_auth_manager_passwords.json.generated"
        ((user, password),) = json.loads(pw_file.read_text()).items()
        yield {"base": base, "user": user, "password": password, "log": log_file}
    finally:
        processes.stop_process(proc, timeout_s=30)


@pytest.fixture(scope="module")
def api(airflow):
    """The official client, authenticated with a token from /auth/token."""
    import airflow_client.client as client

    token = requests.post(
        f"{airflow['base']}/auth/token",
        json={"username": airflow["user"], "password": airflow["password"]},
        timeout=30,
    ).json()["access_token"]
    with client.ApiClient(client.Configuration(host=airflow["base"], access_token=token)) as c:
        yield c


def wait_for_dag(api, dag_id: str, timeout_s: float = 240) -> None:
    """Until the dag processor has parsed the spec's DAG (it appears in the API)."""
    import airflow_client.client as client

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            client.DAGApi(api).get_dag(dag_id)
            return
        except client.ApiException as exc:
            if exc.status != 404:
                raise
        time.sleep(3)
    raise AssertionError(f"{dag_id} was never parsed")


def wait_for_run(api, dag_id: str, run_id: str, timeout_s: float = 900):
    """Poll a DAG run until it succeeds or fails; returns it."""
    import airflow_client.client as client

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        run = client.DagRunApi(api).get_dag_run(dag_id, run_id)
        if run.state in DONE:
            return run
        time.sleep(5)
    raise AssertionError(f"{dag_id} run {run_id} still {run.state} after {timeout_s:.0f} s")


def xcom(api, dag_id: str, run_id: str, task_id: str):
    """A task's return value, read through the REST API."""
    import airflow_client.client as client

    entry = client.XComApi(api).get_xcom_entry(dag_id, task_id, run_id, "return_value", stringify=False)
    value = entry.actual_instance.value
    return json.loads(value) if isinstance(value, str) else value


def readme_rest_example() -> str:
    """The README's REST example (the bash block after 'through Airflow's REST API')."""
    text = (PROJECT_ROOT / "README.md").read_text()
    m = re.search(r"through Airflow's REST API\*\*.*?```bash\n(.*?)```", text, re.S)
    assert m, "the README lost its REST example"
    return m.group(1)


def test_readme_example_triggers_training_with_data_and_reason_and_the_client_polls_it(stack, airflow, api):
    wait_for_dag(api, TRAINING)
    script = (
        readme_rest_example()
        .replace("http://127.0.0.1:8080", airflow["base"])
        .replace("<from make up>", airflow["password"])
        .replace('"username": "admin"', f'"username": "{airflow["user"]}"')
        .replace("fraud_detection_training", TRAINING)
        .replace("/data/fraud/2026-03", str(stack.data_dir))
    )
    out = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", script],
        capture_output=True,
        text=True,
        timeout=120,
        env={**stack.env, "PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin"},
    )
    assert out.returncode == 0, out.stderr
    triggered = json.loads(out.stdout)
    assert triggered["conf"] == {"data_path": str(stack.data_dir), "reason": "monthly refresh"}

    run = wait_for_run(api, TRAINING, triggered["dag_run_id"])
    assert run.state == "success"
    summary = xcom(api, TRAINING, run.dag_run_id, "summarize")
    assert summary["failed_steps"] == []
    version = summary["steps"]["register_candidate"]["result"]["version"]
    mv = stack.client().get_model_version(MODEL, str(version))
    assert mv.tags["modelops.trigger_reason"] == "monthly refresh"
    assert stack.alias("champion", model=MODEL) == str(version)


def test_request_without_a_token_gets_401(airflow):
    import airflow_client.client as client

    with (
        client.ApiClient(client.Configuration(host=airflow["base"])) as anonymous,
        pytest.raises(client.ApiException) as exc,
    ):
        client.DagRunApi(anonymous).trigger_dag_run(
            TRAINING,
            client.TriggerDAGRunPostBody(
                logical_date=None, conf={"data_path": "/tmp/x", "reason": "no token"}
            ),
        )
    assert exc.value.status == 401


def test_missing_data_path_fails_at_validation_and_registers_nothing(stack, api):
    import airflow_client.client as client

    before = stack.versions(MODEL)
    missing = str(stack.state_dir / "data" / "no_such_month")
    run = client.DagRunApi(api).trigger_dag_run(
        TRAINING,
        client.TriggerDAGRunPostBody(
            logical_date=None, conf={"data_path": missing, "reason": "typo in the path"}
        ),
    )
    run = wait_for_run(api, TRAINING, run.dag_run_id)
    assert run.state == "failed"
    ti = client.TaskInstanceApi(api).get_task_instance(TRAINING, run.dag_run_id, "validate_dataset")
    assert ti.state == "failed" and ti.try_number == 1, "a user's mistake is not retried"
    log = client.TaskInstanceApi(api).get_log(
        TRAINING, run.dag_run_id, "validate_dataset", 1, full_content=True
    )
    text = "\n".join(str(getattr(line, "event", line)) for line in log.content)
    assert missing in text and "does not exist" in text, text[-3000:]
    assert (
        client.TaskInstanceApi(api).get_task_instance(TRAINING, run.dag_run_id, "register_candidate").state
        != "success"
    )
    assert stack.versions(MODEL) == before


def test_drifted_traffic_starts_one_training_run_through_the_asset_event(stack, api):
    import airflow_client.client as client

    champion = stack.alias("champion", model=MODEL)
    assert champion is not None
    start = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=3)
    log_scored_traffic(
        MODEL,
        champion,
        start + timedelta(minutes=10),
        rows=2000,
        seed=3,
        drift="scale=amount:4 shift=channel:online:0.8 scale=distance_from_home_km:6 "
        "shift=merchant_category:gaming:0.6",
    )
    runs = client.DagRunApi(api)
    training_before = {r.dag_run_id for r in runs.get_dag_runs(TRAINING).dag_runs}
    wait_for_dag(api, MONITORING)
    run = runs.trigger_dag_run(
        MONITORING,
        client.TriggerDAGRunPostBody(
            logical_date=None,
            conf={"window_start": start.isoformat(), "window_end": (start + timedelta(hours=2)).isoformat()},
        ),
    )
    assert wait_for_run(api, MONITORING, run.dag_run_id).state == "success"
    decision = xcom(api, MONITORING, run.dag_run_id, "decide_retraining")
    assert decision["outcome"] == "retrain", decision["reason"]

    deadline = time.monotonic() + 120
    started: list = []
    while not started and time.monotonic() < deadline:  # the scheduler queues it on the asset event
        started = [r for r in runs.get_dag_runs(TRAINING).dag_runs if r.dag_run_id not in training_before]
        time.sleep(3)
    assert len(started) == 1, "one retrain request starts exactly one training run"
    assert started[0].run_type == "asset_triggered"
    retrain = wait_for_run(api, TRAINING, started[0].dag_run_id)
    assert retrain.state == "success"
    summary = xcom(api, TRAINING, retrain.dag_run_id, "summarize")
    mv = stack.client().get_model_version(MODEL, summary["steps"]["register_candidate"]["result"]["version"])
    assert mv.tags["modelops.trigger_reason"] == f"drift monitoring: {decision['reason']}"
    assert mv.tags["modelops.drift_report"].endswith("drift/drift_report.html")
