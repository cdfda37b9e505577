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

import datetime as dt
import json
import math
import os
import re
import tempfile
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Any

import jinja2

from include.modelops.metrics_catalog import METRICS

if TYPE_CHECKING:
    from include.modelops.spec import ModelSpec

CARD_SCHEMA_VERSION = 1

# The card's sections in reading order (``compliance`` describes the others and is not listed).
SECTIONS: tuple[str, ...] = (
    "model_details",
    "intended_use",
    "data",
    "data_validation",
    "training",
    "evaluation",
    "gate_decision",
    "limitations",
    "ethical_considerations",
    "approvals",
    "lineage",
    "serving",
    "deployment_history",
    "monitoring",
)

# EU AI Act (Regulation (EU) 2024/1689), Annex IV: technical documentation referred to in
# Article 11(1). Nine items; items 1 and 2 have sub-points (a)-(h). Titles are paraphrased.
ANNEX_IV_ITEMS: dict[str, str] = {
    "1(a)": "Intended purpose, provider, version and its relation to previous versions",
    "1(b)": "Interaction with hardware or software (incl. other AI systems) outside the system",
    "1(c)": "Versions of relevant software or firmware; version-update requirements",
    "1(d)": "Forms in which the system is placed on the market or put into service",
    "1(e)": "Hardware on which the system is intended to run",
    "1(f)": "Photographs/markings of products the system is a component of",
    "1(g)": "Basic description of the user interface provided to the deployer",
    "1(h)": "Instructions for use for the deployer",
    "2(a)": "Methods and steps performed for the development of the system",
    "2(b)": "Design specifications: general logic, key design choices and assumptions, what the system "
    "optimises for, relevance of parameters, expected output quality, trade-offs",
    "2(c)": "System architecture; computational resources used to develop, train, test and validate",
    "2(d)": "Data requirements: datasheets on training data (provenance, scope, characteristics, "
    "selection, labelling, cleaning)",
    "2(e)": "Assessment of the human oversight measures needed (Article 14)",
    "2(f)": "Pre-determined changes to the system and its performance",
    "2(g)": "Validation and testing procedures, data and metrics (accuracy, robustness, discriminatory "
    "impacts); dated and signed test logs and reports",
    "2(h)": "Cybersecurity measures",
    "3": "Monitoring, functioning and control: capabilities and limitations, accuracy for groups of "
    "persons, foreseeable unintended outcomes and risks, human oversight, input-data specifications",
    "4": "Appropriateness of the performance metrics for the specific system",
    "5": "Risk management system (Article 9)",
    "6": "Relevant changes made by the provider to the system through its lifecycle",
    "7": "Harmonised standards applied (or other solutions adopted)",
    "8": "Copy of the EU declaration of conformity (Article 47)",
    "9": "System to evaluate performance in the post-market phase, incl. the post-market monitoring "
    "plan (Article 72)",
}

# Items a model card cannot evidence: they describe the whole AI system, the provider's
# organisation or the conformity procedure. Listed on the card so an auditor sees the boundary.
ANNEX_IV_NOT_COVERED: tuple[str, ...] = ("1(b)", "1(d)", "1(e)", "1(f)", "1(g)", "2(h)", "5", "7", "8")

# NIST AI RMF 1.0 subcategories referenced below (titles paraphrased). Mostly MEASURE; MAP 1.1
# and MAP 2.2 are added where they, not a MEASURE item, are the exact home of the evidence.
NIST_AI_RMF_ITEMS: dict[str, str] = {
    "MAP 1.1": "Intended purposes, context of use and deployment settings are understood and documented",
    "MAP 2.2": "The system's knowledge limits and how humans use and oversee its output are documented",
    "MEASURE 1.1": "Approaches and metrics for measuring the mapped AI risks are selected and documented",
    "MEASURE 1.3": "Experts who are not front-line developers take part in assessments",
    "MEASURE 2.1": "Test sets, metrics and details of the TEVV tools are documented",
    "MEASURE 2.3": "Performance is measured and demonstrated for conditions similar to deployment",
    "MEASURE 2.4": "Functionality and behaviour are monitored in production",
    "MEASURE 2.5": "The system is demonstrated valid and reliable; limits of generalisability are documented",
    "MEASURE 2.8": "Transparency and accountability risks are examined and documented",
    "MEASURE 2.10": "Privacy risk is examined and documented",
    "MEASURE 2.11": "Fairness and bias are evaluated and the results documented",
    "MEASURE 2.12": "Environmental impact and sustainability of training are assessed and documented",
    "MEASURE 3.1": "Existing, unanticipated and emergent risks are tracked from performance in deployment",
    "MEASURE 4.2": "Results in the deployment context are validated with domain experts and AI actors",
    "MEASURE 4.3": "Measurable performance improvements or declines are identified and documented",
}

