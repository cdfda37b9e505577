"""Custom operators of the ModelOps project (``plugins/`` is on Airflow's import path)."""

from modelops_operators.approval import ModelApprovalOperator
from modelops_operators.model_card import ModelCardOperator

__all__ = ["ModelApprovalOperator", "ModelCardOperator"]
