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