# section -> (Annex IV items, NIST AI RMF subcategories) it provides evidence for.
COMPLIANCE_MAP: dict[str, tuple[list[str], list[str]]] = {
    # Name, version, provider/owner and framework version: the general description.
    "model_details": (["1(a)", "1(c)"], ["MEASURE 2.8"]),
    # Intended purpose and out-of-scope uses are what the deployer's instructions must state.
    "intended_use": (["1(a)", "1(h)", "3"], ["MAP 1.1", "MEASURE 2.5"]),
    # The datasheet: location, format, fingerprint, features with constraints, target.
    "data": (["2(d)", "3"], ["MEASURE 2.1"]),
    # Expectation suite results are the data-cleaning/outlier evidence and a dated test log.
    "data_validation": (["2(d)", "2(g)"], ["MEASURE 2.1", "MEASURE 2.5"]),
    # Methods, hyper-parameters (design choices), compute used, energy.
    "training": (["2(a)", "2(b)", "2(c)"], ["MEASURE 2.12"]),
    # Metrics vs champion and a naive baseline, CI, per-slice results (groups of persons).
    "evaluation": (["2(g)", "3", "4"], ["MEASURE 2.1", "MEASURE 2.3", "MEASURE 2.5", "MEASURE 2.11"]),
    # The promotion rules (why these metrics and bounds) and their dated outcome.
    "gate_decision": (["2(g)", "4"], ["MEASURE 1.1", "MEASURE 2.3", "MEASURE 2.5"]),
    "limitations": (["3"], ["MAP 2.2", "MEASURE 2.5"]),
    "ethical_considerations": (["2(b)", "3"], ["MEASURE 2.10", "MEASURE 2.11"]),
    # Who approved, when and why: human oversight, and the signature on the test reports.
    "approvals": (["2(e)", "2(g)"], ["MEASURE 1.3", "MEASURE 4.2"]),
    # Commit, DAG run, MLflow run, data fingerprint, spec hash: how this version was made.
    "lineage": (["1(a)", "2(a)", "6"], ["MEASURE 2.8", "MEASURE 3.1"]),
    # The endpoint contract: the input-data specification and instructions for calling the model.
    "serving": (["1(h)", "3"], ["MAP 1.1", "MEASURE 2.4"]),
    "deployment_history": (["6", "9"], ["MEASURE 2.4", "MEASURE 3.1", "MEASURE 4.3"]),
    # Drift checks and retraining policy: pre-determined changes and post-market monitoring.
    "monitoring": (["2(f)", "3", "9"], ["MEASURE 2.4", "MEASURE 3.1"]),
}

# What each risk tier must show before promotion. Entries are card sections, or
# "section.part" where one part of a section is what matters.
#   low:    a gate decision backed by evaluation results, and what was evaluated.
#   medium: a reviewer must also know what the model is for, on which data it was trained, that
#           the data passed validation, and how to reproduce it (lineage) -- Annex IV 1(a), 2(d),
#           2(g) and the traceability every promotion relies on.
#   high:   Annex IV 3 asks for limitations, foreseeable misuse and risks to fundamental rights,
#           and 2(g)/3 for accuracy on groups of persons, so out-of-scope uses, limitations,
#           ethical considerations and per-slice metrics must be filled in.
# Approvals are never required here: the card is built before the approval step and is the
# evidence the approver reads; the approval record is attached to the version afterwards.
REQUIRED_SECTIONS: dict[str, list[str]] = {
    "low": ["model_details", "evaluation", "gate_decision"],
    "medium": [
        "model_details",
        "evaluation",
        "gate_decision",
        "intended_use",
        "data",
        "data_validation",
        "lineage",
    ],
    "high": [
        "model_details",
        "evaluation",
        "gate_decision",
        "intended_use",
        "data",
        "data_validation",
        "lineage",
        "intended_use.out_of_scope_uses",
        "limitations",
        "ethical_considerations",
        "evaluation.slices",
    ],
}


