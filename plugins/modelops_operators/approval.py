"""ModelApprovalOperator: promotion approval on Airflow's human-in-the-loop ``ApprovalOperator``.

The reviewer sees, in the Airflow UI's "Required actions", a request rendered from the
evidence (gate table, deltas with confidence intervals, slices, links to the model card and
MLflow) and answers Approve or Reject with an optional comment. Reject, or no answer before
the spec's ``approval.timeout_hours``, skips the rest of the run (fail closed). Every answer
is recorded on the model version's tags and so in the model card and ``make audit``.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from airflow.providers.standard.operators.hitl import ApprovalOperator
from airflow.sdk import Param
from airflow.sdk.definitions.param import ParamsDict

from modelops_operators.earlier_answer import AnswerStands


def comment_form(inherited: Any) -> ParamsDict:
    """The answer form: one optional comment, kept in the audit trail.

    Airflow passes the DAG's params in (source "dag"); HITL keeps only task-level ones for the
    form, so the Param objects must be kept as they are, not turned into values.
    """
    inherited = inherited if isinstance(inherited, ParamsDict) else ParamsDict(inherited or {})
    return ParamsDict(
        {
            **{key: inherited.get_param(key) for key in inherited},
            "comment": Param(
                "",
                type="string",
                title="Comment",
                source="task",
                description="Why you approve or reject (kept in the audit trail).",
            ),
        }
    )


def answer_of(event: dict[str, Any]) -> tuple[bool, str, str, bool]:
    """(approved, by, comment, timed_out) of a HITL answer; no responder means the timeout answered."""
    chosen = (event.get("chosen_options") or [ApprovalOperator.REJECT])[0]
    user = event.get("responded_by_user") or {}
    timed_out = bool(event.get("timedout")) or not user
    by = "timeout" if timed_out else str(user.get("id") or user.get("name"))
    comment = (event.get("params_input") or {}).get("comment") or ""
    return chosen == ApprovalOperator.APPROVE and not timed_out, by, comment, timed_out


class ModelApprovalOperator(AnswerStands, ApprovalOperator):
    """Ask for (or, under policy ``auto``, grant) approval to promote a registered model version.

    :param model_name: the model (spec name).
    :param registered: ``register_candidate``'s result (version, MLflow link).
    :param evaluated: ``evaluate_candidate``'s result (gate decision and report paths).
    :param card: the model card task's result (paths, missing evidence).
    :param policy: ``auto`` (low risk and every check passed: no human) or ``manual`` (always ask).
        It can only be stricter than the spec: ``auto`` is automatic only when the spec's
        ``approval.policy`` is ``auto`` too.
    :param approvers: Airflow user ids allowed to answer (empty: anyone with access to the DAG).
    :param response_timeout: how long reviewers have; then the request is rejected.
    :param approval_index: 1 for the first approval, 2 for the second one high-risk models need.
    """

    # The constructor's XCom-carried inputs. subject and body are not templated: ask() writes them
    # from the spec and the evidence when the request is made.
    template_fields: Sequence[str] = ("model_name", "registered", "evaluated", "card")

    def __init__(
        self,
        *,
        model_name: str,
        registered: Any,
        evaluated: Any,
        card: Any,
        policy: str,
        approvers: list[str],
        response_timeout: timedelta,
        approval_index: int = 1,
        **kwargs: Any,
    ) -> None:
        if policy not in ("auto", "manual"):
            raise ValueError(f"policy must be 'auto' or 'manual', got {policy!r}")
        params = comment_form(kwargs.pop("params", None))
        super().__init__(
            subject=f"Promote {model_name}? (approval {approval_index})",
            body=None,
            defaults=ApprovalOperator.REJECT,  # what a timeout answers: fail closed
            assigned_users=[{"id": a, "name": a} for a in approvers] or None,
            response_timeout=response_timeout,
            params=params,
            **kwargs,
        )
        self.model_name = model_name
        self.registered = registered
        self.evaluated = evaluated
        self.card = card
        self.policy = policy
        self.approvers = approvers
        self.approval_index = approval_index

    def execute(self, context: Any) -> Any:
        from include.modelops.governance import approvals
        from include.modelops.spec import load_spec_by_name

        spec = load_spec_by_name(self.model_name)
        version = self.registered["version"]
        approvals.check_ready(spec, version, self.evaluated, self.card)
        auto = approvals.policy_decision(spec, self.evaluated, self.policy)
        if auto is not None:
            return approvals.record(self.model_name, version, index=self.approval_index, **auto)
        return self.ask_unless_answered(context)

    def ask(self, context: Any) -> Any:
        from include.modelops.governance import approvals
        from include.modelops.spec import load_spec_by_name

        spec = load_spec_by_name(self.model_name)
        version = self.registered["version"]
        self.subject = (
            f"Promote {spec.name} v{version} to champion? (approval {self.approval_index} of "
            f"{approvals.required_approvals(spec)})"
        )
        self.body = approvals.request_markdown(
            spec, self.registered, self.evaluated, self.card, index=self.approval_index
        )
        self.log.info(
            "Asking %s to approve %s v%s (timeout %s)",
            self.approvers or "any DAG user",
            spec.name,
            version,
            self.response_timeout,
        )
        return super().execute(context)

    def execute_complete(self, context: Any, event: dict[str, Any]) -> Any:
        from include.modelops.governance import approvals

        version = self.registered["version"]
        approved, by, comment, timed_out = answer_of(event)
        if timed_out:
            comment = f"no answer within {self.response_timeout} (fail closed)"
        decision = approvals.APPROVED if approved else approvals.REJECTED
        if decision == approvals.APPROVED:
            approvals.check_distinct(self.model_name, version, self.approval_index, by)
        approvals.record(
            self.model_name,
            version,
            index=self.approval_index,
            decision=decision,
            by=by,
            comment=comment,
            timed_out=timed_out,
        )
        if decision == approvals.REJECTED:
            self.log.info("Rejected by %s: %s. The champion is unchanged; skipping the rest.", by, comment)
        return super().execute_complete(context, event)
