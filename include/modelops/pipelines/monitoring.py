"""The monitoring DAG's steps: examine one window, then decide about retraining.

Like ``include.modelops.pipelines.training``: each takes ids and times, records what it did in MLflow
(one run per monitoring DAG run in the model's experiment, tagged ``modelops.kind=monitoring``
and linked to the monitored version), and returns a small JSON-serialisable dict. The MLflow
runs are also the policy's memory: past decisions, their windows and times are read back
from them, so the guards hold across DAG runs, retries and workers.
"""

from __future__ import annotations

import json
import logging
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from include.modelops.monitoring.policy import Decision, PastDecision, PolicyContext, WindowFigures, decide
from include.modelops.pipelines import contracts
from include.modelops.platform import tags, tracking
from include.modelops.platform.tags import TAG_KIND
from include.modelops.settings import get_settings
from include.modelops.spec import ModelSpec, load_spec_by_name

log = logging.getLogger(__name__)

KIND_TAG, KIND = TAG_KIND, tags.KIND_MONITORING
P = tags.MONITORING  # tag prefix of monitoring runs


def window_bounds(spec: ModelSpec, *, end: datetime, conf: dict | None = None) -> tuple[datetime, datetime]:
    """The window a run examines: conf ``window_start``/``window_end`` (ISO), else the
    ``monitoring.window_hours`` before ``end`` (the run's time)."""
    conf = conf or {}

    def parse(v: str) -> datetime:
        dt = datetime.fromisoformat(str(v).replace("Z", "+00:00"))
        return dt if dt.tzinfo else dt.replace(tzinfo=UTC)

    end = parse(conf["window_end"]) if conf.get("window_end") else end
    end = end if end.tzinfo else end.replace(tzinfo=UTC)
    start = (
        parse(conf["window_start"])
        if conf.get("window_start")
        else end - timedelta(hours=spec.monitoring.window_hours)
    )
    if start >= end:
        raise ValueError(f"window_start {start.isoformat()} is not before window_end {end.isoformat()}")
    return start.astimezone(UTC), end.astimezone(UTC)


def _out_dir(model: str, dag_run_id: str) -> Path:
    path = get_settings().runs_dir / model / "monitoring" / re.sub(r"[^A-Za-z0-9_.-]+", "_", dag_run_id)
    path.mkdir(parents=True, exist_ok=True)
    return path


def _reference_predictions(spec: ModelSpec, version: str, reference: Any) -> Any:
    """The monitored version's predictions on the reference sample (for prediction drift)."""
    from include.modelops import scoring
    from include.modelops.monitoring.drift import prediction_column
    from include.modelops.serving.contract import predictions_from_scores

    model = scoring.load_pyfunc(f"models:/{spec.name}/{version}")
    rows = predictions_from_scores(spec, scoring.score(spec, model, reference))
    return [r[prediction_column(spec)] for r in rows]


