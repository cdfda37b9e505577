"""A paused rollout stage: the request a person answers, and the record their answer leaves.

A canary step with ``pause: true`` in the spec stops the ``<model>_rollout`` DAG after its
analysis passed: the spec's ``approval.approvers`` are asked, in the Airflow UI's "Required
actions" or through the REST API (``plugins/modelops_operators/rollout_pause.py``, Airflow's
human-in-the-loop approval), whether to continue. This module holds what needs no scheduler:
the request's text, built from the stage's analysis in the rollout record, and the decision,
written to the rollout record, to the version's tags (``modelops.rollout.pause.<nn>``, listed
by ``make audit``) and, for an abort, as the failure that the rollback task reads.

The canary keeps the stage's share while the person decides; no answer within
``approval.timeout_hours`` aborts (fail closed).
"""

from __future__ import annotations

import json
import logging
from datetime import timedelta
from typing import Any

from include.modelops.platform import tracking
from include.modelops.platform.tags import TAG_ROLLOUT_PAUSE
from include.modelops.rollout import stages
from include.modelops.rollout.record import read_record, record_path, write_record
from include.modelops.rollout.stages import RolloutFailed
from include.modelops.spec import load_spec_by_name

log = logging.getLogger(__name__)

CONTINUE, ABORT = "continue", "abort"
TAG_PAUSE = TAG_ROLLOUT_PAUSE


def _stage(model: str, version: str, index: int) -> tuple[dict[str, Any], dict[str, Any]]:
    """The rollout record and its stage ``index``, which must have passed (a pause follows a pass)."""
    record = read_record(model, version)
    entered = record.get("stages") or []
    if index >= len(entered) or entered[index].get("outcome") != "passed":
        raise RolloutFailed(
            f"{model} v{version}: stage {index} has not passed, there is nothing to continue "
            f"(rollout record {record_path(model, version)})"
        )
    return record, entered[index]


def _cell(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() and abs(value) >= 1 else f"{value:.4g}"
    return str(value).replace("|", "\\|")


def earlier_decision(model: str, version: str, index: int) -> dict[str, Any] | None:
    """The decision already taken on this pause in this rollout (a retried task must not ask again)."""
    record = read_record(model, version)
    entered = record.get("stages") or []
    return entered[index].get("pause") if index < len(entered) else None


def request(model: str, version: str, index: int, *, timeout: timedelta) -> dict[str, str]:
    """Subject and Markdown body of the "continue the rollout?" request, from the stage's analysis."""
    spec = load_spec_by_name(model)
    names = stages.stage_names(spec)
    record, stage = _stage(model, version, index)
    analysis = stage.get("analysis") or {}
    stable = record.get("stable_version")
    nxt = (
        f"the next stage, **{names[index + 1]}** ({spec.rollout.steps[index + 1].traffic_percent}% of "
        f"requests to v{version})"
        if index + 1 < len(names)
        else f"**promotion**: v{version} becomes `champion`, v{stable} `previous`"
    )
    lines = [
        f"## {model} v{version}: continue the rollout past {stage['name']}?",
        "",
        f"The canary v{version} answers **{stage['traffic_percent']}%** of requests, stable v{stable} the rest. "
        f"The stage's analysis passed with {analysis.get('canary_requests', '?')} canary and "
        f"{analysis.get('stable_requests', '?')} stable requests ({stage.get('started_at')} to "
        f"{stage.get('ended_at')}).",
        "",
        "| check | canary | stable | threshold | result | reason |",
        "|---|---:|---:|---|---|---|",
    ]
    for c in analysis.get("checks") or []:
        lines.append(
            f"| {c['name']} | {_cell(c.get('canary'))} | {_cell(c.get('stable'))} | "
            f"{_cell(c.get('threshold'))} | {str(c.get('outcome', '')).upper()} | {_cell(c.get('reason'))} |"
        )
    lines += [
        "",
        f"**Verdict:** {str(analysis.get('verdict', '?')).upper()} ({analysis.get('reason', '')})",
        "",
        f"- **Approve**: {nxt}.",
        f"- **Reject**: roll back now: 100% of requests to stable v{stable}, the canary stopped, v{version} "
        "tagged `rolled_back` with your comment, `champion` unchanged.",
        f"- No answer within {timeout} rejects (fail closed). Until then the canary keeps its "
        f"{stage['traffic_percent']}%.",
    ]
    run_id = tracking.version_info(model, version).get("run_id")
    if run_id:
        lines.append(
            f"- The analysis is also in the version's MLflow run `{run_id}` (`rollout/{stage['name']}.json`)."
        )
    return {
        "subject": f"Continue the rollout of {model} v{version} past {stage['name']} "
        f"({stage['traffic_percent']}% of traffic)?",
        "body": "\n".join(lines),
    }


def decide(
    model: str,
    version: str,
    index: int,
    *,
    approved: bool,
    by: str,
    comment: str = "",
    timed_out: bool = False,
    timeout: timedelta | None = None,
) -> dict[str, Any]:
    """Record the answer to the pause of stage ``index``.

    Returns:
        The decision (``continue``) when approved.

    Raises:
        RolloutFailed: Rejected or unanswered: the rollout is aborted with the reason
            ``aborted by <user>: <comment>``, which the rollback task records.
    """
    record, stage = _stage(model, version, index)
    decision = CONTINUE if approved and not timed_out else ABORT
    if timed_out:
        reason = f"aborted: no answer within {timeout} at the pause after {stage['name']} (fail closed)"
    elif decision == ABORT:
        reason = f"aborted by {by}: {comment or 'no comment'}"
    else:
        reason = f"continued by {by}" + (f": {comment}" if comment else "")
    entry = {
        "decision": decision,
        "by": by,
        "comment": comment,
        "timed_out": timed_out,
        "at": tracking.now_iso(),
        "reason": reason,
    }
    stage["pause"] = entry
    if decision == ABORT:
        record["failure"] = {"stage": stage["name"], "reason": reason}
    write_record(model, version, record)
    tracking.set_version_tags(
        model,
        version,
        {
            f"{TAG_PAUSE}{index:02d}": json.dumps(
                {
                    "at": entry["at"],
                    "stage": stage["name"],
                    "traffic_percent": stage["traffic_percent"],
                    "decision": decision,
                    "by": by,
                    "comment": comment[:1000],
                    "timed_out": timed_out,
                }
            )
        },
    )
    log.info("%s v%s, pause after %s: %s", model, version, stage["name"], reason)
    if decision == ABORT:
        raise RolloutFailed(reason)
    return entry
