"""Human approval through a running Airflow: the request, the answer over the REST API, the record.

Uses the session's `airflow standalone` (API server, scheduler, dag processor; see conftest.py)
with two manual-approval specs: one a reviewer approves through the REST API, one nobody answers
(its short timeout must reject: fail closed). Shares the session's MLflow server.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.integration.airflow_rest import Api, run_state, task_states, ti, trigger
from tests.integration.airflow_rest import hitl_path as hitl

pytestmark = pytest.mark.integration

APPROVED_DAG, TIMEOUT_DAG = "fraud_manual_training", "fraud_timeout_training"


@pytest.fixture(scope="module")
def airflow_api(standalone) -> Api:
    """The session's running Airflow (tests/integration/conftest.py writes these two specs)."""
    return standalone.api


@pytest.fixture(scope="module")
def runs(airflow_api) -> dict[str, str]:
    """Both DAGs triggered together, as another system would, through the REST API."""
    return {
        dag: trigger(airflow_api, dag, {"reason": "approval test"}) for dag in (APPROVED_DAG, TIMEOUT_DAG)
    }


def lose_the_resume_as_airflow_332_can(standalone, dag_id: str, run_id: str, task_id: str) -> None:
    """Do to a parked task what Airflow 3.3.2's scheduler does when an answer arrives before it has
    processed the executor's report of the park: mark the try UP_FOR_RETRY with its resume
    arguments cleared, so the answer given next is stored but resumes nothing, and the retry (same
    task-instance id, after the DAG's retry delay) must find it. The race itself is a matter of
    milliseconds (seen in CI); this makes it certain."""
    import sqlite3

    conn = standalone.env.get("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN", "")
    assert conn in ("", f"sqlite:///{standalone.env['AIRFLOW_HOME']}/airflow.db"), conn
    with sqlite3.connect(Path(standalone.env["AIRFLOW_HOME"]) / "airflow.db", timeout=30) as db:
        changed = db.execute(
            "UPDATE task_instance SET state = 'up_for_retry', next_method = NULL, next_kwargs = NULL, "
            "end_date = strftime('%Y-%m-%d %H:%M:%f000', 'now') "
            "WHERE dag_id = ? AND run_id = ? AND task_id = ? AND state = 'awaiting_input'",
            (dag_id, run_id, task_id),
        ).rowcount
    assert changed == 1


def test_manual_approval_over_rest_moves_alias_and_records_responder(stack, standalone, airflow_api, runs):
    """The answer stands even when Airflow loses the resume: the retry resumes with it, never asks again."""
    api = airflow_api
    run_id = runs[APPROVED_DAG]

    api.wait(
        "the approval request",
        lambda: ti(api, APPROVED_DAG, run_id, "approve").get("state") == "awaiting_input",
    )
    lose_the_resume_as_airflow_332_can(standalone, APPROVED_DAG, run_id, "approve")
    hitl_path = hitl(APPROVED_DAG, run_id, "approve")
    status, detail = api.call("GET", hitl_path)
    assert status == 200, detail
    body = detail.get("body") or detail.get("hitl_detail", {}).get("body", "")
    assert "Gate:" in body and "PASSED" in body and "model_card.html" in body
    assert "| roc_auc |" in body

    status, _ = api.call(
        "PATCH", hitl_path, {"chosen_options": ["Approve"], "params_input": {"comment": "x"}}, user="admin"
    )
    assert status == 403  # admin is not an assigned approver of this model
    status, resp = api.call(
        "PATCH",
        hitl_path,
        {"chosen_options": ["Approve"], "params_input": {"comment": "evidence reviewed"}},
        user="risk_lead",
    )
    assert status == 200, resp

    assert (
        api.wait(
            "the run to finish",
            lambda: run_state(api, APPROVED_DAG, run_id),
            describe=lambda: task_states(api, APPROVED_DAG, run_id),
        )
        == "success"
    )
    assert ti(api, APPROVED_DAG, run_id, "approve")["try_number"] == 2  # the retry resumed with the answer
    status, detail = api.call("GET", hitl_path)
    assert status == 200 and detail["chosen_options"] == ["Approve"], detail  # not erased by a new request
    version = stack.alias("champion", model="fraud_manual")
    assert version is not None
    tags = stack.client().get_model_version("fraud_manual", version).tags
    assert tags["modelops.approval.1.decision"] == "approved"
    assert tags["modelops.approval.1.by"] == "risk_lead"
    assert tags["modelops.approval.1.comment"] == "evidence reviewed"
    assert tags["modelops.dag_run_id"] == run_id
    card = stack.client().download_artifacts(
        tags["modelops.model_card"].split("/")[1],
        "model_card/model_card.md",
        str(stack.state_dir / "card_check"),
    )
    assert "risk_lead" in Path(card).read_text()  # the regenerated card carries the approval


def test_unanswered_approval_times_out_and_rejects(stack, airflow_api, runs):
    api = airflow_api
    run_id = runs[TIMEOUT_DAG]
    assert (
        api.wait(
            "the run to finish",
            lambda: run_state(api, TIMEOUT_DAG, run_id),
            describe=lambda: task_states(api, TIMEOUT_DAG, run_id),
        )
        == "success"
    )
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
    card = stack.client().download_artifacts(
        tags["modelops.model_card"].split("/")[1],
        "model_card/model_card.json",
        str(stack.state_dir / "card_check_timeout"),
    )
    approvals = json.loads(Path(card).read_text())["approvals"]
    assert "timeout" in json.dumps(approvals)  # the rejection is in the regenerated card


def test_the_audit_reads_the_same_dag_runs_from_the_rest_api_as_from_the_cli(stack, standalone, runs):
    """A deployment's Airflow is audited through its REST API; this checkout's through the CLI: same runs."""
    from include.modelops.governance import audit

    dags = [APPROVED_DAG, TIMEOUT_DAG]
    api = audit.AirflowApi(standalone.api.base, token=standalone.api.tokens["admin"])
    over_rest, rest_notes = audit.read_dag_runs_api(dags, api)
    over_cli, cli_notes = audit.read_dag_runs(dags, standalone.env)

    assert rest_notes == [] and cli_notes == []
    assert {runs[APPROVED_DAG], runs[TIMEOUT_DAG]} <= set(over_rest)
    assert set(over_rest) == set(over_cli)
    for run_id, run in over_rest.items():
        assert {k: run[k] for k in ("dag_id", "state", "start_date", "end_date")} == {
            k: over_cli[run_id][k] for k in ("dag_id", "state", "start_date", "end_date")
        }, run_id
    assert over_rest[runs[APPROVED_DAG]]["conf"] == {"reason": "approval test"}  # conf comes with the run

    version = stack.alias("champion", model="fraud_manual")
    text = audit.report("fraud_manual", version, airflow_api=api)
    assert runs[APPROVED_DAG] in text and "approval test" in text

    refused, notes = audit.read_dag_runs_api(dags, audit.AirflowApi(standalone.api.base, token="not-a-token"))
    assert refused == {} and len(notes) == 2 and all("refused the credentials" in n for n in notes)
