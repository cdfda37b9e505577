"""The audit as text: the event table, the verdict, and ``report`` (what ``make audit`` prints)."""

from __future__ import annotations

import textwrap
from collections.abc import Iterable

from include.modelops.governance.audit.airflow_runs import AirflowApi, read_dag_runs, read_dag_runs_api
from include.modelops.governance.audit.events import collect_for_records, rollout_summary
from include.modelops.governance.audit.records import Records, iso
from include.modelops.governance.audit.verdict import records_verdict
from include.modelops.platform import tracking
from include.modelops.platform.tags import (
    KIND_MONITORING,
    MONITORING,
    TAG_FAULT,
    TAG_GATE_STATUS,
    TAG_KIND,
    TAG_ROLLED_BACK_AT,
    TAG_VALIDATION_STATUS,
    alias_set_at,
)
from include.modelops.settings import get_settings


def render_text(
    events: list[dict],
    *,
    model: str,
    version: str | None,
    verdict: dict | None = None,
    notes: Iterable[str] = (),
    footer: Iterable[str] = (),
    width: int = 118,
) -> str:
    """A timeline for a terminal: one event per block, time (UTC), step, version, what happened, link."""
    what = f"{model} v{version}" if version else f"{model} (every run and version)"
    lines = [
        f"Audit trail of {what}",
        "=" * min(width, 78),
        f"Times in UTC; sources: MLflow ({get_settings().mlflow_tracking_uri}) and Airflow.",
        *notes,
        "",
    ]
    if not events:
        lines.append("No lifecycle events recorded yet.")
    for e in events:
        at = (e["at"] or "").replace("T", " ")[:19] or "time not recorded".ljust(19)
        head = f"{at}  {e['kind']:<12} {('v' + e['version']) if e['version'] else '-':<4}  "
        indent = " " * len(head)
        lines += textwrap.wrap(
            e["summary"],
            width=width,
            initial_indent=head,
            subsequent_indent=indent,
            break_on_hyphens=False,
            break_long_words=False,
        ) or [head]
        if e.get("link"):
            lines.append(indent + e["link"])
    if verdict:
        lines += ["", *render_verdict(verdict, width=width)]
    footer = list(footer)
    if footer:
        lines += ["", *footer]
    return "\n".join(lines) + "\n"


def render_verdict(v: dict, *, width: int = 118) -> list[str]:
    """The closing block of a version's audit: where it is and on what evidence."""

    def row(label: str, text: str | None) -> list[str]:
        return (
            textwrap.wrap(
                text or "not recorded",
                width=width,
                initial_indent=f"  {label:<17} ",
                subsequent_indent=" " * 20,
                break_on_hyphens=False,
                break_long_words=False,
            )
            or []
        )

    approvals = [
        f"#{r['index']} {str(r.get('decision') or 'no decision recorded').upper()} by "
        f"{r.get('by') or 'an unrecorded approver'} at {iso(r.get('at')) or 'an unrecorded time'}"
        + (f" (policy {r['policy']})" if r.get("policy") else "")
        + (" [timed out]" if r["timed_out"] else "")
        + (f': "{r["comment"]}"' if r.get("comment") else "")
        for r in v["approvals"]
    ]
    out = [f"Verdict: {v['model']} v{v['version']}", "-" * min(width, 78)]
    out += row("Status", v["status"])
    registry = ", ".join(f"{a}=v{n}" for a, n in sorted(v["all_aliases"].items())) or "none"
    out += row("Aliases", f"{', '.join(v['aliases']) or 'none'}   (registry now: {registry})")
    out += row("Registered by", v["registered_by"] or "the training DAG")
    out += row(
        "Gate",
        f"{v['gate']['status']}: {v['gate']['summary'] or 'no summary recorded'}"
        if v["gate"]["status"]
        else "no gate decision recorded",
    )
    if v["skipped"]:
        out += row("Skipped", v["skipped"])
    out += row(
        "Approvals",
        f"{len(v['approvers'])} of {v['approvals_required']} required "
        + (
            f"(risk tier {v['risk_tier']})"
            if v["risk_tier"]
            else "(no risk tier recorded: one approval assumed)"
        ),
    )
    for a in approvals:
        out += row("", a)
    out += row(
        "Evidence",
        "complete: gate passed, model card, approval(s), smoke-serve"
        if v["evidence_complete"]
        else "INCOMPLETE for promotion, lacks " + "; ".join(v["evidence_missing"]),
    )
    out += row("Smoke-serve", v["smoke"])
    out += row("Rollout", v["rollout"] or "never rolled out")
    out += row("Model card", v["model_card"])
    out += row(
        "Data",
        (
            f"fingerprint {v['data_fingerprint']}"
            if v["data_fingerprint"]
            else "no data fingerprint recorded"
            + (f" (registered by {v['registered_by']})" if v["registered_by"] else "")
        )
        + (f" of {v['data_path']}" if v["data_path"] else "")
        + (f"; {v['validation']}" if v["validation"] else "")
        + (f"; split {v['split']}" if v["split"] else ""),
    )
    out += row("Git commit", v["git_commit"])
    out += row("Spec hash", v["spec_hash"])
    if v["dag_id"] or v["dag_run_id"]:
        out += row(
            "DAG run",
            f"{v['dag_id'] or 'DAG not recorded'} / {v['dag_run_id'] or 'run not recorded'}"
            + (f" ({v['dag_run_state']})" if v["dag_run_state"] else "")
            + (f', reason "{v["dag_run_reason"]}"' if v["dag_run_reason"] else ""),
        )
        if v["dag_run_url"]:
            out += row("", v["dag_run_url"])
    else:
        out += row("DAG run", "none: no training DAG run registered it")
    out += row("MLflow run", v["mlflow_run_url"])
    out += row("Model version", v["version_url"])
    if v["bento_tag"]:
        out += row("Bento", f"{v['bento_tag']} ({'deployable' if v['deployable'] else 'not deployable'})")
    return out


