"""An answer stands: a retried human-in-the-loop task resumes with the answer an earlier try got.

Airflow 3.3.2's scheduler can lose an answer. When it arrives before the scheduler has processed
the executor's report that the try went to ``awaiting_input`` (an answer given within a second
of the request, as a system answering over the REST API can), the resumed try is failed ("finished
with state success, but the task instance's state attribute is queued") and retried under the
same task-instance id. The retry's new request would erase the answer and wait for one nobody will
give again.

So a retry (try 2 or later) first reads its request's stored answer. A task worker cannot read
it in 3.3.2 (its supervisor answers ``Unhandled request``), but the triggerer can, as
``HITLTrigger`` does: the retry defers to :class:`EarlierAnswerTrigger`, which reads the request
once and returns at once. A first try asks straight away and needs no triggerer. A task cleared by
hand gets a new task-instance id and no stored request, so it asks again.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from airflow.triggers.base import BaseTrigger, TriggerEvent


class EarlierAnswerTrigger(BaseTrigger):
    """Fires once with ``{"answer": <the HITL resume event>}``, or ``{"answer": None, "why": ...}``
    when the task instance's request has no answer (or there is no request)."""

    def __init__(self, ti_id: str) -> None:
        super().__init__()
        self.ti_id = str(ti_id)

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return f"{__name__}.EarlierAnswerTrigger", {"ti_id": self.ti_id}

    async def run(self) -> AsyncIterator[TriggerEvent]:
        from uuid import UUID

        from airflow.sdk.execution_time.hitl import get_hitl_detail_content_detail
        from asgiref.sync import sync_to_async

        try:
            detail = await sync_to_async(get_hitl_detail_content_detail)(ti_id=UUID(self.ti_id))
        except Exception as exc:  # noqa: BLE001 - no request was stored for this id (the API answers 404)
            yield TriggerEvent({"answer": None, "why": f"no stored request ({exc})"})
            return
        if not (detail.response_received and detail.chosen_options):
            yield TriggerEvent({"answer": None, "why": "the stored request has no answer"})
            return
        user = detail.responded_by_user
        yield TriggerEvent(
            {
                "answer": {
                    "chosen_options": list(detail.chosen_options),
                    "params_input": detail.params_input or {},
                    "responded_at": detail.responded_at,
                    "timedout": user is None,
                    "responded_by_user": {"id": user.id, "name": user.name} if user else None,
                }
            }
        )


class AnswerStands:
    """For ``HITLOperator`` subclasses: call :meth:`ask_unless_answered` where ``execute`` would ask.

    The subclass's ``ask(context)`` makes the request (sets subject and body, then calls the HITL
    operator's ``execute``); its ``execute_complete`` takes the answer either way.
    """

    def ask_unless_answered(self, context: Any) -> Any:
        if context["task_instance"].try_number > 1:
            self.defer(trigger=EarlierAnswerTrigger(context["task_instance"].id), method_name="resume_or_ask")
        return self.ask(context)

    def resume_or_ask(self, context: Any, event: dict[str, Any]) -> Any:
        answer = event.get("answer")
        if answer is None:
            self.log.info("Retry: %s; asking", event.get("why"))
            return self.ask(context)
        self.log.info(
            "Retry: an earlier try was answered (%s by %s); resuming with that answer, not asking again",
            answer["chosen_options"],
            answer["responded_by_user"] or "the timeout",
        )
        return self.execute_complete(context, answer)

    def ask(self, context: Any) -> Any:
        raise NotImplementedError
