"""Why a version is where it is: the evidence, the approvals and the alias history, in one verdict."""

from __future__ import annotations

from include.modelops.governance.audit.events import (
    alias_sets,
    provenance,
    replaced,
    rollout_summary,
    skipped_steps,
    smoke_sentence,
)
from include.modelops.governance.audit.records import Records, dag_run_url, iso, run_url
from include.modelops.platform import tracking
from include.modelops.platform.tags import (
    TAG_BENTO_TAG,
    TAG_DATA_FINGERPRINT,
    TAG_DATA_PATH,
    TAG_DEPLOYABLE,
    TAG_GATE_AT,
    TAG_GATE_STATUS,
    TAG_GATE_SUMMARY,
    TAG_GIT_COMMIT,
    TAG_MODEL_CARD,
    TAG_MODEL_CARD_GENERATED_AT,
    TAG_PROMOTED_AT,
    TAG_RISK_TIER,
    TAG_ROLLED_BACK,
    TAG_ROLLED_BACK_AT,
    TAG_SMOKE_AT,
    TAG_SMOKE_MAX_ABS_DIFF,
    TAG_SPEC_HASH,
    TAG_SPLIT,
    TAG_TRIGGER_REASON,
    TAG_VALIDATION_SUMMARY,
    alias_set_at,
)


def verdict(model: str, version: str, *, dag_runs: dict[str, dict] | None = None) -> dict:
    """Why a version is (or is not) where it is: aliases, gate, approvals, evidence, lineage.

    Raises:
        AuditError: no such model or version.
    """
    return records_verdict(Records(model), str(version), dag_runs or {})


def records_verdict(rec: Records, version: str, dag_runs: dict[str, dict]) -> dict:
    from include.modelops.governance.approvals import APPROVED
    from include.modelops.governance.approvals import records as approval_records

    mv = rec.version(version)
    tags = dict(mv.tags or {})
    run = rec.runs.get(mv.run_id)
    run_tags = run.data.tags if run is not None else {}
    aliases = sorted(a for a, v in rec.aliases.items() if v == version)
    approvals = approval_records(rec.model, version, tags)
    risk = tags.get(TAG_RISK_TIER) or run_tags.get(TAG_RISK_TIER)
    required = 2 if risk == "high" else 1
    approvers = sorted(
        {r.get("by") for r in approvals if r.get("decision") == APPROVED and not r["timed_out"]}
    )
    gate_status = tags.get(TAG_GATE_STATUS) or run_tags.get(TAG_GATE_STATUS)
    missing = []
    if gate_status != "passed":
        missing.append(f"a passed gate (it is {gate_status or 'absent'})")
    if not tags.get(TAG_MODEL_CARD):
        missing.append("a model card")
    if len(approvers) < required:
        missing.append(f"{required} distinct approval(s) (it has {len(approvers)})")
    if tags.get(TAG_DEPLOYABLE) != "true" or not (tags.get(TAG_SMOKE_AT) or tags.get(TAG_SMOKE_MAX_ABS_DIFF)):
        missing.append("a passed smoke-serve")
    dag_id, dag_run_id = tags.get(tracking.TAG_DAG_ID), tags.get(tracking.TAG_DAG_RUN)
    dr = dag_runs.get(dag_run_id or "")
    sets = alias_sets(rec)
    status = _status_sentence(rec, version, aliases, tags, approvals, gate_status, sets)
    if tracking.CHAMPION in aliases and missing:
        status += " WARNING: it serves without complete evidence."
    return {
        "model": rec.model,
        "version": version,
        "status": status,
        "aliases": aliases,
        "all_aliases": dict(rec.aliases),
        "in_production": tracking.CHAMPION in aliases,
        "gate": {
            "status": gate_status,
            "summary": tags.get(TAG_GATE_SUMMARY) or run_tags.get(TAG_GATE_SUMMARY),
            "at": iso(run_tags.get(TAG_GATE_AT)),
        },
        "approvals": approvals,
        "approvals_required": required,
        "approvers": approvers,
        "evidence_complete": not missing,
        "evidence_missing": missing,
        "model_card": tags.get(TAG_MODEL_CARD),
        "model_card_generated_at": iso(tags.get(TAG_MODEL_CARD_GENERATED_AT)),
        "data_fingerprint": tags.get(TAG_DATA_FINGERPRINT) or run_tags.get(TAG_DATA_FINGERPRINT),
        "data_path": run_tags.get(TAG_DATA_PATH),
        "validation": run_tags.get(TAG_VALIDATION_SUMMARY),
        "split": run_tags.get(TAG_SPLIT),
        "git_commit": tags.get(TAG_GIT_COMMIT) or run_tags.get("mlflow.source.git.commit"),
        "spec_hash": tags.get(TAG_SPEC_HASH),
        "risk_tier": risk,
        "dag_id": dag_id,
        "dag_run_id": dag_run_id,
        "dag_run_state": dr.get("state") if dr else None,
        "dag_run_reason": ((dr or {}).get("conf") or {}).get("reason") or run_tags.get(TAG_TRIGGER_REASON),
        "dag_run_url": dag_run_url(dag_id, dag_run_id) if dag_id and dag_run_id else None,
        "mlflow_run_id": mv.run_id,
        "mlflow_run_url": run_url(run.info.experiment_id, mv.run_id) if run is not None else None,
        "version_url": tracking.version_url(rec.model, version),
        "bento_tag": tags.get(TAG_BENTO_TAG),
        "deployable": tags.get(TAG_DEPLOYABLE) == "true",
        "promoted_at": iso(tags.get(TAG_PROMOTED_AT)),
        "registered_by": provenance(tags, run),
        "skipped": skipped_steps(rec, version, tags, provenance(tags, run)),
        "smoke": smoke_sentence(tags, tags.get(TAG_DEPLOYABLE) == "true", provenance(tags, run)),
        "rollout": rollout_summary(rec, version),
    }