def report(
    model: str,
    version: str | None = None,
    *,
    airflow_env: dict[str, str] | None = None,
    airflow_api: AirflowApi | None = None,
) -> str:
    """The whole audit as text: the timeline and, for a version, the verdict.

    Args:
        model: the model.
        version: one version, or None for the model's whole history.
        airflow_env: the stack's environment for the ``airflow`` CLI (this checkout's metadata DB).
        airflow_api: Airflow's REST API instead (a deployment's); with neither, Airflow is left out.

    Raises:
        AuditError: no such model or version.
    """
    rec = Records(model)
    version = None if version is None else str(version)
    notes: list[str] = []
    dag_runs: dict[str, dict] = {}
    if version is not None:
        mv = rec.version(version)  # fail fast, before asking Airflow
        conf_for: list[str] | None = (
            [mv.tags[tracking.TAG_DAG_RUN]] if mv.tags.get(tracking.TAG_DAG_RUN) else []
        )
    else:
        conf_for = None
    if airflow_api is not None:
        dag_runs, notes = read_dag_runs_api(rec.dag_ids(), airflow_api, conf_for=conf_for)
    elif airflow_env is not None:
        dag_runs, notes = read_dag_runs(rec.dag_ids(), airflow_env, conf_for=conf_for)
    else:
        notes.append("Airflow: not consulted; showing MLflow records only.")
    events = collect_for_records(rec, version, dag_runs)
    if version is not None:
        return render_text(
            events, model=model, version=version, verdict=records_verdict(rec, version, dag_runs), notes=notes
        )
    return render_text(events, model=model, version=None, notes=notes, footer=_model_footer(rec, dag_runs))


def _model_footer(rec: Records, dag_runs: dict[str, dict]) -> list[str]:
    """Where the model stands now: aliases, what became of each version, DAG-run outcomes."""
    from include.modelops.governance.approvals import records as approval_records

    aliases = ", ".join(f"{a}=v{v}" for a, v in sorted(rec.aliases.items())) or "none"
    fates = []
    for v in sorted(rec.versions, key=int):
        tags = rec.versions[v].tags or {}
        held = sorted(a for a, n in rec.aliases.items() if n == v)
        rejected = [r for r in approval_records(rec.model, v, tags) if r.get("decision") != "approved"]
        if held:
            fate = "/".join(held)
        elif tags.get(TAG_GATE_STATUS) not in (None, "passed"):
            fate = "rejected at the gate"
        elif rejected:
            fate = "timed out" if rejected[-1]["timed_out"] else f"rejected by {rejected[-1].get('by')}"
        elif tags.get(alias_set_at(tracking.CHAMPION)):
            fate = "served, since replaced"
        elif tags.get(TAG_ROLLED_BACK_AT):
            fate = "rolled back"
        else:
            fate = "not promoted"
        fates.append(f"v{v} {fate}" + (" (fault-injected copy)" if tags.get(TAG_FAULT) else ""))
    stopped = sum(1 for r in rec.runs.values() if r.data.tags.get(TAG_VALIDATION_STATUS) == "failed")
    watched = [r for r in rec.runs.values() if r.data.tags.get(TAG_KIND) == KIND_MONITORING]
    faulty = [r for r in rec.runs.values() if r.data.tags.get(TAG_FAULT)]
    rollouts = [line for v in sorted(rec.versions, key=int) if (line := rollout_summary(rec, v))]
    requested = sum(1 for r in watched if r.data.tags.get(f"{MONITORING}outcome") == "retrain")
    monitoring = f"; {len(watched)} monitoring window(s), {requested} retrain request(s)" if watched else ""
    states: dict[str, int] = {}
    for r in dag_runs.values():
        states[str(r.get("state"))] = states.get(str(r.get("state")), 0) + 1
    out = [
        f"Now: {rec.model}",
        "-" * 78,
        f"  {'Aliases':<17} {aliases}",
        f"  {'Versions':<17} {'; '.join(fates) or 'none'}",
        f"  {'Training runs':<17} {len(rec.runs) - len(watched) - len(faulty)}, of which {stopped} stopped at "
        f"data validation"
        + monitoring
        + (f"; {len(faulty)} fault-injected candidate run(s) (make demo-bad-canary)" if faulty else ""),
        f"  {'Rollout runs':<17} "
        + (f"{len(rollouts)}: " + "; ".join(rollouts) if rollouts else "none recorded"),
    ]
    if dag_runs:
        out.append(
            f"  {'Airflow DAG runs':<17} {len(dag_runs)}: "
            + ", ".join(f"{n} {s}" for s, n in sorted(states.items()))
        )
    out.append(f"  {'Ask about one':<17} make audit MODEL={rec.model} VERSION=<n>")
    return out