def monitor_window(
    model: str, *, start: datetime, end: datetime, dag_id: str, dag_run_id: str
) -> contracts.Monitored:
    """Read the production version's window, compare it with its reference, publish the report.

    An empty window is an outcome (``status: no_traffic``), not a failure; unreadable log files
    are skipped and counted. Returns the figures (the ``drift_report`` asset event's extra).
    """
    from include.modelops.evaluation.threshold import registered_threshold
    from include.modelops.monitoring import drift
    from include.modelops.monitoring.reference import load_reference_sample
    from include.modelops.monitoring.window import LABEL_COLUMN, load_window

    spec = load_spec_by_name(model)
    run_id = tracking.ensure_run(spec, dag_id=dag_id, dag_run_id=dag_run_id)
    tracking.set_tags(run_id, {KIND_TAG: KIND})  # never mistaken for a training run
    out = _out_dir(model, dag_run_id)
    version = tracking.alias_version(model, tracking.CHAMPION)
    window = load_window(model, start, end, version=version)
    if version is None and window.versions:  # no champion yet: watch what actually serves
        version = max(window.versions, key=window.versions.get)
        window = load_window(model, start, end, version=version)
    n = len(window.rows)
    log.info(
        "Window %s of %s v%s: %d rows (%d labelled) from %d files, %d unreadable file(s) skipped",
        window.key,
        model,
        version or "?",
        n,
        window.labelled_rows,
        window.files,
        len(window.skipped_files),
    )
    for s in window.skipped_files:
        log.warning("Skipped unreadable inference-log file: %s", s)
    summary: dict[str, Any] = {
        "model": model,
        "version": version,
        "window": {"start": start.isoformat(), "end": end.isoformat()},
        "window_key": window.key,
        "rows": n,
        "labelled_rows": window.labelled_rows,
        "files": window.files,
        "skipped_files": window.skipped_files,
        "rows_by_version": window.versions,
        "drift": None,
        "quality": None,
        "performance": None,
    }
    if n == 0:
        summary["status"] = "no_traffic"
    elif n < spec.monitoring.min_window_rows:
        summary["status"] = "too_little_traffic"
    else:
        summary["status"] = "checked"
        reference = load_reference_sample(model, str(version), out / "reference")
        try:
            ref_pred = _reference_predictions(spec, str(version), reference)
        except Exception as exc:  # prediction drift is one figure among many: report, don't fail the window
            log.warning("No prediction drift: v%s could not score its reference sample: %s", version, exc)
            ref_pred = None
        log.info(
            "Drift: %d live rows vs %d reference rows, %d features", n, len(reference), len(spec.features)
        )
        summary["drift"] = drift.drift_report(
            spec,
            reference,
            window.rows,
            out_dir=out,
            reference_predictions=ref_pred,
            title=f"{model} v{version}: {window.key}",
        )
        summary["quality"] = drift.data_quality(spec, window.rows)
        offline = drift.offline_metric(
            spec, tracking.run_info(tracking.version_info(model, str(version))["run_id"])["metrics"]
        )
        # Binary: at the version's own threshold, the one its offline f1/precision/recall were measured at.
        threshold = (
            registered_threshold(spec, str(version))["value"]
            if spec.task.value == "binary_classification"
            else None
        )
        summary["performance"] = drift.live_performance(
            spec, window.rows, label_column=LABEL_COLUMN, offline=offline, threshold=threshold
        )
    figures = _figures(summary)
    summary["figures"] = figures
    (out / "drift_summary.json").write_text(json.dumps(summary, indent=2, default=str))
    report_uri = None
    if summary["drift"]:
        report_uri = tracking.log_file(run_id, summary["drift"]["report_html"], "drift")
    summary_uri = tracking.log_file(run_id, out / "drift_summary.json", "drift")
    labelled_uri = None
    if window.labelled_rows and spec.monitoring.retrain_with_labelled_window:
        # Training data for a retrain this window may request (the spec's data plus these rows).
        from include.modelops.monitoring.window import LABELLED_FILE, labelled_training_rows

        labelled_training_rows(spec, window.rows).to_parquet(out / LABELLED_FILE, index=False)
        labelled_uri = tracking.log_file(run_id, out / LABELLED_FILE, "drift")
    tracking.log_metrics(
        run_id, {k: v for k, v in figures.items() if isinstance(v, int | float) and not isinstance(v, bool)}
    )
    tracking.set_tags(
        run_id,
        {
            KIND_TAG: KIND,
            f"{P}model_version": version or "",
            f"{P}window": window.key,
            f"{P}window_start": start.isoformat(),
            f"{P}window_end": end.isoformat(),
            f"{P}status": summary["status"],
            f"{P}report": report_uri or "",
            f"{P}summary": summary_uri,
            f"{P}rows": n,
            f"{P}labelled_rows": window.labelled_rows,
            f"{P}skipped_files": len(window.skipped_files),
            f"{P}top_drifted": ", ".join((summary["drift"] or {}).get("top", [])[:10]),
            f"{P}metric": figures.get("metric", ""),
            f"{P}labelled_data": labelled_uri or "",
            f"{P}report_path": (summary["drift"] or {}).get("report_html") or "",
        },
    )
    if version:
        tracking.set_version_tags(
            model, str(version), {f"{P}last_report": report_uri or summary_uri, f"{P}last_window": window.key}
        )
    link = tracking.run_url(run_id)
    log.info("Drift report: %s (MLflow run %s); figures %s", report_uri or "none (no verdict)", link, figures)
    return {
        "run_id": run_id,
        "run_url": link,
        "status": summary["status"],
        "window": window.key,
        "window_end": end.isoformat(),
        "version": version,
        "report": report_uri,
        "summary": summary_uri,
        "report_path": (summary["drift"] or {}).get("report_html"),
        "labelled_data": labelled_uri,
        "figures": figures,
    }


