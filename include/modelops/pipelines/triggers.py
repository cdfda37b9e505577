"""Asset events are acted on once: how a DAG run started by an event tells a stale event from a live one.

An Asset event queues a run of every DAG scheduled on it, whoever emitted it: a scheduler's task,
a REST call, or ``airflow dags test`` (``make demo``, ``make run``, ``make demo-drift``), which
runs the rollout or the retrain itself right away. The scheduler (``make up``) then starts the
queued run later, perhaps days later, on an event that was already served. The first task of
such a run asks this module whether its event still asks for work, and skips the run (the run
ends successful with every task skipped, the reason in the first task's log) when it does not:

* ``<model>.deployable_bento`` (rollout): the event's version is no longer the ``challenger``,
  is not newer than the ``champion``, or its rollout already ended (promoted or rolled back);
* ``<model>.retrain_requested`` (training): a model version was already trained for that request
  (its ``modelops.drift_report`` or ``modelops.trigger_reason`` tag is the request's).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from typing import Any

from include.modelops.platform.tags import TAG_DAG_RUN_ID, TAG_DRIFT_REPORT, TAG_TRIGGER_REASON
from include.modelops.rollout.record import older_than_champion, read_record

log = logging.getLogger(__name__)


def latest_event_extra(
    triggering_asset_events: Mapping[Any, Iterable[Any]] | None, key: str, *, asset_name: str | None = None
) -> dict[str, Any] | None:
    """The extra of the newest triggering event (of ``asset_name``, if given) that carries ``key``; None if none.

    The scheduler hands a run every event since the DAG's previous asset-triggered run: the newest
    one is what is asked for now; older ones were superseded (or served) already.
    """
    latest = None
    for asset, events in (triggering_asset_events or {}).items():
        if asset_name is not None and getattr(asset, "name", asset_name) != asset_name:
            continue
        for event in events:
            extra = getattr(event, "extra", None) or {}
            if extra.get(key) is None:
                continue
            if latest is None or event.timestamp >= latest.timestamp:
                latest = event
    return dict(latest.extra) if latest is not None else None


def stale_rollout_event(model: str, version: str) -> str | None:
    """Why a ``deployable_bento`` event for ``version`` asks for no rollout now, or None when it does."""
    from include.modelops.platform import tracking

    record = read_record(model, version)
    if record.get("status") in ("promoted", "rolled_back"):
        return (
            f"the rollout of v{version} already ended ({record['status']}, run {record.get('dag_run_id')}); "
            "its deployable_bento event was served"
        )
    champion = tracking.alias_version(model, tracking.CHAMPION)
    if older_than_champion(version, champion):
        return f"v{version} is not newer than the champion v{champion}"
    challenger = tracking.alias_version(model, tracking.CHALLENGER)
    if challenger != version:
        return (
            f"v{version} is no longer the challenger (challenger: "
            f"{'v' + challenger if challenger else 'none'})"
        )
    return None


def served_retrain_request(model: str, request: Mapping[str, Any]) -> str | None:
    """Why a ``retrain_requested`` event was already served (the version trained for it), or None."""
    from include.modelops.platform import tracking

    report, reason = request.get("drift_report"), request.get("reason")
    if not report and not reason:
        return None
    versions = tracking.client().search_model_versions(f"name = '{model}'")
    for mv in sorted(versions, key=lambda v: int(v.version)):
        tags = mv.tags or {}
        if (report and tags.get(TAG_DRIFT_REPORT) == str(report)[:5000]) or (
            not report and reason and tags.get(TAG_TRIGGER_REASON) == str(reason)[:5000]
        ):
            return (
                f"the retrain request for window {request.get('window') or '?'} was already served: v{mv.version} "
                f"was trained for it (run {tags.get(TAG_DAG_RUN_ID) or '?'})"
            )
    return None
