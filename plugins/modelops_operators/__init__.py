"""Custom operators of the ModelOps project (``plugins/`` is on Airflow's import path)."""

from modelops_operators.approval import ModelApprovalOperator
from modelops_operators.model_card import ModelCardOperator
from modelops_operators.rollout_pause import RolloutPauseOperator

__all__ = ["ModelApprovalOperator", "ModelCardOperator", "RolloutPauseOperator"]
