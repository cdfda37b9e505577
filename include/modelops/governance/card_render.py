"""A model card as a document: one document model (blocks and sections), rendered as Markdown
(:func:`render_markdown`) and as a self-contained HTML page (:func:`render_html`: inline CSS, no
external resources).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import jinja2

from include.modelops.governance.card_schema import (
    CARD_SCHEMA_VERSION,
    as_mapping,
    fmt_signed,
    fmt_value,
    has_evidence,
)
from include.modelops.governance.compliance import ANNEX_IV_ITEMS, NIST_AI_RMF_ITEMS, compliance_entries
from include.modelops.platform import reports

if TYPE_CHECKING:
    pass

# --------------------------------------------------------------------------------------------
# Rendering: one document model, two renderers (Markdown and HTML)
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Link:
    text: str
    href: str


@dataclass(frozen=True)
class _Badge:
    text: str
    ok: bool | None  # True green, False red, None grey


@dataclass
class _Block:
    kind: str  # "p" | "kv" | "table" | "list" | "note"
    text: Any = None
    rows: list = None  # type: ignore[assignment]
    headers: list = None  # type: ignore[assignment]
    level: str = "info"  # notes: info | warn | bad


@dataclass
class _Section:
    id: str
    title: str
    blocks: list[_Block]


def _verdict(ok: Any) -> _Badge:
    if ok is None:
        return _Badge("n/a", None)
    return _Badge("PASS", True) if ok else _Badge("FAIL", False)


def _link_or_text(value: Any, label: str | None = None) -> Any:
    if not has_evidence(value):
        return None
    text = label or str(value)
    return _Link(text, str(value)) if _safe_href(str(value)) else str(value)


def _safe_href(href: str) -> bool:
    # Only plain web/file links become anchors; anything else (javascript:, data:) stays text.
    scheme = re.match(r"^([a-zA-Z][a-zA-Z0-9+.-]*):", href)
    return scheme is None or scheme.group(1).lower() in ("http", "https", "file")


_LINK_LABELS = {
    "mlflow_run": "MLflow run",
    "mlflow_model_version": "MLflow model version",
    "airflow_dag_run": "Airflow DAG run",
    "validation_report": "Validation report",
    "evaluation_report": "Evaluation report",
}


def _document(card: Mapping) -> tuple[str, list[_Block], list[_Section]]:
    md = as_mapping(card.get("model_details"))
    name = card.get("model_name") or md.get("name") or "model"
    version = card.get("version")
    title = f"Model card: {name}" + (f" v{version}" if version else "")
    gate = as_mapping(card.get("gate_decision"))
    header = [
        _Block(
            "kv",
            rows=[
                ("Gate decision", _verdict(gate.get("passed"))),
                ("Risk tier", card.get("risk_tier")),
                ("Generated", card.get("generated_at")),
                *(
                    (_LINK_LABELS.get(key, key), _link_or_text(url))
                    for key, url in as_mapping(card.get("links")).items()
                ),
            ],
        )
    ]
    missing = card.get("missing_evidence") or []
    if missing:
        header.append(
            _Block(
                "note",
                level="bad",
                text=f"Missing evidence for risk tier {card.get('risk_tier')!r}; "
                "do not promote until it is provided:",
            )
        )
        header.append(_Block("list", rows=list(missing)))
    sections = [
        _Section("model-details", "Model details", _model_details_blocks(md)),
        _Section("intended-use", "Intended use", _intended_use_blocks(as_mapping(card.get("intended_use")))),
        _Section("data", "Data", _data_blocks(as_mapping(card.get("data")))),
        _Section(
            "data-validation", "Data validation", _validation_blocks(as_mapping(card.get("data_validation")))
        ),
        _Section("training", "Training", _training_blocks(as_mapping(card.get("training")))),
        _Section("evaluation", "Evaluation", _evaluation_blocks(as_mapping(card.get("evaluation")))),
        _Section("gate-decision", "Gate decision", _gate_blocks(gate)),
        _Section(
            "limitations", "Limitations", _list_blocks(card.get("limitations"), "spec field 'limitations'")
        ),
        _Section(
            "ethical-considerations",
            "Ethical considerations",
            _list_blocks(card.get("ethical_considerations"), "spec field 'ethical_considerations'"),
        ),
        _Section("approvals", "Approvals", _approval_blocks(card.get("approvals"), md)),
        _Section("lineage", "Lineage", _lineage_blocks(as_mapping(card.get("lineage")))),
        _Section(
            "serving", "Serving: the endpoint contract", _serving_blocks(as_mapping(card.get("serving")))
        ),
        _Section(
            "deployment-history", "Deployment history", _deployment_blocks(card.get("deployment_history"))
        ),
        _Section("monitoring", "Monitoring", _monitoring_blocks(as_mapping(card.get("monitoring")))),
        _Section("compliance", "Compliance mapping", _compliance_blocks(card)),
    ]
    return title, header, sections


def _empty(what: str) -> _Block:
    return _Block("note", level="warn", text=f"Not provided: {what}.")


def _model_details_blocks(md: dict) -> list[_Block]:
    owner = as_mapping(md.get("owner"))
    policy = as_mapping(md.get("approval_policy"))
    blocks = []
    if has_evidence(md.get("description")):
        blocks.append(_Block("p", text=md["description"]))
    approval = None
    if policy:
        approvers = ", ".join(map(str, policy.get("approvers") or [])) or "—"
        approval = f"{policy.get('policy')} (approvers: {approvers}; timeout {fmt_value(policy.get('timeout_hours'))} h)"
    blocks.append(
        _Block(
            "kv",
            rows=[
                ("Name", md.get("name")),
                ("Version", md.get("version")),
                ("Task", md.get("task")),
                (
                    "Owner",
                    " ".join(
                        str(x)
                        for x in (owner.get("team"), f"<{owner['email']}>" if owner.get("email") else None)
                        if x
                    )
                    or None,
                ),
                ("Risk tier", md.get("risk_tier")),
                ("Framework", md.get("framework")),
                ("Created", md.get("created")),
                ("Approval policy", approval),
                ("Tags", ", ".join(map(str, md.get("tags") or [])) or None),
            ],
        )
    )
    return blocks


def _intended_use_blocks(iu: dict) -> list[_Block]:
    blocks = [
        _Block("p", text=iu["intended_use"])
        if has_evidence(iu.get("intended_use"))
        else _empty("spec field 'intended_use'")
    ]
    blocks.append(_Block("p", text="Out of scope:"))
    if has_evidence(iu.get("out_of_scope_uses")):
        blocks.append(_Block("list", rows=list(iu["out_of_scope_uses"])))
    else:
        blocks.append(_empty("spec field 'out_of_scope_uses'"))
    return blocks


def _data_blocks(data: dict) -> list[_Block]:
    tr = as_mapping(data.get("time_range"))
    target = as_mapping(data.get("target"))
    classes = target.get("classes")
    blocks = [
        _Block(
            "kv",
            rows=[
                ("Path", data.get("path")),
                ("Resolved path", data.get("resolved_path")),
                ("Format", data.get("format")),
                ("Fingerprint", data.get("fingerprint")),
                ("Rows", data.get("rows")),
                ("Minimum rows", data.get("min_rows")),
                ("Partitions", data.get("partitions")),
                ("Time column", data.get("time_column")),
                ("Time range", f"{tr.get('min') or '?'} → {tr.get('max') or '?'}" if tr else None),
                ("Entity id", data.get("entity_id")),
                ("Segment columns", ", ".join(map(str, data.get("segment_columns") or [])) or None),
                (
                    "Holdout",
                    f"{fmt_value(data.get('holdout_fraction'))} of rows, seed {data.get('split_seed')}"
                    if data.get("holdout_fraction") is not None
                    else None,
                ),
                (
                    "Target",
                    f"{target.get('name')}"
                    + (f" (classes: {', '.join(map(str, classes))})" if classes else "")
                    if target.get("name")
                    else None,
                ),
            ],
        )
    ]
    features = data.get("features") or []
    if features:
        blocks.append(
            _Block(
                "table",
                headers=["Feature", "Type", "Constraints", "Description"],
                rows=[
                    [f.get("name"), f.get("type"), f.get("constraints"), f.get("description") or None]
                    for f in map(as_mapping, features)
                ],
            )
        )
    else:
        blocks.append(_empty("spec field 'features'"))
    return blocks


def _validation_blocks(v: dict) -> list[_Block]:
    if v.get("success") is None:
        return [_empty("data-validation result (validate_dataset)")]
    blocks = [
        _Block(
            "kv",
            rows=[
                ("Result", _verdict(v.get("success"))),
                ("Summary", v.get("summary")),
                ("Rows validated", v.get("rows")),
                ("Report", _link_or_text(v.get("report"))),
            ],
        )
    ]
    failed = v.get("failed") or []
    if failed:
        blocks.append(
            _Block(
                "table",
                headers=["Failed expectation", "Column", "Observed"],
                rows=[
                    [f.get("expectation"), f.get("column"), f.get("observed")]
                    for f in map(as_mapping, failed)
                ],
            )
        )
    else:
        blocks.append(_Block("p", text="No failed expectations."))
    warned = v.get("warnings") or []
    if warned:  # checks the spec chose to warn about (e.g. split.on_missing_class: warn)
        blocks.append(
            _Block(
                "table",
                headers=["Warning", "Column", "Observed"],
                rows=[
                    [f.get("expectation"), f.get("column"), f.get("observed")]
                    for f in map(as_mapping, warned)
                ],
            )
        )
    return blocks


def _training_blocks(t: dict) -> list[_Block]:
    hw = as_mapping(t.get("hardware"))
    blocks = [
        _Block(
            "kv",
            rows=[
                ("Framework", t.get("framework")),
                ("Backend", t.get("backend")),
                ("MLflow run", t.get("mlflow_run_id")),
                ("Started", t.get("started")),
                ("Hardware", hw.get("summary")),
                ("Accelerator", hw.get("accelerator")),
                ("GPUs requested", hw.get("gpus_requested") if hw.get("backend") == "kubernetes" else None),
                ("Pod CPU / memory", f"{hw.get('cpu')} / {hw.get('memory')}" if hw.get("cpu") else None),
            ],
        )
    ]
    if hw.get("telemetry_recorded"):
        blocks.append(
            _Block(
                "kv",
                rows=[
                    ("GPU devices", ", ".join(map(str, hw.get("devices") or [])) or None),
                    ("GPU-hours", hw.get("gpu_hours")),
                    ("Energy (Wh)", hw.get("energy_wh")),
                    ("Peak GPU memory (MB)", hw.get("peak_memory_mb")),
                    ("Mean GPU utilisation (%)", hw.get("mean_utilization_pct")),
                ],
            )
        )
    params = as_mapping(t.get("params"))
    if params:
        blocks.append(
            _Block(
                "table",
                headers=[f"Parameter (from {t.get('params_source') or 'run'})", "Value"],
                rows=[[k, params[k]] for k in sorted(params)],
            )
        )
    return blocks


def _evaluation_blocks(e: dict) -> list[_Block]:
    models = as_mapping(e.get("models"))
    if not has_evidence(as_mapping(models.get("candidate")).get("metrics")):
        return [_empty("evaluation report (candidate metrics)")]
    champion = as_mapping(models.get("champion"))
    baseline = as_mapping(models.get("baseline"))
    direction = {True: "higher is better", False: "lower is better"}.get(e.get("higher_is_better"))
    blocks = [
        _Block(
            "kv",
            rows=[
                ("Primary metric", f"{e.get('primary_metric')}" + (f" ({direction})" if direction else "")),
                ("Holdout rows", e.get("rows")),
                ("Candidate version", as_mapping(models.get("candidate")).get("version")),
                ("Champion", f"version {champion.get('version')}" if champion else "none (first model)"),
                ("Baseline", baseline.get("description") if baseline else None),
                ("Report", _link_or_text(e.get("report"))),
            ],
        ),
        _Block(
            "table",
            headers=["Metric", "Candidate", "Champion", "Baseline", "Gate bound"],
            rows=[
                [
                    f"{r.get('metric')}" + (" (primary)" if r.get("primary") else ""),
                    r.get("candidate"),
                    r.get("champion"),
                    r.get("baseline"),
                    r.get("gate_bound"),
                ]
                for r in map(as_mapping, e.get("metrics") or [])
            ],
        ),
    ]
    comp = as_mapping(e.get("comparison"))
    if comp:
        excl = comp.get("ci_excludes_zero")
        meaning = {
            True: "the interval excludes 0: the difference is significant",
            False: "the interval includes 0: no significant difference",
        }.get(excl, "no confidence interval recorded")
        blocks.append(
            _Block(
                "p",
                text=(
                    f"Candidate vs champion on {comp.get('metric')}: {fmt_value(comp.get('candidate'))} vs "
                    f"{fmt_value(comp.get('champion'))}, difference {fmt_signed(comp.get('diff'))} "
                    f"(bootstrap CI {fmt_signed(comp.get('ci_low'))} to "
                    f"{fmt_signed(comp.get('ci_high'))}); "
                    f"{meaning}."
                ),
            )
        )
    slices = e.get("slices") or []
    if slices:
        blocks.append(
            _Block(
                "p",
                text=f"Slices ({e.get('primary_metric')}; slices under "
                f"{e.get('slice_min_rows')} rows are reported, not gated):",
            )
        )
        blocks.append(
            _Block(
                "table",
                headers=[
                    "Column",
                    "Value",
                    "Rows",
                    "Positives",
                    "Candidate",
                    "Champion",
                    "Baseline",
                    "Δ vs champion",
                    "Gated",
                ],
                rows=[
                    [
                        s.get("column"),
                        s.get("value"),
                        s.get("rows"),
                        s.get("positives"),
                        as_mapping(s.get("metrics")).get("candidate"),
                        as_mapping(s.get("metrics")).get("champion"),
                        as_mapping(s.get("metrics")).get("baseline"),
                        fmt_signed(s.get("delta_vs_champion"))
                        if s.get("delta_vs_champion") is not None
                        else None,
                        "yes" if s.get("gated") else "no",
                    ]
                    for s in map(as_mapping, slices)
                ],
            )
        )
    else:
        blocks.append(_empty("per-slice metrics (spec field 'segment_columns')"))
    points = [as_mapping(p) for p in e.get("operating_point") or []]
    if points:
        blocks.append(
            _Block(
                "p",
                text="Operating threshold: rows scoring at or above it are labelled positive; "
                "precision, recall and the share flagged are on the holdout, at each "
                "model's own threshold (spec field 'evaluation.threshold'):",
            )
        )
        blocks.append(
            _Block(
                "table",
                headers=[
                    "Model",
                    "Threshold",
                    "Precision",
                    "Recall",
                    "Share flagged",
                    "Flagged / positives",
                    "How it was set",
                ],
                rows=[
                    [
                        p.get("model"),
                        p.get("threshold"),
                        p.get("precision"),
                        p.get("recall"),
                        p.get("flagged_share"),
                        f"{p.get('flagged')} / {p.get('positives')}",
                        p.get("how"),
                    ]
                    for p in points
                ],
            )
        )
    latency = e.get("latency_ms")
    if isinstance(latency, Mapping) and latency:
        if all(isinstance(v, Mapping) for v in latency.values()):
            keys = sorted({k for v in latency.values() for k in v})
            blocks.append(
                _Block(
                    "table",
                    headers=["Latency (ms)", *keys],
                    rows=[[role, *(v.get(k) for k in keys)] for role, v in latency.items()],
                )
            )
        else:
            blocks.append(_Block("kv", rows=[(f"Latency {k} (ms)", v) for k, v in latency.items()]))
    return blocks


def _gate_blocks(g: dict) -> list[_Block]:
    if g.get("passed") is None:
        return [_empty("gate decision")]
    blocks = [
        _Block(
            "kv",
            rows=[
                ("Result", _verdict(g.get("passed"))),
                ("Summary", g.get("summary")),
                ("First model (no champion)", g.get("first_model")),
            ],
        )
    ]
    checks = g.get("checks") or []
    if checks:
        blocks.append(
            _Block(
                "table",
                headers=["Check", "Value", "Threshold", "Result", "Reason"],
                rows=[
                    [
                        c.get("name"),
                        c.get("value"),
                        c.get("threshold"),
                        _verdict(c.get("passed")),
                        c.get("reason"),
                    ]
                    for c in map(as_mapping, checks)
                ],
            )
        )
    return blocks


def _list_blocks(items: Any, what: str) -> list[_Block]:
    items = [i for i in items or [] if has_evidence(i)]
    return [_Block("list", rows=items)] if items else [_empty(what)]


def _approval_blocks(approvals: Any, md: dict) -> list[_Block]:
    approvals = [as_mapping(a) for a in approvals or []]
    if not approvals:
        policy = as_mapping(md.get("approval_policy"))
        return [
            _Block(
                "note",
                level="warn",
                text="No approval recorded yet"
                + (f" (policy: {policy.get('policy')})" if policy.get("policy") else "")
                + "; the version must not be promoted before one is attached.",
            )
        ]
    return [
        _Block(
            "table",
            headers=["Decision", "By", "At", "Policy", "Comment"],
            rows=[
                [
                    _Badge(
                        str(a.get("decision")), {"approved": True, "rejected": False}.get(a.get("decision"))
                    ),
                    a.get("by"),
                    a.get("at"),
                    a.get("policy"),
                    a.get("comment"),
                ]
                for a in approvals
            ],
        )
    ]


def _lineage_blocks(lin: dict) -> list[_Block]:
    return [
        _Block(
            "kv",
            rows=[
                ("Git commit", lin.get("git_commit")),
                ("DAG id", lin.get("dag_id")),
                ("DAG run id", lin.get("dag_run_id")),
                ("MLflow run id", lin.get("mlflow_run_id")),
                ("Data fingerprint", lin.get("data_fingerprint")),
                ("Spec hash", lin.get("spec_hash")),
                ("Data path", lin.get("data_path")),
                (
                    "Why this model was trained",
                    lin.get("trigger_reason") or "not recorded (a manual or scheduled run)",
                ),
                ("Drift report behind it", lin.get("drift_report")),
            ],
        )
    ]


def _serving_blocks(sv: dict) -> list[_Block]:
    if not sv:
        return [_empty("the endpoint contract")]
    errors = as_mapping(sv.get("errors"))
    return [
        _Block(
            "kv",
            rows=[
                ("Endpoint", sv.get("endpoint")),
                ("Content type", sv.get("content_type")),
                ("Request", sv.get("request")),
                ("Rows per request", f"1 to {sv.get('max_rows')}"),
                ("Largest body (bytes)", sv.get("max_body_bytes")),
                ("Request id", sv.get("request_id_header")),
                ("Unknown fields", sv.get("unknown_fields")),
                ("Response", sv.get("response")),
                ("Error format", errors.get("format")),
            ],
        ),
        _Block(
            "table",
            headers=["Field", "Type", "Allowed values", "Required", "Description"],
            rows=[
                [
                    f.get("name"),
                    f.get("type"),
                    f.get("allowed"),
                    "yes" if f.get("required") else "no (may be null)",
                    f.get("description"),
                ]
                for f in (as_mapping(x) for x in sv.get("fields") or [])
            ],
        ),
        _Block(
            "table",
            headers=["HTTP status", "When"],
            rows=[[code, when] for code, when in errors.items() if code != "format"],
        ),
    ]


def _stage_text(stage: Mapping) -> str:
    share = stage.get("traffic_percent")
    where = f"{share}% of traffic" if share else "copies of live requests, no traffic"
    return f"{stage.get('name')} ({where}): {stage.get('outcome')}"


def _deployment_blocks(deployments: Any) -> list[_Block]:
    deployments = [as_mapping(d) for d in deployments or []]
    if not deployments:
        return [_Block("p", text="Not deployed yet.")]
    return [
        _Block(
            "table",
            headers=["Date", "Event", "Stages (traffic share: verdict)", "Reason"],
            rows=[
                [
                    d.get("at"),
                    d.get("event"),
                    "; ".join(_stage_text(as_mapping(s)) for s in d.get("stages") or []) or None,
                    d.get("reason") or None,
                ]
                for d in deployments
            ],
        )
    ]


def _monitoring_blocks(m: dict) -> list[_Block]:
    return [
        _Block(
            "kv",
            rows=[
                ("Drift check schedule", m.get("drift_schedule")),
                ("Drifted-feature share that triggers retraining", m.get("drift_share_threshold")),
                ("Retrain cooldown (hours)", m.get("retrain_cooldown_hours")),
                ("Scheduled retraining", m.get("retrain_schedule") or "on demand"),
            ],
        )
    ]


def _compliance_blocks(card: Mapping) -> list[_Block]:
    entries = [as_mapping(e) for e in card.get("compliance") or compliance_entries(card)]
    blocks = [
        _Block(
            "table",
            headers=["Section", "EU AI Act Annex IV", "NIST AI RMF 1.0", "Status"],
            rows=[
                [
                    e.get("section"),
                    ", ".join(map(str, e.get("eu_ai_act_annex_iv") or [])),
                    ", ".join(map(str, e.get("nist_ai_rmf") or [])),
                    _Badge(str(e.get("status")), e.get("status") == "present"),
                ]
                for e in entries
            ],
        )
    ]
    # A legend, once, instead of repeating long titles in every row.
    annex = {i for e in entries for i in e.get("eu_ai_act_annex_iv") or []}
    nist = {i for e in entries for i in e.get("nist_ai_rmf") or []}
    legend = [(f"Annex IV {i}", t) for i, t in ANNEX_IV_ITEMS.items() if i in annex]
    legend += [(i, t) for i, t in NIST_AI_RMF_ITEMS.items() if i in nist]
    if legend:
        blocks.append(_Block("kv", rows=legend))
    not_covered = card.get("compliance_not_covered") or []
    if not_covered:
        blocks.append(
            _Block(
                "note",
                text="Annex IV items outside a model card (system-level documentation of the provider): "
                + "; ".join(
                    f"{as_mapping(n).get('eu_ai_act_annex_iv')} {as_mapping(n).get('title')}"
                    for n in not_covered
                )
                + ".",
            )
        )
    return blocks


# ---- Markdown ----------------------------------------------------------------------------------


def _md_text(value: Any) -> str:
    """User text made inert in Markdown: HTML-escaped, Markdown syntax backslash-escaped, one line."""
    text = str(value).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    # Escape what could start emphasis, code, links or table cells; "_" only at word edges so
    # identifiers like roc_auc stay readable in the raw file.
    text = re.sub(r"[\\`*\[\]|]|(?<!\w)_|_(?!\w)", lambda m: "\\" + m.group(0), text)
    return " ".join(text.split())


def _md_cell(value: Any) -> str:
    if isinstance(value, _Link):
        href = value.href.replace(" ", "%20").replace("(", "%28").replace(")", "%29")
        return f"[{_md_text(value.text)}](<{href.replace('<', '%3C').replace('>', '%3E')}>)"
    if isinstance(value, _Badge):
        mark = {True: "✅ ", False: "❌ ", None: ""}[value.ok]
        return f"{mark}**{_md_text(value.text)}**"
    return _md_text(fmt_value(value))


def render_markdown(card: dict) -> str:
    """The card as Markdown (GitHub-flavoured tables); user text is escaped."""
    title, header, sections = _document(card)
    out = [f"# {_md_text(title)}", ""]
    for block in header:
        out += _md_block(block)
    out += ["## Contents", ""]
    out += [f"- [{s.title}](#{s.id})" for s in sections]
    out.append("")
    for section in sections:
        out += [f"## {section.title}", ""]
        for block in section.blocks:
            out += _md_block(block)
    return "\n".join(out).rstrip() + "\n"


def _md_block(block: _Block) -> list[str]:
    if block.kind == "p":
        return [_md_text(block.text), ""]
    if block.kind == "note":
        prefix = {"bad": "**Warning:** ", "warn": "*Note:* "}.get(block.level, "")
        return [f"> {prefix}{_md_text(block.text)}", ""]
    if block.kind == "list":
        return [*(f"- {_md_text(item)}" for item in block.rows), ""]
    if block.kind == "kv":
        rows = [(k, v) for k, v in block.rows if _has_cell(v)]
        if not rows:
            return []
        return ["| | |", "| --- | --- |", *(f"| **{_md_text(k)}** | {_md_cell(v)} |" for k, v in rows), ""]
    if block.kind == "table":
        lines = [
            "| " + " | ".join(_md_text(h) for h in block.headers) + " |",
            "| " + " | ".join("---" for _ in block.headers) + " |",
        ]
        lines += ["| " + " | ".join(_md_cell(c) for c in row) + " |" for row in block.rows]
        return [*lines, ""]
    raise ValueError(f"unknown block kind {block.kind!r}")


def _has_cell(value: Any) -> bool:
    return isinstance(value, _Link | _Badge) or has_evidence(value)


# ---- HTML --------------------------------------------------------------------------------------

# What only the card has; the rest is platform/reports.py's stylesheet.
_CSS = """
table.kv{width:auto;min-width:50%}
table.kv th{width:16rem}
nav ul{columns:3;padding-left:1.2rem}
footer{margin-top:3rem;color:#57606a;font-size:.85em}
"""

_HTML_TEMPLATE = """{%- macro cell(c) -%}
  {%- if c is link -%}<a href="{{ c.href }}">{{ c.text }}</a>
  {%- elif c is badge -%}
    <span class="badge {{ {True: 'ok', False: 'bad'}.get(c.ok, 'na') }}">{{ c.text }}</span>
  {%- else -%}{{ c | fmt }}{%- endif -%}
{%- endmacro -%}
{%- macro render(b) -%}
  {%- if b.kind == "p" %}<p>{{ b.text }}</p>
  {%- elif b.kind == "note" %}<div class="note {{ b.level }}">{{ b.text }}</div>
  {%- elif b.kind == "list" %}<ul>{% for i in b.rows %}<li>{{ i }}</li>{% endfor %}</ul>
  {%- elif b.kind == "kv" %}{% set rows = b.rows | selectattr(1, "shown") | list %}{% if rows %}
<table class="kv">{% for k, v in rows %}<tr><th>{{ k }}</th><td>{{ cell(v) }}</td></tr>{% endfor %}</table>
  {%- endif %}
  {%- elif b.kind == "table" %}
<table><thead><tr>{% for h in b.headers %}<th>{{ h }}</th>{% endfor %}</tr></thead>
<tbody>{% for row in b.rows %}<tr>
  {%- for c in row %}<td{% if c is number_cell %} class="num"{% endif %}>{{ cell(c) }}</td>{% endfor %}</tr>
{% endfor %}</tbody></table>
  {%- endif -%}
{%- endmacro %}
<h1>{{ title }}</h1>
{% for b in header %}{{ render(b) }}
{% endfor %}
<nav><ul>{% for s in sections %}<li><a href="#{{ s.id }}">{{ s.title }}</a></li>{% endfor %}</ul></nav>
{% for s in sections %}
<section id="{{ s.id }}">
<h2>{{ s.title }}</h2>
{% for b in s.blocks %}{{ render(b) }}
{% endfor %}
</section>
{% endfor %}
<footer>Model card schema v{{ schema_version }}; generated {{ generated_at }}.</footer>
"""


def _html_env() -> jinja2.Environment:
    env = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined)
    env.filters["fmt"] = fmt_value
    env.tests["link"] = lambda c: isinstance(c, _Link)
    env.tests["badge"] = lambda c: isinstance(c, _Badge)
    env.tests["shown"] = _has_cell
    env.tests["number_cell"] = lambda c: isinstance(c, int | float) and not isinstance(c, bool)
    return env


def render_html(card: dict) -> str:
    """The card as one self-contained HTML page (inline CSS, no scripts); user text is escaped."""
    title, header, sections = _document(card)
    body = (
        _html_env()
        .from_string(_HTML_TEMPLATE)
        .render(
            title=title,
            header=header,
            sections=sections,
            schema_version=card.get("schema_version", CARD_SCHEMA_VERSION),
            generated_at=card.get("generated_at") or "—",
        )
    )
    return reports.page(title, body, css=_CSS)