def _plain(v: Any) -> Any:
    """NumPy scalars as Python numbers: the figures travel as JSON (XCom, the asset event's extra)."""
    return v.item() if hasattr(v, "item") and not isinstance(v, list | dict | str) else v


def _figures(summary: dict[str, Any]) -> dict[str, Any]:
    """The headline figures: MLflow metrics (a time series across runs) and the asset event's extra."""
    return {k: _plain(v) for k, v in _headline(summary).items()}


def _headline(summary: dict[str, Any]) -> dict[str, Any]:
    d, q, p = summary["drift"] or {}, summary["quality"] or {}, summary["performance"] or {}
    pred = d.get("prediction") or {}
    fig: dict[str, Any] = {
        "rows": summary["rows"],
        "labelled_rows": summary["labelled_rows"],
        "skipped_files": len(summary["skipped_files"]),
        "status": summary["status"],
    }
    if d:
        fig |= {
            "drift_share": round(d["share"], 4),
            "drifted_features": d["count"],
            "top_drifted": d["top"][:10],
        }
    if pred:
        fig |= {"prediction_drift_score": pred.get("score"), "prediction_drifted": bool(pred.get("drifted"))}
    if q:
        fig |= {"quality_failures": len(q["failures"]), "quality_failed": q["failures"][:10]}
    if p:
        fig |= {
            f"live_{p['metric']}": p["live"],
            f"offline_{p['metric']}": p["offline"],
            "metric_drop": p["drop"],
            "metric": p["metric"],
        }
        # The interval and the rarest class's labels: whether the live metric may trigger (the policy).
        extra = {
            f"live_{p['metric']}_ci_low": p.get("ci_low"),
            f"live_{p['metric']}_ci_high": p.get("ci_high"),
            "metric_drop_least": p.get("drop_least"),
            "labelled_rarest_class": p.get("rarest_class"),
        }
        fig |= {k: v for k, v in extra.items() if v is not None}
    return fig


def _history(model: str, exclude_run: str) -> list[PastDecision]:
    """Decisions recorded by earlier monitoring runs of the model (the policy's memory)."""
    c = tracking.client()
    exp = c.get_experiment_by_name(model)
    if exp is None:
        return []
    out = []
    for r in tracking.all_runs(exp.experiment_id, f"tags.`{KIND_TAG}` = '{KIND}'"):
        t = r.data.tags
        if r.info.run_id == exclude_run or not t.get(f"{P}outcome"):
            continue
        out.append(
            PastDecision(
                window=t[f"{P}window"],
                window_end=datetime.fromisoformat(t[f"{P}window_end"]),
                at=datetime.fromisoformat(t[f"{P}decided_at"]),
                outcome=t[f"{P}outcome"],
                triggered=t.get(f"{P}triggers", "") != "",
                labelled_rows=int(t.get(f"{P}labelled_rows") or 0),
            )
        )
    return out


def _gpu_hours_last_week(spec: ModelSpec, now: datetime) -> float:
    """GPU-hours of the model's training runs started in the last 7 days (train_seconds x gpus)."""
    if spec.training.backend != "kubernetes" or not spec.training.gpus:
        return 0.0
    c = tracking.client()
    exp = c.get_experiment_by_name(spec.name)
    if exp is None:
        return 0.0
    since = int((now - timedelta(days=7)).timestamp() * 1000)
    runs = c.search_runs(
        [exp.experiment_id], filter_string=f"attributes.start_time >= {since}", max_results=1000
    )
    return sum(r.data.metrics.get("train_seconds", 0.0) for r in runs) / 3600 * spec.training.gpus


