"""The lifecycle as events, in time order: one dict per thing that happened to a model or a version."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from include.modelops.governance.audit.records import (
    DISPLACING_ALIASES,
    RANK,
    Records,
    dag_run_url,
    iso,
    run_url,
)
from include.modelops.platform import tracking
from include.modelops.platform.tags import (
    KIND_MONITORING,
    MONITORING,
    TAG_BENTO_TAG,
    TAG_DATA_FINGERPRINT,
    TAG_DATA_PATH,
    TAG_DEPLOYABLE,
    TAG_DEPLOYMENT,
    TAG_FAULT,
    TAG_FAULT_WRAPS,
    TAG_GATE_AT,
    TAG_GATE_STATUS,
    TAG_GATE_SUMMARY,
    TAG_GIT_COMMIT,
    TAG_KIND,
    TAG_MODEL_CARD,
    TAG_MODEL_CARD_GENERATED_AT,
    TAG_MODEL_URI,
    TAG_PROMOTED_AT,
    TAG_REGISTERED_BY,
    TAG_RISK_TIER,
    TAG_ROLLED_BACK,
    TAG_ROLLED_BACK_AT,
    TAG_ROLLOUT_PAUSE,
    TAG_ROLLOUT_STAGE,
    TAG_ROLLOUT_STATUS,
    TAG_ROLLOUT_SUMMARY,
    TAG_SMOKE_AT,
    TAG_SMOKE_MAX_ABS_DIFF,
    TAG_SPEC_HASH,
    TAG_VALIDATION_AT,
    TAG_VALIDATION_FAILED,
    TAG_VALIDATION_STATUS,
    TAG_VALIDATION_SUMMARY,
    alias_set_at,
)


def _event(
    at: str | None,
    kind: str,
    summary: str,
    *,
    version: str | None = None,
    link: str | None = None,
    rank: str | None = None,
    **details: Any,
) -> dict:
    return {
        "at": at,
        "kind": kind,
        "version": version,
        "summary": summary,
        "link": link,
        "details": {k: v for k, v in details.items() if v is not None},
        "_rank": RANK[rank or kind],
    }


def _monitoring_events(run: Any) -> list[dict]:
    """The drift report and the retraining decision of one monitoring run (one window)."""
    from include.modelops.platform.tags import MONITORING as P

    tags, info = run.data.tags, run.info
    link = run_url(info.experiment_id, info.run_id)
    version = tags.get(f"{P}model_version") or None
    common = {
        "run_id": info.run_id,
        "dag_id": tags.get(tracking.TAG_DAG_ID),
        "dag_run_id": tags.get(tracking.TAG_DAG_RUN),
        "window": tags.get(f"{P}window"),
    }
    m = run.data.metrics
    status = tags.get(f"{P}status")
    summary = f"Drift check of window {tags.get(f'{P}window')}: "
    if status == "checked":
        summary += (
            f"{int(m.get('rows', 0)):,} rows, {m.get('drift_share', 0):.0%} of features drifted"
            + (f" ({tags[f'{P}top_drifted']})" if tags.get(f"{P}top_drifted") else "")
            + (
                f", live {tags.get(f'{P}metric', 'metric')} drop {m['metric_drop']:.4f}"
                if "metric_drop" in m
                else ""
            )
            + (f", {int(m['quality_failures'])} data-quality failure(s)" if m.get("quality_failures") else "")
        )
    else:
        summary += {"no_traffic": "no traffic"}.get(
            status or "",
            str(status or "no status recorded")
            + (f": {tags[f'{P}rows']} rows" if tags.get(f"{P}rows") else ""),
        )
    if tags.get(f"{P}skipped_files", "0") not in ("", "0"):
        summary += f"; {tags[f'{P}skipped_files']} unreadable log file(s) skipped"
    at = iso(info.end_time) or iso(info.start_time)
    events = [
        _event(
            at,
            "drift",
            summary,
            version=version,
            link=link,
            status=status,
            report=tags.get(f"{P}report") or tags.get(f"{P}summary"),
            **common,
        )
    ]
    if tags.get(f"{P}outcome"):
        events.append(
            _event(
                iso(tags.get(f"{P}decided_at")) or at,
                "retrain",
                f"Retraining decision ({tags[f'{P}outcome']}): {tags.get(f'{P}reason', '')}",
                version=version,
                link=link,
                outcome=tags[f"{P}outcome"],
                guard=tags.get(f"{P}guard") or None,
                triggers=tags.get(f"{P}triggers") or None,
                **common,
            )
        )
    return events


def _run_events(rec: Records, run: Any) -> list[dict]:
    """Validation, training and gate events of one MLflow run (one DAG run)."""
    tags, info = run.data.tags, run.info
    if tags.get(TAG_KIND) == KIND_MONITORING:
        return _monitoring_events(run)
    run_id = info.run_id
    version = rec.version_of_run(run_id)
    link = run_url(info.experiment_id, run_id)
    started, ended = iso(info.start_time), iso(info.end_time)
    common = {
        "run_id": run_id,
        "dag_id": tags.get(tracking.TAG_DAG_ID),
        "dag_run_id": tags.get(tracking.TAG_DAG_RUN),
        "run_status": info.status,
    }
    events = []
    v_status = tags.get(TAG_VALIDATION_STATUS)
    if v_status:
        fp = tags.get(TAG_DATA_FINGERPRINT)
        summary = f"Data validation {v_status}: {tags.get(TAG_VALIDATION_SUMMARY, '')}"
        summary += f" on {tags[TAG_DATA_PATH]}" if tags.get(TAG_DATA_PATH) else ""
        summary += f"; data fingerprint {fp[:12]}" if fp else ""
        if v_status != "passed":
            if tags.get(TAG_VALIDATION_FAILED):
                summary += f"; failed: {tags[TAG_VALIDATION_FAILED][:300]}"
            summary += f"; the run stopped here (MLflow run {info.status}), nothing was registered"
        events.append(
            _event(
                iso(tags.get(TAG_VALIDATION_AT)) or started,
                "validation",
                summary,
                version=version,
                link=link,
                status=v_status,
                validation_summary=tags.get(TAG_VALIDATION_SUMMARY),
                data_path=tags.get(TAG_DATA_PATH),
                data_fingerprint=fp,
                report=f"runs:/{run_id}/validation/validation_report.html",
                **common,
            )
        )
    model_uri = tags.get(TAG_MODEL_URI)
    params, metrics = run.data.params, run.data.metrics
    if model_uri:
        model_id = model_uri.removeprefix("models:/")
        at = rec.logged_model_at.get(model_id) or iso(tags.get(TAG_VALIDATION_AT)) or started
        how = (
            " ".join(
                _known(
                    ("", params.get("framework")), ("", params.get("backend") and f"({params['backend']})")
                )
            )
            or "a model (framework not recorded)"
        )
        rows = (
            f" on {int(params['train_rows']):,} rows" if str(params.get("train_rows", "")).isdigit() else ""
        )
        secs = f" in {metrics['train_seconds']:.1f} s" if "train_seconds" in metrics else ""
        holdout = {k.removeprefix("holdout_"): v for k, v in metrics.items() if k.startswith("holdout_")}
        events.append(
            _event(
                at,
                "training",
                f"Trained {how}{rows}{secs}: {model_uri}",
                version=version,
                link=link,
                model_uri=model_uri,
                params=dict(params),
                holdout_metrics=holdout or None,
                git_commit=tags.get("mlflow.source.git.commit"),
                **common,
            )
        )
    elif info.status in ("FAILED", "KILLED") and v_status == "passed":
        events.append(
            _event(
                ended or started,
                "training",
                f"The run ended {info.status} before a model was logged (see the DAG run's task logs)",
                version=version,
                link=link,
                **common,
            )
        )
    g_status = tags.get(TAG_GATE_STATUS)
    if g_status:
        events.append(
            _event(
                iso(tags.get(TAG_GATE_AT)) or ended,
                "gate",
                f"Gate {g_status}: {tags.get(TAG_GATE_SUMMARY, '')}",
                version=version,
                link=link,
                status=g_status,
                gate_summary=tags.get(TAG_GATE_SUMMARY),
                report=f"runs:/{run_id}/evaluation/evaluation_report.html",
                **common,
            )
        )
    return events


def alias_sets(rec: Records) -> list[tuple[str, str, str]]:
    """(at, alias, version) for every ``modelops.alias.<alias>.set_at`` tag, oldest first."""
    out = []
    for v, mv in rec.versions.items():
        for key, value in (mv.tags or {}).items():
            parts = key.split(".")
            if len(parts) == 4 and parts[:2] == ["modelops", "alias"] and parts[3] == "set_at" and iso(value):
                out.append((iso(value), parts[2], v))
    return sorted(out, key=lambda t: (t[0], int(t[2])))


def replaced(sets: list[tuple[str, str, str]], alias: str, version: str, at: str) -> str | None:
    """The version that held a champion/previous alias just before ``version`` took it (from the tags)."""
    if alias not in DISPLACING_ALIASES:
        return None
    before = [s for s in sets if s[1] == alias and s[2] != version and s[0] <= at]
    return before[-1][2] if before else None


def _version_events(rec: Records, version: str, sets: list[tuple[str, str, str]]) -> list[dict]:
    """Registration, model card, approvals, alias moves, packaging and promotion of one version."""
    from include.modelops.governance.approvals import records as approval_records

    model = rec.model
    mv = rec.versions[version]
    tags = dict(mv.tags or {})
    link = tracking.version_url(model, version)
    common = {
        "dag_id": tags.get(tracking.TAG_DAG_ID),
        "dag_run_id": tags.get(tracking.TAG_DAG_RUN),
        "run_id": mv.run_id,
    }
    created = iso(mv.creation_timestamp)
    commit = tags.get(TAG_GIT_COMMIT)
    run = rec.runs.get(mv.run_id)
    run_tags = run.data.tags if run is not None else {}
    commit = commit or run_tags.get("mlflow.source.git.commit")
    origin = provenance(tags, run)
    if _fault(tags, run):
        registered = (
            f"by {origin}, not by the training DAG: it has no risk tier, spec hash, data fingerprint or "
            f"commit of its own"
        )
    else:
        registered = (
            "("
            + ", ".join(
                _known(
                    ("risk tier", tags.get(TAG_RISK_TIER) or run_tags.get(TAG_RISK_TIER)),
                    ("spec", tags.get(TAG_SPEC_HASH)),
                    ("commit", (commit or "")[:12]),
                )
            )
            + ")"
        )
        registered += f", by {origin}" if origin else ""
    events = [
        _event(
            created,
            "registration",
            f"Registered as {model} v{version} {registered}",
            version=version,
            link=link,
            risk_tier=tags.get(TAG_RISK_TIER),
            spec_hash=tags.get(TAG_SPEC_HASH),
            git_commit=commit,
            data_fingerprint=tags.get(TAG_DATA_FINGERPRINT),
            registered_by=origin,
            **common,
        )
    ]
    skipped = skipped_steps(rec, version, tags, origin)
    if skipped:
        events.append(
            _event(created, "gate", skipped, version=version, link=link, rank="skipped", status="skipped")
        )
    if tags.get(TAG_MODEL_CARD):
        events.append(
            _event(
                iso(tags.get(TAG_MODEL_CARD_GENERATED_AT)) or created,
                "model_card",
                f"Model card (latest) generated: {tags[TAG_MODEL_CARD]}",
                version=version,
                link=link,
                model_card=tags[TAG_MODEL_CARD],
            )
        )
    for r in approval_records(model, version, tags):
        who = (
            ", timed out: nobody answered"
            if r["timed_out"]
            else f" by {r.get('by') or 'an unrecorded approver'}"
        )
        summary = f"Approval {r['index']}: {str(r.get('decision') or 'no decision recorded').upper()}{who}"
        summary += f" (policy {r['policy']})" if r.get("policy") else ""
        summary += f': "{r["comment"]}"' if r.get("comment") else ""
        events.append(
            _event(
                iso(r.get("at")) or created,
                "approval",
                summary,
                version=version,
                link=link,
                **{k: r.get(k) for k in ("index", "decision", "by", "comment", "policy", "timed_out")},
            )
        )
    for at, alias, v in sets:
        if v != version:
            continue
        old = replaced(sets, alias, version, at)
        summary = f"Alias {alias} -> v{version}" + (f" (replacing v{old})" if old else "")
        events.append(
            _event(
                at,
                "alias",
                summary,
                version=version,
                link=link,
                rank=_alias_rank(alias),
                alias=alias,
                replaced=old,
            )
        )
    if tags.get(TAG_BENTO_TAG) or tags.get(TAG_SMOKE_AT):
        ok = tags.get(TAG_DEPLOYABLE) == "true"
        smoke = smoke_sentence(tags, ok, origin)
        at = iso(tags.get(TAG_SMOKE_AT)) or max(e["at"] for e in events if e["at"])
        bento = (
            f"Packaged bento {tags[TAG_BENTO_TAG]}" if tags.get(TAG_BENTO_TAG) else "No bento tag recorded"
        )
        events.append(
            _event(
                at,
                "packaging",
                f"{bento}; {smoke}",
                version=version,
                link=link,
                bento_tag=tags.get(TAG_BENTO_TAG),
                deployable=ok,
                max_abs_diff=tags.get(TAG_SMOKE_MAX_ABS_DIFF),
            )
        )
    for key in sorted(k for k in tags if k.startswith(TAG_ROLLOUT_STAGE)):
        try:
            stage = json.loads(tags[key])
        except ValueError:
            continue
        share = (
            f"{stage.get('traffic_percent')}% of traffic"
            if stage.get("traffic_percent")
            else "copies of live requests, no traffic"
        )  # the shadow stage
        events.append(
            _event(
                iso(stage.get("at")),
                "rollout",
                f"Rollout stage {stage.get('stage')} ({share}): "
                f"{str(stage.get('outcome') or 'no verdict recorded').upper()}: {stage.get('reason', '')}",
                version=version,
                link=link,
                stage=stage.get("stage"),
                outcome=stage.get("outcome"),
                traffic_percent=stage.get("traffic_percent"),
            )
        )
    for key in sorted(k for k in tags if k.startswith(TAG_ROLLOUT_PAUSE)):
        try:
            paused = json.loads(tags[key])
        except ValueError:
            continue
        who = "no answer (fail closed)" if paused.get("timed_out") else f"by {paused.get('by')}"
        events.append(
            _event(
                iso(paused.get("at")),
                "rollout",
                f"Rollout paused after {paused.get('stage')} ({paused.get('traffic_percent')}% of "
                f"traffic): {str(paused.get('decision') or 'no decision recorded').upper()} {who}"
                + (f": {paused['comment']}" if paused.get("comment") else ""),
                version=version,
                link=link,
                stage=paused.get("stage"),
                decision=paused.get("decision"),
                by=paused.get("by"),
                comment=paused.get("comment"),
            )
        )
    events += _rollout_events(rec, version, tags, link)
    if tags.get(TAG_ROLLED_BACK_AT):
        events.append(
            _event(
                iso(tags[TAG_ROLLED_BACK_AT]),
                "rollback",
                f"Rolled back: 100% of traffic to stable, challenger removed, champion untouched "
                f"({tags.get(TAG_ROLLED_BACK, '')})",
                version=version,
                link=link,
                reason=tags.get(TAG_ROLLED_BACK),
            )
        )
    if tags.get(TAG_PROMOTED_AT):
        at = iso(tags[TAG_PROMOTED_AT])
        old = replaced(sets, tracking.CHAMPION, version, at or "")
        events.append(
            _event(
                at,
                "promotion",
                f"Promoted v{version} to champion"
                + (f"; v{old} kept as previous (the rollback target)" if old else ""),
                version=version,
                link=link,
                previous=old,
            )
        )
    return events


def _known(*pairs: tuple[str, str | None]) -> list[str]:
    """``label value`` for each value that is recorded, ``no <label> recorded`` for the others."""
    return [
        f"{label} {value}".strip() if value else f"no {label or 'value'} recorded" for label, value in pairs
    ]


def _fault(tags: dict[str, str], run: Any = None) -> str | None:
    """The injected fault of a version ``demo.faults`` registered (tag on the version or its run)."""
    return tags.get(TAG_FAULT) or ((run.data.tags if run is not None else {}).get(TAG_FAULT))


def provenance(tags: dict[str, str], run: Any = None) -> str | None:
    """Who registered a version the training DAG did not, in words; None for the training DAG's own."""
    run_tags = run.data.tags if run is not None else {}
    fault = _fault(tags, run)
    if fault:
        wraps = tags.get(TAG_FAULT_WRAPS) or run_tags.get(TAG_FAULT_WRAPS)
        by = tags.get(TAG_REGISTERED_BY) or "make demo-bad-canary (include/modelops/demo/faults.py)"
        return (
            f"{by} as a fault-injected copy of "
            + (f"v{wraps}" if wraps else "a trained version (which one was not recorded)")
            + f" (fault {fault!r})"
        )
    if tags.get(TAG_REGISTERED_BY):
        return tags[TAG_REGISTERED_BY]
    if not tags.get(tracking.TAG_DAG_ID) and not run_tags.get(tracking.TAG_DAG_ID):
        return "hand or another tool (no training DAG run is recorded on it)"
    return None


