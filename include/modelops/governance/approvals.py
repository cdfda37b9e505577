"""Approvals: who may promote a model version, on what evidence, and the record they leave.

The human side runs on Airflow's human-in-the-loop operators (see
``plugins/modelops_operators/approval.py``); this module holds what does not need a
scheduler: the readiness check, the request body a reviewer reads, the policy decision,
and the approval records written to the model version's tags (``modelops.approval.<n>.*``).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from include.modelops.platform import tracking
from include.modelops.spec import ModelSpec, RiskTier

log = logging.getLogger(__name__)

APPROVED, REJECTED = "approved", "rejected"


class ApprovalNotAllowed(Exception):
    """The version cannot be put to approval (or the approval is invalid); the message says why."""


def required_approvals(spec: ModelSpec) -> int:
    """Distinct human approvals needed: two for high-risk models, else one."""
    return 2 if spec.risk_tier == RiskTier.high else 1


def check_ready(spec: ModelSpec, version: str, evaluated: dict, card: dict) -> None:
    """Refuse to ask anyone unless the evidence is complete and the gate passed.

    Raises:
        MissingEvidenceError: the model card lacks sections the risk tier requires (named).
        ApprovalNotAllowed: the gate did not pass.
    """
    from include.modelops.governance.compliance import MissingEvidenceError

    if card.get("missing_evidence"):
        raise MissingEvidenceError(
            f"{spec.name} v{version} ({spec.risk_tier.value} risk) cannot be promoted: the model card is "
            f"missing required evidence: "
            + "; ".join(card["missing_evidence"])
            + f". Fill these in include/models/{spec.name}.yaml and retrain.",
            list(card["missing_evidence"]),
        )
    if not evaluated.get("passed"):
        raise ApprovalNotAllowed(f"{spec.name} v{version} did not pass the gate: {evaluated.get('summary')}")


def policy_decision(spec: ModelSpec, evaluated: dict, policy: str | None = None) -> dict | None:
    """The automatic decision under ``approval.policy: auto``, or None when a human must decide.

    ``auto`` approves only a low-risk model whose every gate check passed. ``policy`` is the
    approval task's own (``ModelApprovalOperator(policy=...)``); it can only make the decision
    stricter: ``manual`` asks a human whatever the spec says, ``auto`` is automatic only when the
    spec's ``approval.policy`` is ``auto`` too (a DAG cannot waive the approval its spec requires).
    """
    if spec.approval.policy != "auto" or (policy or "auto") != "auto":
        return None
    if spec.risk_tier != RiskTier.low:  # the spec schema already refuses this; kept as a safety net
        raise ApprovalNotAllowed(f"policy 'auto' is not allowed for {spec.risk_tier.value}-risk {spec.name}")
    return {
        "decision": APPROVED,
        "by": "policy:auto",
        "policy": "auto",
        "comment": f"risk tier {spec.risk_tier.value}, every gate check passed ({evaluated.get('summary')})",
    }


def record(
    model: str,
    version: str,
    *,
    index: int,
    decision: str,
    by: str,
    comment: str = "",
    policy: str = "manual",
    at: str | None = None,
    timed_out: bool = False,
) -> dict:
    """Write one approval record to the version's tags; returns it."""
    entry = {
        "decision": decision,
        "by": by,
        "at": at or tracking.now_iso(),
        "comment": comment or "",
        "policy": policy,
        "timed_out": timed_out,
        "index": index,
    }
    tags = {f"modelops.approval.{index}.{k}": v for k, v in entry.items() if k != "index"}
    # The latest decision, for people browsing tags in the MLflow UI.
    tags.update(
        {
            f"modelops.approval.{k}": v
            for k, v in entry.items()
            if k in ("decision", "by", "at", "comment", "policy")
        }
    )
    tracking.set_version_tags(model, version, tags)
    log.info(
        "Recorded approval #%d of %s v%s: %s by %s%s",
        index,
        model,
        version,
        decision,
        by,
        f" ({comment})" if comment else "",
    )
    return entry