def decide_retraining(
    model: str, monitored: dict, *, training_runs_active: int, now: datetime | None = None
) -> contracts.Decision:
    """Apply the spec's retraining policy to the window and record the decision (an audit event).

    Idempotent: a retry returns the decision already recorded on the run instead of deciding again.
    Returns ``{"outcome", "reason", "retrain", "window", "figures", "report", ...}``.
    """
    spec = load_spec_by_name(model)
    run_id = monitored["run_id"]
    tags = tracking.run_info(run_id)["tags"]
    if tags.get(f"{P}outcome"):
        log.info("Decision already recorded for this run (retry): %s", tags.get(f"{P}reason"))
        decision = Decision(
            tags[f"{P}outcome"],
            tags.get(f"{P}reason", ""),  # type: ignore[arg-type]
            [t for t in tags.get(f"{P}triggers", "").split(",") if t],
            tags.get(f"{P}guard") or None,
        )
    else:
        now = now or datetime.now(UTC)
        figures = WindowFigures.from_figures(
            monitored["window"], datetime.fromisoformat(monitored["window_end"]), monitored["figures"]
        )
        ctx = PolicyContext(
            now=now,
            history=_history(model, run_id),
            training_runs_active=training_runs_active,
            gpu_hours_last_week=_gpu_hours_last_week(spec, now),
        )
        decision = decide(spec.monitoring, figures, ctx)
        tracking.set_tags(
            run_id,
            {
                f"{P}outcome": decision.outcome,
                f"{P}reason": decision.reason[:5000],
                f"{P}triggers": ",".join(decision.triggers),
                f"{P}guard": decision.guard or "",
                f"{P}decided_at": now.isoformat(timespec="seconds"),
            },
        )
        tracking.end_run(run_id, "FINISHED")
    log.info("Retraining decision for %s, window %s: %s", model, monitored["window"], decision.reason)
    return {
        "outcome": decision.outcome,
        "reason": decision.reason,
        "retrain": decision.outcome == "retrain",
        "triggers": decision.triggers,
        "guard": decision.guard,
        "window": monitored["window"],
        "figures": monitored["figures"],
        "report": monitored.get("report"),
        "run_url": monitored.get("run_url"),
        "version": monitored.get("version"),
        "labelled_data": monitored.get("labelled_data"),
    }


def retrain_request(decision: dict) -> contracts.RetrainRequest:
    """The ``<model>.retrain_requested`` event's extra for a decision to retrain: what the training
    DAG takes as its conf (reason, drift report, labelled window) when the event starts it."""
    return {
        "reason": f"drift monitoring: {decision['reason']}",
        "window": decision["window"],
        "figures": decision.get("figures") or {},
        "drift_report": decision.get("report"),
        "monitoring_run": decision.get("run_url"),
        "labelled_data": decision.get("labelled_data"),
    }


def recorded_decision(model: str, window: str) -> contracts.RecordedDecision | None:
    """The latest decision recorded for ``window`` (its key), as ``decide_retraining`` returns it
    plus ``rows``, ``labelled_rows`` and ``report_path``; None when no run examined it."""
    c = tracking.client()
    exp = c.get_experiment_by_name(model)
    if exp is None:
        return None
    runs = c.search_runs(
        [exp.experiment_id],
        filter_string=f"tags.`{P}window` = '{window}'",
        order_by=["attributes.start_time DESC"],
        max_results=1,
    )
    if not runs or not runs[0].data.tags.get(f"{P}outcome"):
        return None
    t, m = runs[0].data.tags, runs[0].data.metrics
    return {
        "outcome": t[f"{P}outcome"],
        "reason": t.get(f"{P}reason", ""),
        "retrain": t[f"{P}outcome"] == "retrain",
        "guard": t.get(f"{P}guard") or None,
        "window": window,
        "figures": m,
        "report": t.get(f"{P}report") or None,
        "run_url": tracking.run_url(runs[0].info.run_id),
        "version": t.get(f"{P}model_version") or None,
        "labelled_data": t.get(f"{P}labelled_data") or None,
        "report_path": t.get(f"{P}report_path") or None,
        "rows": int(m.get("rows", 0)),
        "labelled_rows": int(m.get("labelled_rows", 0)),
    }
