"""Human approval through a running Airflow: the request, the answer over the REST API, the record.

Starts `airflow standalone` (API server, scheduler, dag processor) in its own Airflow home with
two manual-approval specs: one a reviewer approves through the REST API, one nobody answers
(its short timeout must reject: fail closed). Shares the session's MLflow server.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.integration.conftest import write_test_spec

pytestmark = pytest.mark.integration

APPROVED_DAG, TIMEOUT_DAG = "fraud_manual_training", "fraud_timeout_training"


class Api:
    def __init__(self, base: str, users: dict[str, str]):
        self.base = base
        self.tokens = {u: self._token(u, p) for u, p in users.items()}

    def _token(self, user: str, password: str) -> str:
        req = urllib.request.Request(f"{self.base}/auth/token", method="POST",
                                     data=json.dumps({"username": user, "password": password}).encode(),
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=30) as r:
            return json.loads(r.read())["access_token"]

    def call(self, method: str, path: str, body: dict | None = None, *, user: str = "admin") -> tuple[int, dict]:
        req = urllib.request.Request(f"{self.base}/api/v2{path}", method=method,
                                     data=json.dumps(body).encode() if body is not None else None,
                                     headers={"Content-Type": "application/json",
                                              "Authorization": f"Bearer {self.tokens[user]}"})
        try:
            with urllib.request.urlopen(req, timeout=30) as r:
                return r.status, json.loads(r.read() or b"{}")
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read() or b"{}")

    def wait(self, what: str, fn, timeout_s: float = 600, every_s: float = 3):
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            value = fn()
            if value:
                return value
            time.sleep(every_s)
        raise TimeoutError(f"timed out waiting for {what}")


@pytest.fixture(scope="module")
def airflow_api(stack):
    from include.modelops import local_stack

    state = stack.state_dir / "standalone"
    specs = state / "specs"
    common = {"risk_tier": "medium"}
    write_test_spec(specs, stack.data_dir, name="fraud_manual", **common,
                    approval={"policy": "manual", "approvers": ["risk_lead"], "timeout_hours": 1})
    write_test_spec(specs, stack.data_dir, name="fraud_timeout", **common,
                    approval={"policy": "manual", "approvers": ["risk_lead"], "timeout_hours": 0.01})
    port = local_stack.free_port()
    env = local_stack.stack_env(state, stack.mlflow_uri, specs_dir=specs, api_port=port)
    env.update({
        "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "admin:admin,risk_lead:admin",
        "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
        "AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC": "2",
    })
    local_stack.migrate_airflow_db(env)
    (state / "logs").mkdir(parents=True, exist_ok=True)
    log = open(state / "logs" / "standalone.log", "wb")  # noqa: SIM115
    proc = subprocess.Popen([sys.executable, "-m", "airflow", "standalone"], env=env, stdout=log,
                            stderr=subprocess.STDOUT, start_new_session=True, cwd=local_stack.PROJECT_ROOT)
    try:
        local_stack._wait_http(f"http://127.0.0.1:{port}/api/v2/monitor/health", 240, proc, "Airflow API server")
        pw_file = Path(env["AIRFLOW_HOME"]) / "simple_auth_manager_passwords.json.generated"
        api = Api(f"http://127.0.0.1:{port}", json.loads(pw_file.read_text()))
        api.wait("DAGs to be parsed", lambda: all(api.call("GET", f"/dags/{d}")[0] == 200
                                                   for d in (APPROVED_DAG, TIMEOUT_DAG)), 180)
        yield api
    finally:
        local_stack.stop_process(proc, timeout_s=30)
        log.close()


def trigger(api: Api, dag_id: str, reason: str) -> str:
    status, body = api.call("POST", f"/dags/{dag_id}/dagRuns", {"logical_date": None, "conf": {"reason": reason}})
    assert status == 200, body
    return body["dag_run_id"]


def ti(api: Api, dag_id: str, run_id: str, task_id: str) -> dict:
    return api.call("GET", f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}")[1]


def run_state(api: Api, dag_id: str, run_id: str) -> str | None:
    state = api.call("GET", f"/dags/{dag_id}/dagRuns/{run_id}")[1].get("state")
    return state if state in ("success", "failed") else None


@pytest.fixture(scope="module")
def runs(airflow_api) -> dict[str, str]:
    """Both DAGs triggered together, as another system would, through the REST API."""
    return {dag: trigger(airflow_api, dag, "approval test") for dag in (APPROVED_DAG, TIMEOUT_DAG)}


def test_manual_approval_over_rest_moves_alias_and_records_responder(stack, airflow_api, runs):
    api = airflow_api
    run_id = runs[APPROVED_DAG]

    api.wait("the approval request", lambda: ti(api, APPROVED_DAG, run_id, "approve").get("state") == "awaiting_input")
    hitl_path = f"/dags/{APPROVED_DAG}/dagRuns/{run_id}/taskInstances/approve/-1/hitlDetails"
    status, detail = api.call("GET", hitl_path)
    assert status == 200, detail
    body = detail.get("body") or detail.get("hitl_detail", {}).get("body", "")
    assert "Gate:" in body and "PASSED" in body and "model_card.html" in body
    assert "| roc_auc |" in body

    status, _ = api.call("PATCH", hitl_path, {"chosen_options": ["Approve"], "params_input": {"comment": "x"}},
                         user="admin")
    assert status == 403  # admin is not an assigned approver of this model
    status, resp = api.call("PATCH", hitl_path, {"chosen_options": ["Approve"],
                                                 "params_input": {"comment": "evidence reviewed"}}, user="risk_lead")
    assert status == 200, resp

    assert api.wait("the run to finish", lambda: run_state(api, APPROVED_DAG, run_id)) == "success"
    version = stack.alias("champion", model="fraud_manual")
    assert version is not None
    tags = stack.client().get_model_version("fraud_manual", version).tags
    assert tags["modelops.approval.1.decision"] == "approved"
    assert tags["modelops.approval.1.by"] == "risk_lead"
    assert tags["modelops.approval.1.comment"] == "evidence reviewed"
    assert tags["modelops.dag_run_id"] == run_id
    card = stack.client().download_artifacts(tags["modelops.model_card"].split("/")[1], "model_card/model_card.md",
                                             str(stack.state_dir / "card_check"))
    assert "risk_lead" in Path(card).read_text()  # the regenerated card carries the approval


def test_unanswered_approval_times_out_and_rejects(stack, airflow_api, runs):
    api = airflow_api
    run_id = runs[TIMEOUT_DAG]
    assert api.wait("the run to finish", lambda: run_state(api, TIMEOUT_DAG, run_id)) == "success"
    assert ti(api, TIMEOUT_DAG, run_id, "approve")["state"] == "success"
    for task in ("package_bento", "smoke_serve_bento", "promote_to_champion"):
        assert ti(api, TIMEOUT_DAG, run_id, task)["state"] == "skipped", task
    assert stack.alias("champion", model="fraud_timeout") is None
    version = stack.versions("fraud_timeout")[-1]
    tags = stack.client().get_model_version("fraud_timeout", version).tags
    assert tags["modelops.approval.1.decision"] == "rejected"
    assert tags["modelops.approval.1.by"] == "timeout"
    assert tags["modelops.approval.1.timed_out"] == "True"
    assert ti(api, TIMEOUT_DAG, run_id, "update_model_card")["state"] == "success"
    card = stack.client().download_artifacts(tags["modelops.model_card"].split("/")[1], "model_card/model_card.json",
                                             str(stack.state_dir / "card_check_timeout"))
    approvals = json.loads(Path(card).read_text())["approvals"]
    assert "timeout" in json.dumps(approvals)  # the rejection is in the regenerated card