class MissingEvidenceError(Exception):
    """A model card lacks evidence its risk tier requires; the message lists each gap and the fix."""

    def __init__(self, message: str, missing: list[str]):
        super().__init__(message)
        self.missing = missing


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
    run = _mapping(run)
    validation = _mapping(validation) if validation is not None else None
    evaluation = _mapping(evaluation) if evaluation is not None else None
    decision = _mapping(decision) if decision is not None else None
    lineage_in = _mapping(lineage)
    telemetry = _mapping(telemetry) if telemetry else None
    links_in = _mapping(links)
    run_tags = _mapping(run.get("tags"))
    risk_tier = _value(spec.risk_tier)

    fingerprint = _first(
        lineage_in.get("data_fingerprint"),
        run_tags.get("data_fingerprint"),
        (validation or {}).get("fingerprint"),
    )
    run_id = _first(run.get("run_id"), lineage_in.get("mlflow_run_id"))

    card: dict[str, Any] = {
        "schema_version": CARD_SCHEMA_VERSION,
        "model_name": model_name,
        "version": None if version is None else str(version),
        "risk_tier": risk_tier,
        "generated_at": generated_at or _now(),
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
            "git_commit": _first(lineage_in.get("git_commit"), run_tags.get("git_commit")),
            "dag_id": _first(lineage_in.get("dag_id"), spec.dag_id),
            "dag_run_id": _first(lineage_in.get("dag_run_id"), run_tags.get("dag_run_id")),
            "mlflow_run_id": run_id,
            "data_fingerprint": fingerprint,
            "spec_hash": _first(lineage_in.get("spec_hash"), spec.spec_hash()),
            "data_path": _first(lineage_in.get("data_path"), spec.data.path),
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
    card = _jsonable(card)
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
        "task": _value(spec.task),
        "owner": {"team": spec.owner.team, "email": spec.owner.email},
        "risk_tier": _value(spec.risk_tier),
        "framework": spec.training.framework,
        "created": _timestamp(run.get("start_time")),
        "approval_policy": {
            "policy": spec.approval.policy,
            "approvers": list(spec.approval.approvers),
            "timeout_hours": spec.approval.timeout_hours,
        },
        "tags": list(spec.tags),
    }