def records(model: str, version: str, tags: dict[str, str] | None = None) -> list[dict]:
    """Every approval record of a version, in order."""
    tags = tags if tags is not None else tracking.version_info(model, version)["tags"]
    found: dict[int, dict] = {}
    for key, value in tags.items():
        parts = key.split(".")
        if len(parts) == 4 and parts[:2] == ["modelops", "approval"] and parts[2].isdigit():
            found.setdefault(int(parts[2]), {"index": int(parts[2])})[parts[3]] = value
    out = []
    for i in sorted(found):
        r = found[i]
        r["timed_out"] = str(r.get("timed_out")).lower() == "true"
        out.append(r)
    return out


def check_distinct(model: str, version: str, index: int, responder: str) -> None:
    """A second approval must come from someone who has not approved this version yet."""
    earlier = {
        r.get("by") for r in records(model, version) if r["index"] < index and r.get("decision") == APPROVED
    }
    if responder in earlier:
        raise ApprovalNotAllowed(
            f"{model} v{version} needs approvals from {index} different people; {responder} already approved it"
        )


def request_markdown(
    spec: ModelSpec, registered: dict, evaluated: dict, card: dict, *, index: int = 1
) -> str:
    """The body a reviewer reads in the Airflow UI: the gate, deltas with intervals, slices, links."""
    evaluation = json.loads(Path(evaluated["evaluation_path"]).read_text())
    decision = json.loads(Path(evaluated["decision_path"]).read_text())
    version = registered["version"]
    need = required_approvals(spec)
    lines = [
        f"## {spec.name} v{version}: promote to champion?",
        f"**Risk tier:** {spec.risk_tier.value} · **approval {index} of {need}**"
        + (" (from a different person than the first)" if index > 1 else ""),
        "",
        f"**Gate:** {decision['summary']}",
        "",
    ]
    models = evaluation["models"]
    metrics = list(models["candidate"]["metrics"])
    champ = models.get("champion") or {}
    lines += ["| metric | candidate | champion | Δ vs champion | baseline |", "|---|---:|---:|---:|---:|"]
    for m in metrics:
        c = models["candidate"]["metrics"].get(m)
        ch = (champ.get("metrics") or {}).get(m)
        b = models["baseline"]["metrics"].get(m)
        delta = f"{c - ch:+.4f}" if c is not None and ch is not None else "–"
        lines.append(f"| {m} | {_f(c)} | {_f(ch)} | {delta} | {_f(b)} |")
    comp = evaluation.get("comparison")
    if comp:
        lines += [
            "",
            f"**{comp['metric']} difference (candidate − champion):** {comp['diff']:+.4f}, "
            f"95% CI [{comp['ci_low']:+.4f}, {comp['ci_high']:+.4f}] ({comp['samples']} paired bootstrap "
            f"resamples)",
        ]
    else:
        lines += [
            "",
            "**No champion yet:** this is the first model; it was judged on thresholds and the baseline.",
        ]
    if evaluation.get("slices"):
        lines += [
            "",
            f"**Slices ({evaluation['primary_metric']}):**",
            "",
            "| slice | rows | candidate | champion |",
            "|---|---:|---:|---:|",
        ]
        for s in evaluation["slices"]:
            ms = s.get("metrics", {})
            lines.append(
                f"| {s['column']}={s['value']} | {s['rows']} | {_f(ms.get('candidate'))} | "
                f"{_f(ms.get('champion'))} |"
            )
    failed = [c for c in decision["checks"] if not c["passed"]]
    lines += ["", f"**Checks:** {len(decision['checks']) - len(failed)}/{len(decision['checks'])} passed"]
    lines += [
        "",
        "**Evidence:**",
        f"- Model card: {card.get('card_html')}",
        f"- Evaluation report: {evaluated.get('report_html')}",
        f"- MLflow model version: {registered.get('url')}",
        "",
        f"No answer within {spec.approval.timeout_hours:g} h rejects the candidate (fail closed).",
    ]
    return "\n".join(lines)


def _f(x: Any) -> str:
    return "–" if x is None else f"{x:.4f}"
