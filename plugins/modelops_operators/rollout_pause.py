"""RolloutPauseOperator: a person continues or aborts a rollout after a paused stage passed.

Built on Airflow's human-in-the-loop ``ApprovalOperator``, as the promotion approval is: the
spec's ``approval.approvers`` see, in the UI's "Required actions" (or answer through the REST
API's ``hitlDetails``), the stage's analysis table and Approve (the next stage) or Reject (the
rollback runs, recording "aborted by <user>: <comment>"). No answer within the response timeout
aborts: fail closed. The work is in :mod:`include.modelops.rollout.pause`.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from airflow.providers.standard.operators.hitl import ApprovalOperator

from modelops_operators.approval import answer_of, comment_form
from modelops_operators.earlier_answer import AnswerStands


class RolloutPauseOperator(AnswerStands, ApprovalOperator):
    """Wait for a person to continue (Approve) or abort (Reject) a rollout after stage ``stage_index``.

    A reject or a timeout fails the task with ``RolloutFailed`` (not a skip), so the DAG's
    ``rollback`` task (trigger rule ``one_failed``) takes the candidate out. A first deployment
    (nothing was compared) is not paused. An answer stands: a retried or cleared task resumes
    with it (from the rollout record, or the request's stored answer) instead of asking again.

    :param model_name: the model (spec name).
    :param prepared: ``prepare_rollout``'s result (the version, the stable version).
    :param stage_index: index of the paused step in the spec's ``rollout.steps``.
    :param approvers: Airflow user ids allowed to answer (empty: anyone with access to the DAG).
    :param response_timeout: how long they have; then the rollout is aborted.
    """

    template_fields: Sequence[str] = ("subject", "body", "model_name", "prepared")

    def __init__(
        self,
        *,
        model_name: str,
        prepared: Any,
        stage_index: int,
        approvers: list[str],
        response_timeout: timedelta,
        **kwargs: Any,
    ) -> None:
        super().__init__(
            subject=f"Continue the rollout of {model_name} past stage {stage_index + 1}?",
            body=None,
            defaults=ApprovalOperator.REJECT,  # what a timeout answers: fail closed
            assigned_users=[{"id": a, "name": a} for a in approvers] or None,
            response_timeout=response_timeout,
            params=comment_form(kwargs.pop("params", None)),
            **kwargs,
        )
        self.model_name = model_name
        self.prepared = prepared
        self.stage_index = stage_index
        self.approvers = approvers

    def execute(self, context: Any) -> Any:
        from include.modelops.rollout import pause
        from include.modelops.rollout.stages import RolloutFailed

        version = self.prepared["version"]
        if self.prepared.get("first_deployment"):
            self.log.info(
                "%s v%s is the first deployment (nothing was compared): not pausing", self.model_name, version
            )
            return None
        earlier = pause.earlier_decision(self.model_name, version, self.stage_index)
        if earlier:  # a retry of this task: the person already answered, never ask twice
            self.log.info("Already decided: %s", earlier["reason"])
            if earlier["decision"] != pause.CONTINUE:
                raise RolloutFailed(earlier["reason"])
            return earlier
        return self.ask_unless_answered(context)

    def ask(self, context: Any) -> Any:
        from include.modelops.rollout import pause

        version = self.prepared["version"]
        asked = pause.request(self.model_name, version, self.stage_index, timeout=self.response_timeout)
        self.subject, self.body = asked["subject"], asked["body"]
        self.log.info(
            "Asking %s whether to continue: %s (timeout %s)\n%s",
            self.approvers or "any DAG user",
            self.subject,
            self.response_timeout,
            self.body,
        )
        return super().execute(context)

    def execute_complete(self, context: Any, event: dict[str, Any]) -> Any:
        from include.modelops.rollout import pause

        approved, by, comment, timed_out = answer_of(event)
        # Raises RolloutFailed on a reject or a timeout: the task fails and the rollback runs.
        pause.decide(
            self.model_name,
            self.prepared["version"],
            self.stage_index,
            approved=approved,
            by=by,
            comment=comment,
            timed_out=timed_out,
            timeout=self.response_timeout,
        )
        return super().execute_complete(context, event)