def smoke_sentence(tags: dict[str, str], deployable: bool, origin: str | None) -> str:
    if tags.get(TAG_SMOKE_AT) or tags.get(TAG_SMOKE_MAX_ABS_DIFF):
        if not deployable:
            return "smoke-serve did not pass (not deployable)"
        diff = tags.get(TAG_SMOKE_MAX_ABS_DIFF)
        return "smoke-serve passed, served predictions match offline" + (
            f" (max |diff| {diff})" if diff else " (the largest difference was not recorded)"
        )
    why = f"registered by {origin}" if origin else "the version has no smoke-serve record (modelops.smoke.at)"
    return f"not smoke-served: {why}" + (
        "; marked deployable without it, so a rollout could take it" if deployable else ""
    )


def skipped_steps(rec: Records, version: str, tags: dict[str, str], origin: str | None) -> str | None:
    """``Gate and approval skipped: why`` for a version that went on without them; None when it did not."""
    from include.modelops.governance.approvals import records as approval_records

    run = rec.runs.get(rec.versions[version].run_id)
    gate = tags.get(TAG_GATE_STATUS) or (run.data.tags.get(TAG_GATE_STATUS) if run else None)
    went_on = (
        tags.get(TAG_DEPLOYABLE) == "true"
        or bool(tags.get(alias_set_at(tracking.CHAMPION)))
        or any(v == version for v in rec.aliases.values())
        or bool(tags.get(TAG_ROLLOUT_STATUS))
    )
    skipped = []
    if not gate:
        skipped.append("gate")
    if (not gate or gate == "passed") and went_on and not approval_records(rec.model, version, tags):
        skipped.append("approval")
    if not skipped:
        return None
    if _fault(tags, run):
        why = (
            f"registered by {origin} and sent straight to a rollout: the demo shows the rollout catching a bad "
            f"release, so it was never evaluated, gated or approved"
        )
    elif origin:
        why = f"registered by {origin}; no {' or '.join(skipped)} record is on the version"
    else:
        why = (
            f"no {' or '.join(skipped)} record is on the version (tags modelops.gate.*, modelops.approval.*)"
        )
    return f"{' and '.join(skipped).capitalize()} skipped: {why}"