def _status_sentence(
    rec: Records,
    version: str,
    aliases: list[str],
    tags: dict[str, str],
    approvals: list[dict],
    gate_status: str | None,
    sets: list[tuple[str, str, str]],
) -> str:
    v = f"v{version}"
    if tracking.CHAMPION in aliases:
        since = iso(tags.get(alias_set_at(tracking.CHAMPION)))
        return f"{v} is in production: alias champion (serving) since {since or 'an unrecorded time'}."
    champion = rec.aliases.get(tracking.CHAMPION)
    now = f" The champion is v{champion}." if champion else " There is no champion."
    taken = [
        (at, v2) for at, a, v2 in sets if a == tracking.CHAMPION and replaced(sets, a, v2, at) == version
    ]
    served = ""
    if tags.get(alias_set_at(tracking.CHAMPION)):
        served = f" It served as champion from {iso(tags[alias_set_at(tracking.CHAMPION)])}" + (
            f" until v{taken[0][1]} replaced it at {taken[0][0]}." if taken else "."
        )
    if tracking.PREVIOUS in aliases:
        return f"{v} is not serving; it is the rollback target (alias previous).{served}{now}"
    if tags.get(TAG_ROLLED_BACK_AT):
        return (
            f"{v} was rolled back during its rollout at {iso(tags[TAG_ROLLED_BACK_AT])} "
            f"({tags.get(TAG_ROLLED_BACK, 'no reason recorded')}) and never became champion.{now}"
        )
    if tracking.CHALLENGER in aliases:
        return f"{v} passed the gate and awaits approval or promotion (alias challenger).{now}"
    if gate_status and gate_status != "passed":
        return f"{v} was rejected at the gate and never served.{now}"
    rejected = [r for r in approvals if r.get("decision") != "approved"]
    if rejected:
        r = rejected[-1]
        who = "nobody answered before the deadline" if r["timed_out"] else f"{r.get('by')} rejected it"
        return f"{v} was not promoted: {who}.{now}"
    return f"{v} is not serving.{served}{now}"