def _data_section(spec: ModelSpec, validation: dict | None, lineage: dict, fingerprint: Any) -> dict:
    stats = _mapping((validation or {}).get("statistics"))
    time_range = _time_range(stats, spec.time_column)
    partitions = _first(stats.get("partitions"), stats.get("files"), stats.get("partition_count"))
    if isinstance(partitions, list | tuple):  # a list of partition files: its length is the count
        partitions = len(partitions)
    return {
        "path": spec.data.path,
        "resolved_path": lineage.get("data_path"),
        "format": spec.data.format,
        "min_rows": spec.data.min_rows,
        "fingerprint": fingerprint,
        "rows": _first((validation or {}).get("rows"), stats.get("rows")),
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
                "type": _value(f.type),
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
    kind = _value(feature.type)
    if kind == "categorical":
        parts = ["one of: " + ", ".join(feature.categories or [])]
    elif kind == "boolean":
        parts = ["true/false"]
    elif feature.min is not None and feature.max is not None:
        parts = [f"{_fmt(feature.min)} ≤ value ≤ {_fmt(feature.max)}"]
    elif feature.min is not None:
        parts = [f"≥ {_fmt(feature.min)}"]
    elif feature.max is not None:
        parts = [f"≤ {_fmt(feature.max)}"]
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
        lo, hi = _first(raw.get("min"), raw.get("start")), _first(raw.get("max"), raw.get("end"))
    elif isinstance(raw, list | tuple) and len(raw) == 2:
        lo, hi = raw
    else:
        return None
    return {"min": _timestamp(lo), "max": _timestamp(hi)}


def _validation_section(validation: dict | None, links: dict) -> dict:
    if validation is None:
        return {"ran": False, "success": None, "summary": None, "rows": None, "failed": [], "report": None}
    failed = [
        {
            "expectation": _mapping(f).get("expectation"),
            "column": _mapping(f).get("column"),
            "observed": _mapping(f).get("observed"),
        }
        for f in validation.get("failed") or []
    ]
    warned = [
        {
            "expectation": _mapping(f).get("expectation"),
            "column": _mapping(f).get("column"),
            "observed": _mapping(f).get("observed"),
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
        "statistics": _mapping(validation.get("statistics")),
        "report": _first(links.get("validation_report"), validation.get("report_html")),
    }


def _training_section(spec: ModelSpec, run: dict, telemetry: dict | None) -> dict:
    run_params = _mapping(run.get("params"))
    return {
        "framework": spec.training.framework,
        "backend": spec.training.backend,
        "params": run_params or dict(spec.training.params),
        "params_source": "mlflow run" if run_params else "spec",
        "run_metrics": _mapping(run.get("metrics")),
        "mlflow_run_id": run.get("run_id"),
        "started": _timestamp(run.get("start_time")),
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
        return str(_first(device.get("name"), device.get("model"), device.get("uuid"), "unknown GPU"))
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
        parts.append(f"{_fmt(hw['gpu_hours'])} GPU-hours")
    if hw["energy_wh"] is not None:
        parts.append(f"{_fmt(hw['energy_wh'])} Wh")
    if hw["peak_memory_mb"] is not None:
        parts.append(f"peak GPU memory {_fmt(hw['peak_memory_mb'])} MB")
    if hw["mean_utilization_pct"] is not None:
        parts.append(f"mean utilisation {_fmt(hw['mean_utilization_pct'])}%")
    return "GPU: " + "; ".join(parts)


def _evaluation_section(spec: ModelSpec, evaluation: dict | None, links: dict) -> dict:
    task = _value(spec.task)
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
    raw_models = _mapping(evaluation.get("models"))
    models: dict[str, dict] = {}
    for role in ("candidate", "champion", "baseline"):
        m = raw_models.get(role)
        if m:
            m = _mapping(m)
            models[role] = {
                "version": m.get("version"),
                "description": m.get("description"),
                "metrics": _mapping(m.get("metrics")),
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
    for role, point in _mapping(evaluation.get("operating_point")).items():
        if not point:
            continue
        point = _mapping(point)
        choice = _mapping(point.get("choice"))
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
        parts.append(f"≥ {_fmt(bound.min)}")
    if bound.max is not None:
        parts.append(f"≤ {_fmt(bound.max)}")
    return " and ".join(parts) or None


def _comparison(raw: Any, task: str) -> dict | None:
    if not raw:
        return None
    c = _mapping(raw)
    out = {k: c.get(k) for k in ("metric", "diff", "ci_low", "ci_high", "candidate", "champion")}
    out.update({k: v for k, v in c.items() if k not in out})
    lo, hi = _number(out["ci_low"]), _number(out["ci_high"])
    out["ci_excludes_zero"] = None if lo is None or hi is None else (lo > 0 or hi < 0)
    out["higher_is_better"] = METRICS.get(task, {}).get(out["metric"])
    return out


def _slice(raw: Any, min_rows: int) -> dict:
    s = _mapping(raw)
    metrics = _mapping(s.get("metrics"))
    cand, champ = _number(metrics.get("candidate")), _number(metrics.get("champion"))
    rows = _number(s.get("rows"))
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
            "name": _mapping(c).get("name"),
            "value": _mapping(c).get("value"),
            "threshold": _mapping(c).get("threshold"),
            "passed": _mapping(c).get("passed"),
            "reason": _mapping(c).get("reason"),
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
    a = _mapping(raw)
    return {
        "decision": a.get("decision"),
        "by": a.get("by"),
        "at": _timestamp(a.get("at")),
        "comment": a.get("comment"),
        "policy": a.get("policy"),
    }


def _serving_section(spec: ModelSpec, evaluation: dict | None = None) -> dict:
    from include.modelops.serving.packaging import endpoint_contract

    # The version's own threshold (the evaluation's candidate), which its bento labels with.
    point = _mapping(_mapping(_mapping(evaluation).get("operating_point")).get("candidate"))
    return endpoint_contract(spec, threshold=point.get("threshold"))


def _deployment(raw: Any) -> dict:
    """One deployment event: when, what happened, the stages it went through, and why.

    A bare stage (``stage``, ``traffic_percent``, ``outcome``) is an event with that one stage.
    """
    d = _mapping(raw)
    stages = d.get("stages")
    if stages is None and d.get("stage") is not None:
        stages = [
            {"name": d.get("stage"), "traffic_percent": d.get("traffic_percent"), "outcome": d.get("outcome")}
        ]
    return {
        "at": _timestamp(d.get("at")),
        "event": d.get("event") or d.get("stage"),
        "stages": [
            {
                "name": _mapping(s).get("name"),
                "traffic_percent": _mapping(s).get("traffic_percent"),
                "outcome": _mapping(s).get("outcome"),
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
    out["deployment_history"] = _jsonable([_deployment(d) for d in deployments])
    out["generated_at"] = generated_at or _now()
    out["compliance"] = compliance_entries(out)
    out["missing_evidence"] = missing_evidence(out, str(out.get("risk_tier") or "medium"))
    return out


# --------------------------------------------------------------------------------------------
# Evidence: compliance status and what each risk tier requires
# --------------------------------------------------------------------------------------------


def _has(value: Any) -> bool:
    """Whether a value carries evidence (not None, not blank, not an empty container)."""
    if value is None:
        return False
    if isinstance(value, str):
        return bool(value.strip())
    if isinstance(value, Mapping):
        return any(_has(v) for v in value.values())
    if isinstance(value, list | tuple):
        return any(_has(v) for v in value)
    return True


# Sections that always carry spec-derived fields count as present only when the run-time
# evidence is there; the rest are present when they hold anything at all.
_STATUS_PREDICATES: dict[str, Callable[[Any], bool]] = {
    "model_details": lambda s: _has(_mapping(s).get("description")),
    "intended_use": lambda s: _has(_mapping(s).get("intended_use")),
    "data": lambda s: _has(_mapping(s).get("features")),
    "data_validation": lambda s: _mapping(s).get("success") is not None,
    "training": lambda s: _has(_mapping(s).get("params")) or _has(_mapping(s).get("mlflow_run_id")),
    "evaluation": lambda s: _has(
        _mapping(_mapping(_mapping(s).get("models")).get("candidate")).get("metrics")
    ),
    "gate_decision": lambda s: _mapping(s).get("passed") is not None,
    "lineage": lambda s: any(
        _has(_mapping(s).get(k)) for k in ("git_commit", "dag_run_id", "mlflow_run_id", "data_fingerprint")
    ),
}


def section_status(card: Mapping, section: str) -> str:
    """``"present"`` when the card's ``section`` carries evidence, else ``"empty"``."""
    predicate = _STATUS_PREDICATES.get(section, _has)
    return "present" if predicate(card.get(section)) else "empty"


def compliance_entries(card: Mapping) -> list[dict]:
    """One entry per section: the Annex IV items and NIST AI RMF subcategories it evidences."""
    return [
        {
            "section": section,
            "eu_ai_act_annex_iv": list(COMPLIANCE_MAP[section][0]),
            "nist_ai_rmf": list(COMPLIANCE_MAP[section][1]),
            "status": section_status(card, section),
        }
        for section in SECTIONS
    ]


def _section(card: Mapping, name: str) -> dict:
    return _mapping(card.get(name))


# Requirements met by one piece of evidence: (is it present?, what to provide when it is not).
_SIMPLE_REQUIREMENTS: dict[str, tuple[Callable[[Mapping], bool], str]] = {
    "model_details": (
        lambda c: _has(_section(c, "model_details").get("description")),
        "model_details: spec field 'description' is empty; say what the model predicts and why",
    ),
    "intended_use": (
        lambda c: _has(_section(c, "intended_use").get("intended_use")),
        "intended_use: spec field 'intended_use' is empty; say who uses the predictions "
        "and for what decision",
    ),
    "intended_use.out_of_scope_uses": (
        lambda c: _has(_section(c, "intended_use").get("out_of_scope_uses")),
        "intended_use.out_of_scope_uses: spec field 'out_of_scope_uses' is empty; list the uses the model is "
        "not fit for",
    ),
    "limitations": (
        lambda c: _has(c.get("limitations")),
        "limitations: spec field 'limitations' is empty; list the model's known weaknesses",
    ),
    "ethical_considerations": (
        lambda c: _has(c.get("ethical_considerations")),
        "ethical_considerations: spec field 'ethical_considerations' is empty; record the fairness, privacy "
        "and harm considerations",
    ),
    "data_validation": (
        lambda c: _section(c, "data_validation").get("success") is not None,
        "data_validation: no data-validation result; run validate_dataset and pass its result as validation=",
    ),
    "evaluation": (
        lambda c: section_status(c, "evaluation") != "empty",
        "evaluation: no candidate metrics; run the evaluation and pass its report as evaluation=",
    ),
    "evaluation.slices": (
        lambda c: _has(_section(c, "evaluation").get("slices")),
        "evaluation.slices: no per-slice metrics; set spec field 'segment_columns' and pass the evaluation "
        "report's slices",
    ),
    "gate_decision": (
        lambda c: _section(c, "gate_decision").get("passed") is not None,
        "gate_decision: no gate decision; run the quality gate and pass its result as decision=",
    ),
}


def _gaps(card: Mapping, requirement: str) -> list[str]:
    """What is missing for one requirement, each naming the spec field or evidence to provide."""
    if requirement in _SIMPLE_REQUIREMENTS:
        present, message = _SIMPLE_REQUIREMENTS[requirement]
        return [] if present(card) else [message]

    if requirement == "data":
        data = _section(card, "data")
        if not _has(data.get("features")):
            return ["data: no features documented; fill spec field 'features'"]
        undocumented = [f.get("name") for f in data["features"] if not _has(_mapping(f).get("description"))]
        if undocumented:
            return [
                f"data: features without a description: {', '.join(map(str, undocumented))}; "
                "fill spec field 'features[].description'"
            ]
        return []
    if requirement == "lineage":
        lin = _section(card, "lineage")
        out = []
        if not _has(lin.get("mlflow_run_id")):
            out.append("lineage: MLflow run id is missing; pass run['run_id'] or lineage['mlflow_run_id']")
        if not _has(lin.get("data_fingerprint")):
            out.append(
                "lineage: data fingerprint is missing; pass lineage['data_fingerprint'] "
                "(from validation) or tag the run with 'data_fingerprint'"
            )
        return out
    # A section without a dedicated rule: required means non-empty.
    if section_status(card, requirement) == "empty":
        return [f"{requirement}: section is empty; provide it to build_card"]
    return []


def missing_evidence(card: Mapping, risk_tier: str) -> list[str]:
    """The evidence ``risk_tier`` requires that the card lacks, one readable line per gap.

    Raises:
        ValueError: ``risk_tier`` is not one of ``REQUIRED_SECTIONS``.
    """
    tier = _value(risk_tier)
    if tier not in REQUIRED_SECTIONS:
        raise ValueError(f"unknown risk tier {risk_tier!r}; use one of {sorted(REQUIRED_SECTIONS)}")
    missing: list[str] = []
    for requirement in REQUIRED_SECTIONS[tier]:
        missing += _gaps(card, requirement)
    return missing


def check_evidence(card: Mapping, risk_tier: str) -> None:
    """Raise unless the card has every piece of evidence ``risk_tier`` requires.

    Raises:
        MissingEvidenceError: listing every missing section and what to fill in.
    """
    missing = missing_evidence(card, risk_tier)
    if not missing:
        return
    name = card.get("model_name") or "model"
    version = f" version {card['version']}" if card.get("version") else ""
    lines = [
        f"Model card for {name}{version} lacks evidence required for risk tier {_value(risk_tier)!r}:",
        *(f"  - {m}" for m in missing),
        f"Fill in the spec fields in include/models/{name}.yaml (documented in docs/model-spec.md) "
        "or pass the missing evidence to build_card, then rerun the task.",
    ]
    raise MissingEvidenceError("\n".join(lines), missing)


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
    if not _has(value):
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
    md = _mapping(card.get("model_details"))
    name = card.get("model_name") or md.get("name") or "model"
    version = card.get("version")
    title = f"Model card: {name}" + (f" v{version}" if version else "")
    gate = _mapping(card.get("gate_decision"))
    header = [
        _Block(
            "kv",
            rows=[
                ("Gate decision", _verdict(gate.get("passed"))),
                ("Risk tier", card.get("risk_tier")),
                ("Generated", card.get("generated_at")),
                *(
                    (_LINK_LABELS.get(key, key), _link_or_text(url))
                    for key, url in _mapping(card.get("links")).items()
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
        _Section("intended-use", "Intended use", _intended_use_blocks(_mapping(card.get("intended_use")))),
        _Section("data", "Data", _data_blocks(_mapping(card.get("data")))),
        _Section(
            "data-validation", "Data validation", _validation_blocks(_mapping(card.get("data_validation")))
        ),
        _Section("training", "Training", _training_blocks(_mapping(card.get("training")))),
        _Section("evaluation", "Evaluation", _evaluation_blocks(_mapping(card.get("evaluation")))),
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
        _Section("lineage", "Lineage", _lineage_blocks(_mapping(card.get("lineage")))),
        _Section("serving", "Serving: the endpoint contract", _serving_blocks(_mapping(card.get("serving")))),
        _Section(
            "deployment-history", "Deployment history", _deployment_blocks(card.get("deployment_history"))
        ),
        _Section("monitoring", "Monitoring", _monitoring_blocks(_mapping(card.get("monitoring")))),
        _Section("compliance", "Compliance mapping", _compliance_blocks(card)),
    ]
    return title, header, sections


def _empty(what: str) -> _Block:
    return _Block("note", level="warn", text=f"Not provided: {what}.")


def _model_details_blocks(md: dict) -> list[_Block]:
    owner = _mapping(md.get("owner"))
    policy = _mapping(md.get("approval_policy"))
    blocks = []
    if _has(md.get("description")):
        blocks.append(_Block("p", text=md["description"]))
    approval = None
    if policy:
        approvers = ", ".join(map(str, policy.get("approvers") or [])) or "—"
        approval = (
            f"{policy.get('policy')} (approvers: {approvers}; timeout {_fmt(policy.get('timeout_hours'))} h)"
        )
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
        if _has(iu.get("intended_use"))
        else _empty("spec field 'intended_use'")
    ]
    blocks.append(_Block("p", text="Out of scope:"))
    if _has(iu.get("out_of_scope_uses")):
        blocks.append(_Block("list", rows=list(iu["out_of_scope_uses"])))
    else:
        blocks.append(_empty("spec field 'out_of_scope_uses'"))
    return blocks


def _data_blocks(data: dict) -> list[_Block]:
    tr = _mapping(data.get("time_range"))
    target = _mapping(data.get("target"))
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
                    f"{_fmt(data.get('holdout_fraction'))} of rows, seed {data.get('split_seed')}"
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
                    for f in map(_mapping, features)
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
                    [f.get("expectation"), f.get("column"), f.get("observed")] for f in map(_mapping, failed)
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
                    [f.get("expectation"), f.get("column"), f.get("observed")] for f in map(_mapping, warned)
                ],
            )
        )
    return blocks


def _training_blocks(t: dict) -> list[_Block]:
    hw = _mapping(t.get("hardware"))
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
    params = _mapping(t.get("params"))
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
    models = _mapping(e.get("models"))
    if not _has(_mapping(models.get("candidate")).get("metrics")):
        return [_empty("evaluation report (candidate metrics)")]
    champion = _mapping(models.get("champion"))
    baseline = _mapping(models.get("baseline"))
    direction = {True: "higher is better", False: "lower is better"}.get(e.get("higher_is_better"))
    blocks = [
        _Block(
            "kv",
            rows=[
                ("Primary metric", f"{e.get('primary_metric')}" + (f" ({direction})" if direction else "")),
                ("Holdout rows", e.get("rows")),
                ("Candidate version", _mapping(models.get("candidate")).get("version")),
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
                for r in map(_mapping, e.get("metrics") or [])
            ],
        ),
    ]
    comp = _mapping(e.get("comparison"))
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
                    f"Candidate vs champion on {comp.get('metric')}: {_fmt(comp.get('candidate'))} vs "
                    f"{_fmt(comp.get('champion'))}, difference {_fmt_signed(comp.get('diff'))} "
                    f"(bootstrap CI {_fmt_signed(comp.get('ci_low'))} to "
                    f"{_fmt_signed(comp.get('ci_high'))}); "
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
                        _mapping(s.get("metrics")).get("candidate"),
                        _mapping(s.get("metrics")).get("champion"),
                        _mapping(s.get("metrics")).get("baseline"),
                        _fmt_signed(s.get("delta_vs_champion"))
                        if s.get("delta_vs_champion") is not None
                        else None,
                        "yes" if s.get("gated") else "no",
                    ]
                    for s in map(_mapping, slices)
                ],
            )
        )
    else:
        blocks.append(_empty("per-slice metrics (spec field 'segment_columns')"))
    points = [_mapping(p) for p in e.get("operating_point") or []]
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
                    for c in map(_mapping, checks)
                ],
            )
        )
    return blocks


