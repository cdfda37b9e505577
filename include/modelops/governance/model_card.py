"""Model cards: the evidence a model-risk reviewer or auditor reads before a version is promoted.

A card is built from the model spec plus plain dicts the caller collected from MLflow and
Airflow (run, validation result, evaluation report, gate decision, approvals, lineage, GPU
telemetry, rollout history). It is a JSON-serialisable dict, rendered as JSON, Markdown and a
self-contained HTML page (inline CSS, no external resources), and it maps every section to the
EU AI Act Annex IV technical-documentation items and the NIST AI RMF 1.0 subcategories it
provides evidence for. ``check_evidence`` refuses a card that lacks what the model's risk tier
requires, naming the spec field or evidence to supply.

Only the standard library and jinja2 are imported, so DAG files and operators can import this
module at parse time.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from include.modelops.governance.card_render import render_html, render_markdown
from include.modelops.governance.card_schema import (
    CARD_SCHEMA_VERSION,
    as_mapping,
    as_number,
    as_timestamp,
    first_of,
    fmt_value,
    jsonable,
    now_iso,
    plain_value,
)
from include.modelops.governance.compliance import (
    ANNEX_IV_ITEMS,
    ANNEX_IV_NOT_COVERED,
    compliance_entries,
    missing_evidence,
)
from include.modelops.metrics_catalog import METRICS
from include.modelops.platform.storage import write_atomic
from include.modelops.platform.tags import TAG_MODEL_CARD, TAG_MODEL_CARD_GENERATED_AT

if TYPE_CHECKING:
    from include.modelops.spec import ModelSpec

# --------------------------------------------------------------------------------------------
# Building the card
# --------------------------------------------------------------------------------------------


def build_card(
    spec: ModelSpec,
    *,
    model_name: str,
    version: str | None,
    run: dict,
    validation: dict | None,
    evaluation: dict | None,
    decision: dict | None,
    approvals: list[dict] = (),
    lineage: dict | None = None,
    telemetry: dict | None = None,
    deployments: list[dict] = (),
    links: dict | None = None,
    generated_at: str | None = None,
) -> dict:
    """Assemble a model card from the spec and the evidence collected for one model version.

    Every input other than ``spec`` may be partial; missing keys become ``None`` or empty
    sections, which ``missing_evidence`` then reports.

    Args:
        spec: The model's spec (descriptive fields feed the card).
        model_name: Registered model name.
        version: Registered version, or None when the card is built before registration.
        run: The MLflow training run: ``run_id``, ``params``, ``metrics``, ``tags``, ``start_time``.
        validation: The data-validation result, or None if validation did not run.
        evaluation: The evaluation report (candidate/champion/baseline, comparison, slices).
        decision: The gate decision (``passed``, ``summary``, ``checks``).
        approvals: Approval records (``decision``, ``by``, ``at``, ``comment``, ``policy``).
        lineage: Commit, DAG and run ids, data fingerprint, spec hash, data path.
        telemetry: GPU telemetry of the training run (devices, GPU-hours, energy, peak memory).
        deployments: Deployment history, oldest first: ``at``, ``event`` (e.g. promoted, rolled back),
            ``stages`` (``name``, ``traffic_percent``, ``outcome``) and ``reason``.
        links: URLs to the MLflow run/version, the Airflow DAG run and the reports.
        generated_at: ISO timestamp of the card; now (UTC) when omitted.

    Returns:
        The card: a JSON-serialisable dict whose sections are listed in ``SECTIONS``, plus
        ``compliance`` (one entry per section) and ``missing_evidence`` for the spec's risk tier.
    """
    run = as_mapping(run)
    validation = as_mapping(validation) if validation is not None else None
    evaluation = as_mapping(evaluation) if evaluation is not None else None
    decision = as_mapping(decision) if decision is not None else None
    lineage_in = as_mapping(lineage)
    telemetry = as_mapping(telemetry) if telemetry else None
    links_in = as_mapping(links)
    run_tags = as_mapping(run.get("tags"))
    risk_tier = plain_value(spec.risk_tier)

    fingerprint = first_of(
        lineage_in.get("data_fingerprint"),
        run_tags.get("data_fingerprint"),
        (validation or {}).get("fingerprint"),
    )
    run_id = first_of(run.get("run_id"), lineage_in.get("mlflow_run_id"))

    card: dict[str, Any] = {
        "schema_version": CARD_SCHEMA_VERSION,
        "model_name": model_name,
        "version": None if version is None else str(version),
        "risk_tier": risk_tier,
        "generated_at": generated_at or now_iso(),
        "links": {k: v for k, v in links_in.items() if v},
        "model_details": _model_details(spec, model_name, version, run),
        "intended_use": {
            "intended_use": (spec.intended_use or "").strip(),
            "out_of_scope_uses": [u for u in spec.out_of_scope_uses if u.strip()],
        },
        "data": _data_section(spec, validation, lineage_in, fingerprint),
        "data_validation": _validation_section(validation, links_in),
        "training": _training_section(spec, run, telemetry),
        "evaluation": _evaluation_section(spec, evaluation, links_in),
        "gate_decision": _decision_section(decision),
        "limitations": [x for x in spec.limitations if x.strip()],
        "ethical_considerations": [x for x in spec.ethical_considerations if x.strip()],
        "approvals": [_approval(a) for a in approvals],
        "lineage": {
            "git_commit": first_of(lineage_in.get("git_commit"), run_tags.get("git_commit")),
            "dag_id": first_of(lineage_in.get("dag_id"), spec.dag_id),
            "dag_run_id": first_of(lineage_in.get("dag_run_id"), run_tags.get("dag_run_id")),
            "mlflow_run_id": run_id,
            "data_fingerprint": fingerprint,
            "spec_hash": first_of(lineage_in.get("spec_hash"), spec.spec_hash()),
            "data_path": first_of(lineage_in.get("data_path"), spec.data.path),
            "trigger_reason": lineage_in.get("trigger_reason"),
            "drift_report": lineage_in.get("drift_report"),
        },
        "serving": _serving_section(spec, evaluation),
        "deployment_history": [_deployment(d) for d in deployments],
        "monitoring": {
            "drift_schedule": spec.monitoring.drift_schedule,
            "drift_share_threshold": spec.monitoring.drift_share_threshold,
            "retrain_cooldown_hours": spec.monitoring.retrain_cooldown_hours,
            "retrain_schedule": spec.schedule,
        },
    }
    card = jsonable(card)
    card["compliance"] = compliance_entries(card)
    card["compliance_not_covered"] = [
        {"eu_ai_act_annex_iv": item, "title": ANNEX_IV_ITEMS[item]} for item in ANNEX_IV_NOT_COVERED
    ]
    card["missing_evidence"] = missing_evidence(card, risk_tier)
    return card


def _model_details(spec: ModelSpec, model_name: str, version: str | None, run: dict) -> dict:
    return {
        "name": model_name,
        "version": None if version is None else str(version),
        "description": (spec.description or "").strip(),
        "task": plain_value(spec.task),
        "owner": {"team": spec.owner.team, "email": spec.owner.email},
        "risk_tier": plain_value(spec.risk_tier),
        "framework": spec.training.framework,
        "created": as_timestamp(run.get("start_time")),
        "approval_policy": {
            "policy": spec.approval.policy,
            "approvers": list(spec.approval.approvers),
            "timeout_hours": spec.approval.timeout_hours,
        },
        "tags": list(spec.tags),
    }


def _data_section(spec: ModelSpec, validation: dict | None, lineage: dict, fingerprint: Any) -> dict:
    stats = as_mapping((validation or {}).get("statistics"))
    time_range = _time_range(stats, spec.time_column)
    partitions = first_of(stats.get("partitions"), stats.get("files"), stats.get("partition_count"))
    if isinstance(partitions, list | tuple):  # a list of partition files: its length is the count
        partitions = len(partitions)
    return {
        "path": spec.data.path,
        "resolved_path": lineage.get("data_path"),
        "format": spec.data.format,
        "min_rows": spec.data.min_rows,
        "fingerprint": fingerprint,
        "rows": first_of((validation or {}).get("rows"), stats.get("rows")),
        "partitions": partitions,
        "time_column": spec.time_column,
        "time_range": time_range,
        "entity_id": spec.entity_id,
        "segment_columns": list(spec.segment_columns),
        "holdout_fraction": spec.split.holdout_fraction,
        "split_seed": spec.split.seed,
        "features": [
            {
                "name": f.name,
                "type": plain_value(f.type),
                "constraints": _constraints(f),
                "min": f.min,
                "max": f.max,
                "categories": list(f.categories) if f.categories else None,
                "max_null_fraction": f.max_null_fraction,
                "description": (f.description or "").strip(),
            }
            for f in spec.features
        ],
        "target": {
            "name": spec.target.name,
            "classes": list(spec.target.classes) if spec.target.classes is not None else None,
        },
    }


def _constraints(feature: Any) -> str:
    kind = plain_value(feature.type)
    if kind == "categorical":
        parts = ["one of: " + ", ".join(feature.categories or [])]
    elif kind == "boolean":
        parts = ["true/false"]
    elif feature.min is not None and feature.max is not None:
        parts = [f"{fmt_value(feature.min)} ≤ value ≤ {fmt_value(feature.max)}"]
    elif feature.min is not None:
        parts = [f"≥ {fmt_value(feature.min)}"]
    elif feature.max is not None:
        parts = [f"≤ {fmt_value(feature.max)}"]
    else:
        parts = ["any value"]
    nulls = feature.max_null_fraction
    parts.append("no nulls" if not nulls else f"nulls ≤ {nulls:.0%}")
    return "; ".join(parts)


def _time_range(stats: dict, time_column: str | None) -> dict | None:
    raw = stats.get("time_range")
    if raw is None and (stats.get("time_min") is not None or stats.get("time_max") is not None):
        raw = {"min": stats.get("time_min"), "max": stats.get("time_max")}
    if raw is None and time_column and isinstance(stats.get(time_column), Mapping):
        col = stats[time_column]
        raw = {"min": col.get("min"), "max": col.get("max")}
    if isinstance(raw, Mapping):
        lo, hi = first_of(raw.get("min"), raw.get("start")), first_of(raw.get("max"), raw.get("end"))
    elif isinstance(raw, list | tuple) and len(raw) == 2:
        lo, hi = raw
    else:
        return None
    return {"min": as_timestamp(lo), "max": as_timestamp(hi)}


def _validation_section(validation: dict | None, links: dict) -> dict:
    if validation is None:
        return {"ran": False, "success": None, "summary": None, "rows": None, "failed": [], "report": None}
    failed = [
        {
            "expectation": as_mapping(f).get("expectation"),
            "column": as_mapping(f).get("column"),
            "observed": as_mapping(f).get("observed"),
        }
        for f in validation.get("failed") or []
    ]
    warned = [
        {
            "expectation": as_mapping(f).get("expectation"),
            "column": as_mapping(f).get("column"),
            "observed": as_mapping(f).get("observed"),
        }
        for f in validation.get("warnings") or []
    ]
    return {
        "ran": True,
        "success": validation.get("success"),
        "summary": validation.get("summary"),
        "rows": validation.get("rows"),
        "failed": failed,
        "warnings": warned,
        "statistics": as_mapping(validation.get("statistics")),
        "report": first_of(links.get("validation_report"), validation.get("report_html")),
    }


def _training_section(spec: ModelSpec, run: dict, telemetry: dict | None) -> dict:
    run_params = as_mapping(run.get("params"))
    return {
        "framework": spec.training.framework,
        "backend": spec.training.backend,
        "params": run_params or dict(spec.training.params),
        "params_source": "mlflow run" if run_params else "spec",
        "run_metrics": as_mapping(run.get("metrics")),
        "mlflow_run_id": run.get("run_id"),
        "started": as_timestamp(run.get("start_time")),
        "hardware": _hardware(spec, telemetry),
    }


def _hardware(spec: ModelSpec, telemetry: dict | None) -> dict:
    training = spec.training
    hw: dict[str, Any] = {
        "backend": training.backend,
        "gpus_requested": training.gpus,
        "cpu": training.cpu if training.backend == "kubernetes" else None,
        "memory": training.memory if training.backend == "kubernetes" else None,
        "telemetry_recorded": bool(telemetry),
        "devices": [],
        "gpu_hours": None,
        "energy_wh": None,
        "peak_memory_mb": None,
        "mean_utilization_pct": None,
    }
    if telemetry:
        names = [_device_name(d) for d in telemetry.get("devices") or []]
        hw.update(
            devices=names,
            gpu_hours=telemetry.get("gpu_hours"),
            energy_wh=telemetry.get("energy_wh"),
            peak_memory_mb=telemetry.get("peak_memory_mb"),
            mean_utilization_pct=telemetry.get("mean_utilization_pct"),
        )
    hw["accelerator"] = "GPU" if hw["devices"] or hw["gpu_hours"] else "CPU"
    hw["summary"] = _hardware_summary(hw)
    return hw


def _device_name(device: Any) -> str:
    if isinstance(device, Mapping):
        return str(first_of(device.get("name"), device.get("model"), device.get("uuid"), "unknown GPU"))
    return str(device)


def _hardware_summary(hw: dict) -> str:
    if hw["accelerator"] == "CPU":
        if hw["gpus_requested"]:
            return (
                f"{hw['gpus_requested']} GPU(s) requested, but no GPU telemetry was recorded; "
                "devices and energy use are unknown"
            )
        return f"CPU only (training.backend: {hw['backend']}); no GPU used, no GPU telemetry recorded"
    parts = []
    if hw["devices"]:
        parts.append(", ".join(f"{n} × {name}" for name, n in Counter(hw["devices"]).items()))
    if hw["gpu_hours"] is not None:
        parts.append(f"{fmt_value(hw['gpu_hours'])} GPU-hours")
    if hw["energy_wh"] is not None:
        parts.append(f"{fmt_value(hw['energy_wh'])} Wh")
    if hw["peak_memory_mb"] is not None:
        parts.append(f"peak GPU memory {fmt_value(hw['peak_memory_mb'])} MB")
    if hw["mean_utilization_pct"] is not None:
        parts.append(f"mean utilisation {fmt_value(hw['mean_utilization_pct'])}%")
    return "GPU: " + "; ".join(parts)


def _evaluation_section(spec: ModelSpec, evaluation: dict | None, links: dict) -> dict:
    task = plain_value(spec.task)
    primary = spec.evaluation.primary_metric
    slice_min_rows = spec.evaluation.gate.slices.min_rows
    if evaluation is None:
        return {
            "task": task,
            "primary_metric": primary,
            "rows": None,
            "models": {},
            "metrics": [],
            "comparison": None,
            "slices": [],
            "slice_min_rows": slice_min_rows,
            "latency_ms": None,
            "operating_point": [],
            "report": links.get("evaluation_report"),
        }
    task = evaluation.get("task") or task
    primary = evaluation.get("primary_metric") or primary
    raw_models = as_mapping(evaluation.get("models"))
    models: dict[str, dict] = {}
    for role in ("candidate", "champion", "baseline"):
        m = raw_models.get(role)
        if m:
            m = as_mapping(m)
            models[role] = {
                "version": m.get("version"),
                "description": m.get("description"),
                "metrics": as_mapping(m.get("metrics")),
            }
    return {
        "task": task,
        "primary_metric": primary,
        "higher_is_better": METRICS.get(task, {}).get(primary),
        "rows": evaluation.get("rows"),
        "models": models,
        "metrics": _metric_rows(spec, task, primary, models),
        "comparison": _comparison(evaluation.get("comparison"), task),
        "slices": [_slice(s, slice_min_rows) for s in evaluation.get("slices") or []],
        "slice_min_rows": slice_min_rows,
        "latency_ms": evaluation.get("latency_ms"),
        "operating_point": _operating_points(evaluation),
        "report": links.get("evaluation_report"),
    }


def _operating_points(evaluation: Mapping) -> list[dict]:
    """Binary: per model, the decision threshold it serves with, how it was set, and the holdout's
    precision, recall and share of rows flagged positive at it (the evaluation's ``operating_point``)."""
    from include.modelops.evaluation.threshold import describe

    rows = []
    for role, point in as_mapping(evaluation.get("operating_point")).items():
        if not point:
            continue
        point = as_mapping(point)
        choice = as_mapping(point.get("choice"))
        rows.append(
            {
                "model": role,
                "threshold": point.get("threshold"),
                "policy": choice.get("policy") or "fixed",
                "target": choice.get("target"),
                "target_met": choice.get("target_met"),
                "how": describe(choice),
                "precision": point.get("precision"),
                "recall": point.get("recall"),
                "flagged_share": point.get("flagged_share"),
                "flagged": point.get("flagged"),
                "positives": point.get("positives"),
            }
        )
    return rows


def _metric_rows(spec: ModelSpec, task: str, primary: str, models: dict) -> list[dict]:
    catalog = METRICS.get(task, {})
    seen = [primary] if primary else []
    for m in models.values():
        seen += [k for k in m["metrics"] if k not in seen]
    # Primary first, then catalogue order, then anything else the evaluator logged.
    order = {name: i for i, name in enumerate(catalog)}
    names = seen[:1] + sorted(seen[1:], key=lambda n: (order.get(n, len(order)), n))
    thresholds = spec.evaluation.gate.thresholds
    rows = []
    for name in names:
        bound = thresholds.get(name)
        rows.append(
            {
                "metric": name,
                "primary": name == primary,
                "higher_is_better": catalog.get(name),
                "candidate": models.get("candidate", {}).get("metrics", {}).get(name),
                "champion": models.get("champion", {}).get("metrics", {}).get(name),
                "baseline": models.get("baseline", {}).get("metrics", {}).get(name),
                "gate_bound": _bound_text(bound) if bound else None,
            }
        )
    return rows


def _bound_text(bound: Any) -> str | None:
    parts = []
    if bound.min is not None:
        parts.append(f"≥ {fmt_value(bound.min)}")
    if bound.max is not None:
        parts.append(f"≤ {fmt_value(bound.max)}")
    return " and ".join(parts) or None


def _comparison(raw: Any, task: str) -> dict | None:
    if not raw:
        return None
    c = as_mapping(raw)
    out = {k: c.get(k) for k in ("metric", "diff", "ci_low", "ci_high", "candidate", "champion")}
    out.update({k: v for k, v in c.items() if k not in out})
    lo, hi = as_number(out["ci_low"]), as_number(out["ci_high"])
    out["ci_excludes_zero"] = None if lo is None or hi is None else (lo > 0 or hi < 0)
    out["higher_is_better"] = METRICS.get(task, {}).get(out["metric"])
    return out


def _slice(raw: Any, min_rows: int) -> dict:
    s = as_mapping(raw)
    metrics = as_mapping(s.get("metrics"))
    cand, champ = as_number(metrics.get("candidate")), as_number(metrics.get("champion"))
    rows = as_number(s.get("rows"))
    return {
        "column": s.get("column"),
        "value": s.get("value"),
        "rows": s.get("rows"),
        "positives": s.get("positives"),
        "metrics": {
            "candidate": metrics.get("candidate"),
            "champion": metrics.get("champion"),
            "baseline": metrics.get("baseline"),
        },
        "delta_vs_champion": None if cand is None or champ is None else cand - champ,
        # Small slices are reported but not gated (spec: evaluation.gate.slices.min_rows).
        "gated": rows is not None and rows >= min_rows,
    }


def _decision_section(decision: dict | None) -> dict:
    if decision is None:
        return {"passed": None, "first_model": None, "summary": None, "checks": [], "failed_checks": []}
    checks = [
        {
            "name": as_mapping(c).get("name"),
            "value": as_mapping(c).get("value"),
            "threshold": as_mapping(c).get("threshold"),
            "passed": as_mapping(c).get("passed"),
            "reason": as_mapping(c).get("reason"),
        }
        for c in decision.get("checks") or []
    ]
    return {
        "passed": decision.get("passed"),
        "first_model": decision.get("first_model"),
        "summary": decision.get("summary"),
        "checks": checks,
        "failed_checks": [c["name"] for c in checks if c["passed"] is False],
    }


def _approval(raw: Any) -> dict:
    a = as_mapping(raw)
    return {
        "decision": a.get("decision"),
        "by": a.get("by"),
        "at": as_timestamp(a.get("at")),
        "comment": a.get("comment"),
        "policy": a.get("policy"),
    }


def _serving_section(spec: ModelSpec, evaluation: dict | None = None) -> dict:
    from include.modelops.serving.contract import endpoint_contract

    # The version's own threshold (the evaluation's candidate), which its bento labels with.
    point = as_mapping(as_mapping(as_mapping(evaluation).get("operating_point")).get("candidate"))
    return endpoint_contract(spec, threshold=point.get("threshold"))


def _deployment(raw: Any) -> dict:
    """One deployment event: when, what happened, the stages it went through, and why.

    A bare stage (``stage``, ``traffic_percent``, ``outcome``) is an event with that one stage.
    """
    d = as_mapping(raw)
    stages = d.get("stages")
    if stages is None and d.get("stage") is not None:
        stages = [
            {"name": d.get("stage"), "traffic_percent": d.get("traffic_percent"), "outcome": d.get("outcome")}
        ]
    return {
        "at": as_timestamp(d.get("at")),
        "event": d.get("event") or d.get("stage"),
        "stages": [
            {
                "name": as_mapping(s).get("name"),
                "traffic_percent": as_mapping(s).get("traffic_percent"),
                "outcome": as_mapping(s).get("outcome"),
            }
            for s in stages or []
        ],
        "reason": d.get("reason") or "",
    }


def with_deployment_history(
    card: Mapping, deployments: Iterable[Mapping], *, generated_at: str | None = None
) -> dict:
    """The card with its deployment history replaced (a rollout ended, a promotion was taken back).

    Every other section keeps the evidence it was built with; the compliance status and the
    missing evidence are worked out again.
    """
    out = dict(card)
    out["deployment_history"] = jsonable([_deployment(d) for d in deployments])
    out["generated_at"] = generated_at or now_iso()
    out["compliance"] = compliance_entries(out)
    out["missing_evidence"] = missing_evidence(out, str(out.get("risk_tier") or "medium"))
    return out


# --------------------------------------------------------------------------------------------
# Writing
# --------------------------------------------------------------------------------------------


def write_card(card: dict, out_dir: Path) -> dict[str, str]:
    """Write ``model_card.json``, ``model_card.md`` and ``model_card.html`` into ``out_dir``.

    Each file is written to a temporary name and renamed, so a retried task never leaves a
    half-written card behind.

    Returns:
        ``{"json": path, "markdown": path, "html": path}`` (absolute paths as strings).
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    contents = {
        "json": ("model_card.json", json.dumps(card, indent=2, sort_keys=False, allow_nan=False) + "\n"),
        "markdown": ("model_card.md", render_markdown(card)),
        "html": ("model_card.html", render_html(card)),
    }
    paths: dict[str, str] = {}
    for key, (filename, text) in contents.items():
        target = write_atomic(out_dir / filename, text)
        paths[key] = str(target.resolve())
    return paths


def card_dir(model: str, version: str) -> Path:
    """The folder of a version's one local card: ``<state>/model_cards/<model>/v<version>``.

    Every regeneration (the training DAG's two, each deployment event's) rewrites it through
    :func:`publish_card`, so it is always the card the registry points at.
    """
    from include.modelops.settings import get_settings

    return get_settings().state_dir / "model_cards" / model / f"v{version}"


def publish_card(card: dict, *, model: str, version: str, run_id: str | None) -> dict[str, str]:
    """The one writer of a version's card: the local copy, then the same files in MLflow.

    Writes ``model_card.{json,md,html}`` into :func:`card_dir`, logs those very files to the
    version's run (artifact folder ``model_card``) and points the version tags
    ``modelops.model_card`` / ``modelops.model_card.generated_at`` at them; the local copy and
    the MLflow artifact are therefore the same bytes. A version without a run keeps the local
    copy only.

    Returns:
        The local paths (as :func:`write_card`).
    """
    from include.modelops.platform import tracking

    paths = write_card(card, card_dir(model, version))
    if run_id:
        for path in paths.values():
            tracking.log_file(run_id, path, "model_card")
        tracking.set_version_tags(
            model,
            version,
            {
                TAG_MODEL_CARD: f"runs:/{run_id}/model_card/model_card.html",
                TAG_MODEL_CARD_GENERATED_AT: tracking.now_iso(),
            },
        )
    return paths
