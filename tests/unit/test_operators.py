"""The custom operators: constructors only store and validate; the approval form has one field."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from airflow.sdk import DAG, Param
from modelops_operators import ModelApprovalOperator, ModelCardOperator


def approval(**overrides):
    args = dict(
        task_id="approve",
        model_name="m",
        registered={"version": "1"},
        evaluated={},
        card={},
        policy="manual",
        approvers=["risk_lead"],
        response_timeout=timedelta(hours=2),
    )
    return ModelApprovalOperator(**{**args, **overrides})


def test_approval_form_asks_only_for_a_comment_even_in_a_dag_with_params():
    with DAG(
        "d",
        schedule=None,
        start_date=datetime(2026, 1, 1),
        params={"data_path": Param(None, type=["null", "string"])},
    ):
        op = approval()
    assert list(op.serialized_params) == ["comment"]


def test_approval_fails_closed_and_is_assigned_to_the_spec_approvers():
    op = approval()
    assert op.defaults == [ModelApprovalOperator.REJECT]
    assert op.assigned_users == [{"id": "risk_lead", "name": "risk_lead"}]
    assert op.response_timeout == timedelta(hours=2)
    assert set(op.template_fields) == {"model_name", "registered", "evaluated", "card"}
    assert all(hasattr(op, f) for f in op.template_fields)  # each is a constructor input it keeps


def test_approval_rejects_an_unknown_policy():
    with pytest.raises(ValueError, match="policy must be 'auto' or 'manual'"):
        approval(policy="yolo")


def test_model_card_operator_templates_its_inputs():
    op = ModelCardOperator(
        task_id="card", model_name="m", validated={}, split={}, evaluated={}, registered={}
    )
    assert tuple(op.template_fields) == ("model_name", "validated", "split", "evaluated", "registered")


def _fire(trigger):
    """The events a trigger yields, as the triggerer would run it."""
    import asyncio

    async def collect():
        return [event.payload async for event in trigger.run()]

    return asyncio.run(collect())


def _stub_approval_evidence(monkeypatch, spec):
    from include.modelops.governance import approvals

    monkeypatch.setattr("include.modelops.spec.load_spec_by_name", lambda name: spec)
    monkeypatch.setattr(approvals, "check_ready", lambda *a, **k: None)
    monkeypatch.setattr(approvals, "policy_decision", lambda *a, **k: None)
    monkeypatch.setattr(approvals, "check_distinct", lambda *a, **k: None)
    monkeypatch.setattr(approvals, "request_markdown", lambda *a, **k: "evidence")
    recorded: list[dict] = []
    monkeypatch.setattr(
        approvals,
        "record",
        lambda model, version, **kw: recorded.append({"model": model, "version": version, **kw}),
    )
    asked: list[str] = []
    monkeypatch.setattr(
        "airflow.providers.standard.operators.hitl.upsert_hitl_detail", lambda **kw: asked.append(kw["ti_id"])
    )
    return recorded, asked


def test_a_retried_approval_resumes_with_the_answer_its_request_already_has(monkeypatch, reference_spec):
    """Airflow 3.3.2 can fail a try that was resumed with an answer and retry it under the same
    task-instance id (seen in CI: the run then waited for an answer nobody would give again).
    The retry reads the stored answer in the triggerer (a worker cannot) and never writes a new
    request over it."""
    from types import SimpleNamespace

    import airflow.sdk.execution_time.hitl as hitl
    from airflow.sdk.exceptions import TaskDeferred
    from modelops_operators.earlier_answer import EarlierAnswerTrigger

    from include.modelops.governance import approvals

    recorded, asked = _stub_approval_evidence(monkeypatch, reference_spec)
    answered_at = datetime(2026, 11, 23, 15, 59, 25)
    read: list[str] = []
    monkeypatch.setattr(
        hitl,
        "get_hitl_detail_content_detail",
        lambda ti_id: read.append(str(ti_id))
        or SimpleNamespace(
            response_received=True,
            chosen_options=["Approve"],
            params_input={"comment": "evidence reviewed"},
            responded_at=answered_at,
            responded_by_user=SimpleNamespace(id="risk_lead", name="risk_lead"),
        ),
    )
    ti_id = "01a20a85-335d-7de3-a866-e69e240ade50"
    context = {"task_instance": SimpleNamespace(id=ti_id, try_number=2)}
    op = approval(model_name=reference_spec.name)

    with pytest.raises(TaskDeferred) as deferred:
        op.execute(context)
    trigger = deferred.value.trigger
    assert isinstance(trigger, EarlierAnswerTrigger) and deferred.value.method_name == "resume_or_ask"
    assert EarlierAnswerTrigger(**trigger.serialize()[1]).ti_id == ti_id  # what the triggerer rebuilds
    [event] = _fire(trigger)
    result = getattr(op, deferred.value.method_name)(context, event)

    assert read == [ti_id] and asked == []
    assert recorded == [
        {
            "model": reference_spec.name,
            "version": "1",
            "index": 1,
            "decision": approvals.APPROVED,
            "by": "risk_lead",
            "comment": "evidence reviewed",
            "timed_out": False,
        }
    ]
    assert result["chosen_options"] == ["Approve"] and result["responded_by_user"]["id"] == "risk_lead"


def test_a_retry_without_a_stored_answer_asks_and_a_first_try_asks_at_once(monkeypatch, reference_spec):
    from types import SimpleNamespace

    import airflow.sdk.execution_time.hitl as hitl
    from airflow.sdk.exceptions import TaskAwaitingInput, TaskDeferred
    from modelops_operators.earlier_answer import EarlierAnswerTrigger

    recorded, asked = _stub_approval_evidence(monkeypatch, reference_spec)
    TI_1, TI_2 = "01a20a85-335d-7de3-a866-e69e240ade51", "01a20a85-335d-7de3-a866-e69e240ade52"

    def not_found(ti_id):
        raise RuntimeError("404: no HITL detail")

    monkeypatch.setattr(hitl, "get_hitl_detail_content_detail", not_found)
    assert _fire(EarlierAnswerTrigger(TI_1))[0]["answer"] is None
    monkeypatch.setattr(
        hitl,
        "get_hitl_detail_content_detail",
        lambda ti_id: SimpleNamespace(
            response_received=False,
            chosen_options=None,
            params_input=None,
            responded_at=None,
            responded_by_user=None,
        ),
    )
    [event] = _fire(EarlierAnswerTrigger(TI_1))
    assert event == {"answer": None, "why": "the stored request has no answer"}

    op = approval(model_name=reference_spec.name)
    retry = {"task_instance": SimpleNamespace(id=TI_1, try_number=2)}
    with pytest.raises(TaskDeferred):
        op.execute(retry)
    with pytest.raises(TaskAwaitingInput) as parked:  # asked: the request is written, the task waits
        op.resume_or_ask(retry, event)
    first = {"task_instance": SimpleNamespace(id=TI_2, try_number=1)}
    with pytest.raises(TaskAwaitingInput):  # no trigger, no triggerer: asked at once
        op.execute(first)
    assert asked == [TI_1, TI_2] and recorded == []
    assert parked.value.method_name == "execute_complete"


@pytest.mark.parametrize(("policy", "auto_approved"), [("manual", False), ("auto", True)])
def test_the_operator_policy_is_the_one_applied(monkeypatch, reference_spec, policy, auto_approved):
    """A low-risk spec allows auto; the task's policy="manual" still asks a human (it is read)."""
    from types import SimpleNamespace

    from airflow.sdk.exceptions import TaskAwaitingInput, TaskDeferred

    from include.modelops.governance import approvals

    real_policy_decision = approvals.policy_decision
    recorded, asked = _stub_approval_evidence(monkeypatch, reference_spec)
    monkeypatch.setattr(approvals, "policy_decision", real_policy_decision)
    assert reference_spec.approval.policy == "auto"
    op = approval(model_name=reference_spec.name, policy=policy)
    context = {"task_instance": SimpleNamespace(id="01a20a85-335d-7de3-a866-e69e240ade53", try_number=1)}
    if auto_approved:
        op.execute(context)
        assert [r["by"] for r in recorded] == ["policy:auto"] and asked == []
    else:
        with pytest.raises((TaskDeferred, TaskAwaitingInput)):
            op.execute(context)
        assert recorded == [] and asked == [context["task_instance"].id]