def _rollout_events(rec: Records, version: str, tags: dict[str, str], link: str) -> list[dict]:
    """Each rollout run of the version (the rollout record) and its deployment history (the version tags)."""
    from include.modelops.rollout.history import deployment_history

    events = []
    record = rec.rollouts.get(version)
    if record:
        run_id = record.get("dag_run_id")
        against = (
            "first deployment: nothing to compare against, 100% after a health check"
            if record.get("first_deployment")
            else f"canary v{version} against stable v{record.get('stable_version')}"
        )
        events.append(
            _event(
                iso(record.get("started_at")),
                "rollout_run",
                f"Rollout run {run_id or '(DAG run not recorded)'} started: {against}",
                version=version,
                link=dag_run_url(f"{rec.model}_rollout", run_id) if run_id else link,
                rank="rollout:start",
                dag_run_id=run_id,
                status=record.get("status"),
            )
        )
        if record.get("status") not in ("promoted", "rolled_back"):
            ran = ([record["shadow"]] if record.get("shadow") else []) + list(record.get("stages") or [])
            last = ran[-1] if ran else {}
            events.append(
                _event(
                    iso(last.get("ended_at") or last.get("started_at")) or iso(record.get("started_at")),
                    "rollout_run",
                    f"Rollout run {run_id} has no end recorded (status "
                    f"{record.get('status') or 'not recorded'}"
                    + (f", last stage {last.get('name')}: {last.get('outcome')}" if last else "")
                    + "): it is still running, or its DAG run stopped without a verdict",
                    version=version,
                    link=link,
                    rank="rollout:end",
                    dag_run_id=run_id,
                    status=record.get("status"),
                )
            )
    for e in deployment_history({k: v for k, v in tags.items() if k.startswith(TAG_DEPLOYMENT)}):
        stages = ", ".join(f"{s['name']} {s['outcome']}" for s in e["stages"])
        events.append(
            _event(
                iso(e["at"]),
                "deployment",
                f"Deployment history: {e['event']}"
                + (f" [{stages}]" if stages else "")
                + (f": {e['reason']}" if e["reason"] else ""),
                version=version,
                link=link,
                rank="rollout:end",
                event=e["event"],
            )
        )
    return events


