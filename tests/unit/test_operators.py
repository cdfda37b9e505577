"""The custom operators: constructors only store and validate; the approval form has one field."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from airflow.sdk import DAG, Param
from modelops_operators import ModelApprovalOperator, ModelCardOperator


def approval(**overrides):
    args = dict(task_id="approve", model_name="m", registered={"version": "1"}, evaluated={}, card={},
                policy="manual", approvers=["risk_lead"], response_timeout=timedelta(hours=2))
    return ModelApprovalOperator(**{**args, **overrides})


def test_approval_form_asks_only_for_a_comment_even_in_a_dag_with_params():
    with DAG("d", schedule=None, start_date=datetime(2026, 1, 1),
             params={"data_path": Param(None, type=["null", "string"])}):
        op = approval()
    assert list(op.serialized_params) == ["comment"]


def test_approval_fails_closed_and_is_assigned_to_the_spec_approvers():
    op = approval()
    assert op.defaults == [ModelApprovalOperator.REJECT]
    assert op.assigned_users == [{"id": "risk_lead", "name": "risk_lead"}]
    assert op.response_timeout == timedelta(hours=2)
    assert set(op.template_fields) >= {"model_name", "registered", "evaluated", "card"}


def test_approval_rejects_an_unknown_policy():
    with pytest.raises(ValueError, match="policy must be 'auto' or 'manual'"):
        approval(policy="yolo")


def test_model_card_operator_templates_its_inputs():
    op = ModelCardOperator(task_id="card", model_name="m", validated={}, split={}, evaluated={}, registered={})
    assert tuple(op.template_fields) == ("model_name", "validated", "split", "evaluated", "registered")


def test_a_retried_approval_resumes_with_the_answer_its_request_already_has(monkeypatch, reference_spec):
    """Airflow 3.3.2 can fail a try that was resumed with an answer and retry it under the same
    task-instance id (seen in CI: the run then waited for an answer nobody would give again).
    The retry uses the stored answer and never writes a new request over it."""
    from types import SimpleNamespace

    import airflow.sdk.execution_time.hitl as hitl

    from include.modelops import approvals

    answered_at = datetime(2026, 11, 23, 15, 59, 25)
    asked: list[str] = []
    monkeypatch.setattr(hitl, "get_hitl_detail_content_detail", lambda ti_id: asked.append(ti_id) or SimpleNamespace(
        response_received=True, chosen_options=["Approve"], params_input={"comment": "evidence reviewed"},
        responded_at=answered_at, responded_by_user=SimpleNamespace(id="risk_lead", name="risk_lead")))
    monkeypatch.setattr("airflow.providers.standard.operators.hitl.upsert_hitl_detail",
                        lambda **_: pytest.fail("asked again although the request was answered"))
    monkeypatch.setattr("include.modelops.spec.load_spec_by_name", lambda name: reference_spec)
    monkeypatch.setattr(approvals, "check_ready", lambda *a, **k: None)
    monkeypatch.setattr(approvals, "policy_decision", lambda *a, **k: None)
    monkeypatch.setattr(approvals, "check_distinct", lambda *a, **k: None)
    recorded: list[dict] = []
    monkeypatch.setattr(approvals, "record", lambda model, version, **kw: recorded.append(
        {"model": model, "version": version, **kw}))

    result = approval(model_name=reference_spec.name).execute({"task_instance": SimpleNamespace(id="ti-1")})

    assert asked == ["ti-1"]
    assert recorded == [{"model": reference_spec.name, "version": "1", "index": 1, "decision": approvals.APPROVED,
                         "by": "risk_lead", "comment": "evidence reviewed", "timed_out": False}]
    assert result["chosen_options"] == ["Approve"] and result["responded_by_user"]["id"] == "risk_lead"


def test_no_earlier_answer_without_a_request_or_a_response(monkeypatch):
    from types import SimpleNamespace

    import airflow.sdk.execution_time.hitl as hitl
    from modelops_operators.approval import answer_given_before

    def not_found(ti_id):
        raise RuntimeError("404: no HITL detail")

    monkeypatch.setattr(hitl, "get_hitl_detail_content_detail", not_found)
    assert answer_given_before({"task_instance": SimpleNamespace(id="ti-1")}) is None
    monkeypatch.setattr(hitl, "get_hitl_detail_content_detail", lambda ti_id: SimpleNamespace(
        response_received=False, chosen_options=None, params_input=None, responded_at=None, responded_by_user=None))
    assert answer_given_before({"task_instance": SimpleNamespace(id="ti-1")}) is None