def _list_blocks(items: Any, what: str) -> list[_Block]:
    items = [i for i in items or [] if _has(i)]
    return [_Block("list", rows=items)] if items else [_empty(what)]


def _approval_blocks(approvals: Any, md: dict) -> list[_Block]:
    approvals = [_mapping(a) for a in approvals or []]
    if not approvals:
        policy = _mapping(md.get("approval_policy"))
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
    errors = _mapping(sv.get("errors"))
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
                for f in (_mapping(x) for x in sv.get("fields") or [])
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
    deployments = [_mapping(d) for d in deployments or []]
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
                    "; ".join(_stage_text(_mapping(s)) for s in d.get("stages") or []) or None,
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
    entries = [_mapping(e) for e in card.get("compliance") or compliance_entries(card)]
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
                    f"{_mapping(n).get('eu_ai_act_annex_iv')} {_mapping(n).get('title')}" for n in not_covered
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
    return _md_text(_fmt(value))


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
    return isinstance(value, _Link | _Badge) or _has(value)


# ---- HTML --------------------------------------------------------------------------------------

_HTML_TEMPLATE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{ title }}</title>
<style>
  body { font: 14px/1.5 -apple-system, "Segoe UI", Roboto, Helvetica, Arial, sans-serif; color: #1f2328;
         max-width: 1100px; margin: 2rem auto; padding: 0 1.5rem; }
  h1 { font-size: 1.7rem; margin-bottom: .5rem; }
  h2 { font-size: 1.25rem; border-bottom: 1px solid #d0d7de; padding-bottom: .3rem; margin-top: 2rem; }
  table { border-collapse: collapse; margin: .6rem 0 1rem; width: 100%; }
  th, td { border: 1px solid #d0d7de; padding: .35rem .6rem; text-align: left; vertical-align: top; }
  th { background: #f6f8fa; font-weight: 600; }
  table.kv { width: auto; min-width: 50%; }
  table.kv th { width: 16rem; }
  td.num { text-align: right; font-variant-numeric: tabular-nums; }
  .badge { display: inline-block; padding: 0 .5rem; border-radius: 1rem; font-weight: 600; font-size: .85em; }
  .ok { background: #dafbe1; color: #116329; }
  .bad { background: #ffebe9; color: #82071e; }
  .na { background: #eaeef2; color: #57606a; }
  .note { border-left: 4px solid #0969da; background: #ddf4ff; padding: .5rem .8rem; margin: .6rem 0; }
  .note.warn { border-color: #bf8700; background: #fff8c5; }
  .note.bad { border-color: #cf222e; background: #ffebe9; }
  nav ul { columns: 3; padding-left: 1.2rem; }
  footer { margin-top: 3rem; color: #57606a; font-size: .85em; }
</style>
</head>
<body>
{%- macro cell(c) -%}
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
</body>
</html>
"""


def _html_env() -> jinja2.Environment:
    env = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined)
    env.filters["fmt"] = _fmt
    env.tests["link"] = lambda c: isinstance(c, _Link)
    env.tests["badge"] = lambda c: isinstance(c, _Badge)
    env.tests["shown"] = _has_cell
    env.tests["number_cell"] = lambda c: isinstance(c, int | float) and not isinstance(c, bool)
    return env


def render_html(card: dict) -> str:
    """The card as one self-contained HTML page (inline CSS, no scripts); user text is escaped."""
    title, header, sections = _document(card)
    return (
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
        target = out_dir / filename
        fd, tmp = tempfile.mkstemp(prefix=f".{filename}.", dir=out_dir)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                fh.write(text)
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
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
                "modelops.model_card": f"runs:/{run_id}/model_card/model_card.html",
                "modelops.model_card.generated_at": tracking.now_iso(),
            },
        )
    return paths


# --------------------------------------------------------------------------------------------
# Small value helpers
# --------------------------------------------------------------------------------------------


def _mapping(value: Any) -> dict:
    return dict(value) if isinstance(value, Mapping) else {}


def _first(*values: Any) -> Any:
    for v in values:
        if _has(v):
            return v
    return None


def _value(x: Any) -> Any:
    return x.value if isinstance(x, Enum) else x


def _number(x: Any) -> float | None:
    if isinstance(x, bool) or x is None:
        return None
    try:
        f = float(x)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def _now() -> str:
    return dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat()


def _timestamp(value: Any) -> str | None:
    """ISO-8601 (UTC) for MLflow epoch milliseconds, epoch seconds or datetimes; strings unchanged."""
    if value is None or value == "":
        return None
    if isinstance(value, dt.datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=dt.UTC)
        return value.astimezone(dt.UTC).replace(microsecond=0).isoformat()
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
        seconds = value / 1000 if value > 1e11 else value  # MLflow uses epoch milliseconds
        return dt.datetime.fromtimestamp(seconds, dt.UTC).replace(microsecond=0).isoformat()
    return str(value)


def _jsonable(value: Any) -> Any:
    """Plain JSON types only: enums/paths/dates to strings, numpy scalars unwrapped, NaN/inf to None.

    NaN and infinity become None so the card is strict JSON and survives a round trip unchanged.
    """
    if isinstance(value, Enum):
        value = value.value
    if value is None or isinstance(value, bool | str):
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_jsonable(v) for v in value]
    if isinstance(value, dt.datetime | dt.date):
        return _timestamp(value)
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "item") and callable(value.item):  # numpy / pandas scalars, without importing them
        try:
            return _jsonable(value.item())
        except (TypeError, ValueError):
            pass
    if hasattr(value, "tolist") and callable(value.tolist):
        return _jsonable(value.tolist())
    return str(value)


def _fmt(value: Any) -> str:
    """A value as a reader wants to see it in a table."""
    if value is None or value == "":
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}" if abs(value) >= 10_000 else str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            return "n/a"
        if value == 0:
            return "0"
        if value.is_integer() and abs(value) < 1e15:
            return f"{int(value):,}" if abs(value) >= 10_000 else str(int(value))
        if abs(value) >= 10_000:
            return f"{value:,.1f}"
        if abs(value) >= 1e-3:
            return f"{value:.4f}".rstrip("0").rstrip(".")
        return f"{value:.3g}"
    if isinstance(value, Mapping):
        return json.dumps(value, sort_keys=True, default=str)
    if isinstance(value, Iterable) and not isinstance(value, str | bytes):
        return ", ".join(_fmt(v) for v in value)
    return str(value)


def _fmt_signed(value: Any) -> str:
    n = _number(value)
    if n is None:
        return _fmt(value)
    text = _fmt(n)
    return "+" + text if n > 0 else re.sub(r"^-", "−", text)