def rollout_summary(rec: Records, version: str) -> str | None:
    """One line: how the version's rollout went (record on this machine, else the version's tags)."""
    tags = rec.versions[version].tags or {}
    record = rec.rollouts.get(version) or {}
    status = record.get("status") or tags.get(TAG_ROLLOUT_STATUS)
    if not status:
        return None
    stage = (record.get("failure") or {}).get("stage")
    run = record.get("dag_run_id")
    text = {"promoted": "promoted to champion", "rolled_back": "rolled back"}.get(status, status)
    if status == "rolled_back":
        reason = record.get("reason") or tags.get(TAG_ROLLED_BACK)
        text += (f" at {stage}" if stage else "") + (f": {reason}" if reason else "")
    elif status == "promoted" and (record.get("summary") or tags.get(TAG_ROLLOUT_SUMMARY)):
        text += f": {record.get('summary') or tags.get(TAG_ROLLOUT_SUMMARY)}"
    return f"v{version} {text}" + (f" (DAG run {run})" if run else "")


def _alias_rank(alias: str) -> str:
    return f"alias:{alias}" if f"alias:{alias}" in RANK else "alias"


def _dag_run_events(run: dict, version: str | None) -> list[dict]:
    conf = run.get("conf") or {}
    link = dag_run_url(run["dag_id"], run["run_id"])
    kind_of_run = run["run_id"].split("__", 1)[0] if "__" in run["run_id"] else "manual"
    said = []
    if conf.get("reason"):
        said.append(f'reason "{conf["reason"]}"')
    if conf.get("data_path"):
        said.append(f"data_path {conf['data_path']}")
    common = {
        "dag_id": run["dag_id"],
        "dag_run_id": run["run_id"],
        "state": run.get("state"),
        "conf": run.get("conf"),
        "start_date": run.get("start_date"),
        "end_date": run.get("end_date"),
    }
    events = [
        _event(
            run.get("start_date"),
            "dag_run",
            f"DAG run {run['run_id']} started ({kind_of_run})" + (": " + ", ".join(said) if said else ""),
            version=version,
            link=link,
            rank="dag_run:start",
            phase="start",
            **common,
        )
    ]
    if run.get("end_date"):
        took = ""
        if run.get("start_date"):
            secs = int(
                (
                    datetime.fromisoformat(run["end_date"]) - datetime.fromisoformat(run["start_date"])
                ).total_seconds()
            )
            h, m, sec = secs // 3600, secs % 3600 // 60, secs % 60
            took = " after " + (f"{h} h {m} min" if h else f"{m} min {sec} s" if m else f"{sec} s")
        events.append(
            _event(
                run["end_date"],
                "dag_run",
                f"DAG run {run['run_id']} ended {run.get('state')}{took}",
                version=version,
                link=link,
                rank="dag_run:end",
                phase="end",
                **common,
            )
        )
    return events


