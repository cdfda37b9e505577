"""A version's deployment history: what happened to it in production, kept in the registry and its card.

Each deployment event (a rollout promoted or rolled back the version, the ``<model>_rollback``
DAG took a promotion back or restored a version) is one version tag
``modelops.deployment.<NNN>`` holding compact JSON: when, the event, the stages it went through
(name, traffic share, verdict) and the reason. Tags are the system of record (MLflow keeps them
with the version, ``make audit`` reads them); the model card's "Deployment history" section is
regenerated from them by :func:`refresh_model_card` and logged to the version's run again, as
the training DAG logs the card.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from include.modelops.platform import tracking
from include.modelops.platform.tags import (
    TAG_ALIAS,
    TAG_DAG_ID,
    TAG_DAG_RUN_ID,
    TAG_DATA_FINGERPRINT,
    TAG_DEPLOYMENT,
    TAG_GIT_COMMIT,
)

log = logging.getLogger(__name__)

TAG_PREFIX = TAG_DEPLOYMENT
PROMOTED, ROLLED_BACK, TAKEN_BACK, RESTORED = (
    "promoted",
    "rolled back (automatic)",
    "rolled back (rollback DAG)",
    "restored to champion (rollback DAG)",
)
_REASON_CHARS = 1500  # a version tag value holds at most 5,000 characters


def stages_of(record: dict[str, Any]) -> list[dict[str, Any]]:
    """The stages of a rollout record, in the order they ran: shadow first, then the canary steps."""
    ran = ([record["shadow"]] if record.get("shadow") else []) + list(record.get("stages") or [])
    return [
        {"name": s.get("name"), "traffic_percent": s.get("traffic_percent"), "outcome": s.get("outcome")}
        for s in ran
    ]


def record_event(
    model: str,
    version: str,
    event: str,
    *,
    stages: list[dict[str, Any]],
    reason: str,
    dag_run_id: str | None = None,
) -> dict[str, Any]:
    """Add an event to the version's history; a retried task (same event, same DAG run) replaces its own."""
    tags = tracking.version_info(model, version)["tags"]
    entry = {
        "at": tracking.now_iso(),
        "event": event,
        "stages": [[s["name"], s["traffic_percent"], s["outcome"]] for s in stages],
        "reason": reason[:_REASON_CHARS],
        "dag_run_id": dag_run_id,
    }
    existing = sorted(k for k in tags if k.startswith(TAG_PREFIX) and k[len(TAG_PREFIX) :].isdigit())
    key = next(
        (
            k
            for k in existing
            if dag_run_id
            and _load(tags[k]).get("dag_run_id") == dag_run_id
            and _load(tags[k]).get("event") == event
        ),
        None,
    )
    key = key or f"{TAG_PREFIX}{len(existing):03d}"
    tracking.set_version_tags(model, version, {key: json.dumps(entry, separators=(",", ":"))})
    return entry


def _load(value: str) -> dict[str, Any]:
    try:
        loaded = json.loads(value)
    except ValueError:
        return {}
    return loaded if isinstance(loaded, dict) else {}


def deployment_history(tags: dict[str, str]) -> list[dict[str, Any]]:
    """The version's deployment events from its tags, oldest first, in the model card's shape.

    A version the training DAG promoted directly (its spec has no ``rollout:`` section) has no
    events; its ``champion`` alias is its history.
    """
    events = []
    for key in sorted(k for k in tags if k.startswith(TAG_PREFIX) and k[len(TAG_PREFIX) :].isdigit()):
        raw = _load(tags[key])
        if not raw:
            continue
        events.append(
            {
                "at": raw.get("at"),
                "event": raw.get("event"),
                "reason": raw.get("reason") or "",
                "stages": [
                    {"name": n, "traffic_percent": p, "outcome": o} for n, p, o in raw.get("stages") or []
                ],
            }
        )
    if not events:
        events = [
            {
                "at": v,
                "event": f"alias {k.split('.')[2]} set",
                "stages": [],
                "reason": "promoted by the training DAG (no rollout section)"
                if k.split(".")[2] == "champion"
                else "",
            }
            for k, v in tags.items()
            if k.startswith(TAG_ALIAS) and k.endswith(".set_at")
        ]
    return sorted(events, key=lambda e: e["at"] or "")


def refresh_model_card(model: str, version: str) -> str | None:
    """Regenerate the version's model card with its deployment history and log it to the version's run.

    The card the training DAG logged (``model_card/model_card.json`` in the run) keeps its evidence
    and gets the new history; a version registered without one (e.g. by hand) gets a card built
    from what the registry knows, which names the evidence it lacks. Returns the card's
    ``runs:/`` URI (the version tag ``modelops.model_card``), or None when it could not be made:
    the rollout's decision stands either way, so a card failure is logged, never raised.
    """
    from include.modelops.governance import model_card
    from include.modelops.governance.approvals import records
    from include.modelops.spec import load_spec_by_name

    try:
        spec = load_spec_by_name(model)
        info = tracking.version_info(model, version)
        tags, run_id = info["tags"], info["run_id"]
        history = deployment_history(tags)
        card = None
        if run_id:
            try:
                card = tracking.load_json_artifact(run_id, "model_card/model_card.json")
            except Exception:  # no card logged for this version yet
                card = None
        if card:
            card = model_card.with_deployment_history(card, history)
        else:
            card = model_card.build_card(
                spec,
                model_name=model,
                version=version,
                run=tracking.run_info(run_id) if run_id else {},
                validation=None,
                evaluation=None,
                decision=None,
                approvals=records(model, version, tags),
                lineage={
                    "git_commit": tags.get(TAG_GIT_COMMIT),
                    "dag_id": tags.get(TAG_DAG_ID),
                    "dag_run_id": tags.get(TAG_DAG_RUN_ID),
                    "mlflow_run_id": run_id,
                    "data_fingerprint": tags.get(TAG_DATA_FINGERPRINT),
                },
                deployments=history,
                links={"mlflow_model_version": tracking.version_url(model, version)},
            )
        # One writer: the local copy (the one `make demo` prints) and the MLflow artifact stay the same.
        paths = model_card.publish_card(card, model=model, version=version, run_id=run_id)
        if not run_id:
            log.warning(
                "%s v%s has no MLflow run to log its model card to; it is at %s",
                model,
                version,
                paths["html"],
            )
            return None
        uri = f"runs:/{run_id}/model_card/model_card.html"
        log.info(
            "Model card of %s v%s regenerated with its deployment history (%d events): %s",
            model,
            version,
            len(history),
            uri,
        )
        return uri
    except Exception:
        log.exception(
            "Could not regenerate the model card of %s v%s; the deployment history is in its "
            "modelops.deployment.* tags",
            model,
            version,
        )
        return None
