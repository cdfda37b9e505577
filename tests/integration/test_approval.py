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
    return {dag: trigger(airflow_api, dag, {"reason": "approval test"}) for dag in (APPROVED_DAG, TIMEOUT_DAG)}


def test_manual_approval_over_rest_moves_alias_and_records_responder(stack, airflow_api, runs):
    api = airflow_api
    run_id = runs[APPROVED_DAG]

    api.wait("the approval request", lambda: ti(api, APPROVED_DAG, run_id, "approve").get("state") == "awaiting_input")
    hitl_path = hitl(APPROVED_DAG, run_id, "approve")
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

    assert api.wait("the run to finish", lambda: run_state(api, APPROVED_DAG, run_id),
                    describe=lambda: task_states(api, APPROVED_DAG, run_id)) == "success"
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
    assert api.wait("the run to finish", lambda: run_state(api, TIMEOUT_DAG, run_id),
                    describe=lambda: task_states(api, TIMEOUT_DAG, run_id)) == "success"
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