def _sort(events: list[dict]) -> list[dict]:
    # Tag times have one-second resolution: within a second, lifecycle step, version, then window order.
    ordered = sorted(
        events,
        key=lambda e: (
            e["at"] or "9999",
            e["_rank"],
            int(e["version"] or 0),
            str((e.get("details") or {}).get("window") or ""),
        ),
    )
    for e in ordered:
        e.pop("_rank", None)
    return ordered


def collect_events(
    model: str, version: str | None = None, *, dag_runs: dict[str, dict] | None = None
) -> list[dict]:
    """The model's lifecycle events (or one version's), oldest first.

    Args:
        model: the model (registered model and experiment name).
        version: a version number; None: every run and version of the model, including
            runs that stopped at validation and never made a version.
        dag_runs: Airflow's DAG runs from :func:`read_dag_runs`; None leaves Airflow out.

    Raises:
        AuditError: no such model or version (the message names those that exist).
    """
    rec = Records(model)
    return collect_for_records(rec, None if version is None else str(version), dag_runs or {})


def collect_for_records(rec: Records, version: str | None, dag_runs: dict[str, dict]) -> list[dict]:
    sets = alias_sets(rec)
    events: list[dict] = []
    if version is None:
        for run in rec.runs.values():
            events += _run_events(rec, run)
        for v in rec.versions:
            events += _version_events(rec, v, sets)
        versions_of_dag_run = {mv.tags.get(tracking.TAG_DAG_RUN): v for v, mv in rec.versions.items()}
        dag_run_ids = {r.data.tags.get(tracking.TAG_DAG_RUN) for r in rec.runs.values()}
        dag_ids = rec.dag_ids()
        for run_id, dr in dag_runs.items():
            if dr["dag_id"] in dag_ids or run_id in dag_run_ids:
                events += _dag_run_events(dr, versions_of_dag_run.get(run_id))
        return _sort(events)
    mv = rec.version(version)
    run = rec.runs.get(mv.run_id)
    if run is None:  # the run lives in another experiment: fetch it directly
        try:
            run = tracking.client().get_run(mv.run_id)
        except Exception:
            run = None
    if run is not None:
        events += _run_events(rec, run)
    for r in rec.runs.values():  # the windows this version served, and the decisions taken on them
        if (
            r.data.tags.get(TAG_KIND) == KIND_MONITORING
            and r.data.tags.get(f"{MONITORING}model_version") == version
        ):
            events += _monitoring_events(r)
    events += _version_events(rec, version, sets)
    # Alias moves that took an alias away from this version (e.g. a newer champion).
    for at, alias, v in sets:
        if v != version and replaced(sets, alias, v, at) == version:
            events.append(
                _event(
                    at,
                    "alias",
                    f"Alias {alias} -> v{v} (replacing v{version})",
                    version=v,
                    link=tracking.version_url(rec.model, v),
                    rank=_alias_rank(alias),
                    alias=alias,
                    replaced=version,
                )
            )
    dr = dag_runs.get(mv.tags.get(tracking.TAG_DAG_RUN, ""))
    if dr:
        events += _dag_run_events(dr, version)
    return _sort(events)
