"""The lifecycle steps the training DAG wires, one function per task.

Each step takes ids and URIs (what XCom carries), does its work through the library,
records what it did in MLflow, and returns a small JSON-serialisable dict of ids and
paths. Steps are idempotent: a retry finds the MLflow run, version or bento it made
before. Heavy libraries are imported inside the functions.
"""

from __future__ import annotations

import json
import logging
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

from include.modelops.pipelines.contracts import (
    Card,
    Evaluated,
    Packaged,
    Promoted,
    Registered,
    Smoked,
    Split,
    Trained,
    Validated,
)
from include.modelops.platform import tracking
from include.modelops.platform.tags import (
    TAG_BENTO_BUILT_AT,
    TAG_BENTO_TAG,
    TAG_DAG_ID,
    TAG_DAG_RUN_ID,
    TAG_DATA_FINGERPRINT,
    TAG_DATA_PATH,
    TAG_DEPLOYABLE,
    TAG_DRIFT_REPORT,
    TAG_GATE_AT,
    TAG_GATE_STATUS,
    TAG_GATE_SUMMARY,
    TAG_GIT_COMMIT,
    TAG_PROMOTED_AT,
    TAG_RISK_TIER,
    TAG_SMOKE_AT,
    TAG_SMOKE_MAX_ABS_DIFF,
    TAG_SPEC_HASH,
    TAG_SPLIT,
    TAG_TRIGGER_REASON,
    TAG_VALIDATION_AT,
    TAG_VALIDATION_FAILED,
    TAG_VALIDATION_STATUS,
    TAG_VALIDATION_SUMMARY,
    TAG_VALIDATION_WARNINGS,
)
from include.modelops.settings import PROJECT_ROOT, get_settings, git_commit
from include.modelops.spec import ModelSpec, ModelSpecError, load_spec_by_name

log = logging.getLogger(__name__)


# --- context ----------------------------------------------------------------------------------


def load_spec_for_run(model: str, conf: dict[str, Any] | None = None) -> ModelSpec:
    """The model's spec, with a run-time ``data_path`` override from the DAG run's conf.

    Raises:
        ModelSpecError: The conf's ``data_path`` holds a variable or lies outside the data roots.
    """
    spec = load_spec_by_name(model)
    data_path = (conf or {}).get("data_path")
    if data_path:
        path = run_data_path(spec, data_path)
        log.info("Using data_path %s from the DAG run's conf instead of the spec's %s", path, spec.data.path)
        spec = spec.model_copy(update={"data": spec.data.model_copy(update={"path": str(path)})})
    return spec


def data_roots(spec: ModelSpec) -> list[Path]:
    """Folders a run's conf ``data_path`` may lie under: ``MODELOPS_DATA_ROOTS``, else the defaults.

    The defaults are ``<state>/data`` and the folder holding the spec's own data.
    """
    settings = get_settings()
    if settings.data_roots:
        return list(settings.data_roots)
    roots = [settings.state_dir / "data"]
    try:
        roots.append(spec.data.resolved_path().parent)
    except ModelSpecError:  # the spec's own path names an unset variable: only the state's data folder
        pass
    return roots


def run_data_path(spec: ModelSpec, raw: Any) -> Path:
    """A run conf's ``data_path``, checked and made absolute (a REST trigger's input: untrusted).

    It is taken literally (no ``${VAR}``, no ``~``: a run must not read the worker's
    environment) and must resolve, symbolic links followed, under one of :func:`data_roots`.

    Raises:
        ModelSpecError: Naming the path, what is wrong and what to do.
    """
    text = str(raw)
    if "${" in text or text.startswith("~"):
        raise ModelSpecError(
            f"conf data_path {text!r}: ${{VAR}} and ~ are expanded only in spec files, never in a run's conf; "
            "pass the absolute path of the data"
        )
    path = Path(text)
    path = (path if path.is_absolute() else PROJECT_ROOT / path).resolve()
    roots = list(dict.fromkeys(r.resolve() for r in data_roots(spec)))
    if not any(path == r or path.is_relative_to(r) for r in roots):
        raise ModelSpecError(
            f"conf data_path {text!r} resolves to {path}, which is outside the data roots "
            f"({', '.join(str(r) for r in roots)}); put the data under one of them, or add its folder to "
            "MODELOPS_DATA_ROOTS (separated by ':') in the Airflow workers' environment"
        )
    return path


def run_dir(model: str, dag_run_id: str) -> Path:
    """Working folder for one DAG run (splits and reports), stable across retries."""
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", dag_run_id)
    path = get_settings().runs_dir / model / safe
    path.mkdir(parents=True, exist_ok=True)
    return path


# --- steps ------------------------------------------------------------------------------------


def validate_dataset(model: str, *, dag_id: str, dag_run_id: str, conf: dict | None = None) -> Validated:
    """Validate the model's data with its Great Expectations suite; raise if it fails.

    The report (JSON and HTML) is attached to the DAG run's MLflow run either way.
    """
    from include.modelops.data.reading import fingerprint_dataset
    from include.modelops.data.validation import raise_for_report
    from include.modelops.data.validation import validate_dataset as run_validation

    spec = load_spec_for_run(model, conf)
    run_id = tracking.ensure_run(spec, dag_id=dag_id, dag_run_id=dag_run_id)
    out = run_dir(model, dag_run_id)
    report = run_validation(spec, out)
    tracking.log_file(run_id, report["report_json"], "validation")
    tracking.log_file(run_id, report["report_html"], "validation")
    fp: dict[str, Any] = {}
    if report["success"]:
        fp = fingerprint_dataset(spec.data.resolved_path(), spec.data.format)
    tracking.set_tags(
        run_id,
        {
            TAG_VALIDATION_STATUS: "passed" if report["success"] else "failed",
            TAG_VALIDATION_SUMMARY: report["summary"],
            TAG_VALIDATION_AT: tracking.now_iso(),
            TAG_DATA_PATH: spec.data.display_path(),
            TAG_TRIGGER_REASON: (conf or {}).get("reason") or "",
            TAG_DRIFT_REPORT: (conf or {}).get("drift_report") or "",
            **(
                {
                    TAG_VALIDATION_FAILED: "; ".join(
                        f"{r.get('expectation')}({r.get('column') or 'table'}): {r.get('observed')}"
                        for r in report["failed"]
                    )[:5000]
                }
                if not report["success"]
                else {}
            ),
            **({TAG_DATA_FINGERPRINT: fp["sha256"]} if fp else {}),
            **(
                {
                    TAG_VALIDATION_WARNINGS: "; ".join(
                        f"{r.get('expectation')}({r.get('column') or 'table'}): {r.get('observed')}"
                        for r in report["warnings"]
                    )[:5000]
                }
                if report.get("warnings")
                else {}
            ),
        },
    )
    log.info("Validation: %s (report %s)", report["summary"], report["report_html"])
    if not report["success"]:
        tracking.end_run(run_id, "FAILED")
        raise_for_report(report)
    return {
        "run_id": run_id,
        "data_path": str(spec.data.resolved_path()),
        "rows": report["rows"],
        "fingerprint": fp.get("sha256"),
        "report_html": report["report_html"],
        "summary": report["summary"],
        "warnings": [f"{r.get('expectation')}: {r.get('observed')}" for r in report.get("warnings", [])],
        "trigger_reason": (conf or {}).get("reason"),
        "drift_report": (conf or {}).get("drift_report"),
        "labelled_data": (conf or {}).get("labelled_data"),
    }


def split_dataset(model: str, validated: Validated, *, dag_run_id: str, conf: dict | None = None) -> Split:
    """Split into train and holdout: the latest time window when the spec has a time column."""
    from include.modelops.data.reading import read_dataset, split_holdout
    from include.modelops.data.validation import DataSplitError

    spec = load_spec_for_run(model, conf)
    df = read_dataset(
        validated["data_path"], spec.data.format, parse_dates=[spec.time_column] if spec.time_column else ()
    )
    if spec.time_column:
        df = df.sort_values(spec.time_column, kind="stable").reset_index(drop=True)
    # The same split validation checked (both sides hold rows, every class on each side).
    holdout_mask, how = split_holdout(
        df, time_column=spec.time_column, holdout_fraction=spec.split.holdout_fraction, seed=spec.split.seed
    )
    train, holdout = df[~holdout_mask], df[holdout_mask]
    if train.empty or holdout.empty:  # validation stops this; here only if the data changed since
        raise DataSplitError(
            f"split left an empty side (train {len(train)}, holdout {len(holdout)} rows): {how}; "
            "use more data or change split.holdout_fraction in the spec"
        )
    out = run_dir(model, dag_run_id)
    labelled = validated.get("labelled_data")
    if labelled and spec.monitoring.retrain_with_labelled_window:
        # A monitoring retrain: learn from the labelled live window too. Training side only, so the
        # holdout (and the gate's comparison with the champion) stays on the spec's data.
        import pandas as pd

        from include.modelops.monitoring.window import read_labelled_window

        extra = read_labelled_window(spec, labelled, out / "labelled_window", like=train)
        train = pd.concat([train, extra], ignore_index=True)
        how += f"; + {len(extra)} labelled live rows in train ({labelled})"
        tracking.log_metrics(validated["run_id"], {"labelled_window_rows": len(extra)})
    train_path, holdout_path = out / "train.parquet", out / "holdout.parquet"
    train.to_parquet(train_path, index=False)
    holdout.to_parquet(holdout_path, index=False)
    tracking.set_tags(validated["run_id"], {TAG_SPLIT: how})
    from include.modelops.monitoring.reference import log_reference_sample  # the drift reference

    log_reference_sample(spec, train, validated["run_id"], out)
    log.info("Split %d rows into %d train / %d holdout (%s)", len(df), len(train), len(holdout), how)
    return {
        "train_path": str(train_path),
        "holdout_path": str(holdout_path),
        "train_rows": len(train),
        "holdout_rows": len(holdout),
        "split": how,
    }


def train_candidate(model: str, validated: Validated, split: Split, *, dag_run_id: str) -> Trained:
    """Run the training entrypoint in a subprocess on this worker (``training.backend: local``).

    The same entrypoint runs in the training image on Kubernetes; its output streams into this log.
    """
    from include.modelops.training.entrypoint import RESULT_PREFIX

    spec = load_spec_by_name(model)
    ckpt = run_dir(model, dag_run_id) / "checkpoints"
    cmd = [
        sys.executable,
        "-m",
        "include.modelops.training.entrypoint",
        "--model",
        model,
        "--train-path",
        split["train_path"],
        "--run-id",
        validated["run_id"],
        "--specs-dir",
        str(get_settings().specs_dir),
        "--checkpoint-dir",
        str(ckpt),
    ]
    log.info("Training %s with %s: %s", model, spec.training.framework, " ".join(cmd))
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=get_settings().project_root
    )
    result = None
    assert proc.stdout is not None
    for line in proc.stdout:
        line = line.rstrip()
        if line.startswith(RESULT_PREFIX):
            result = json.loads(line[len(RESULT_PREFIX) :])
        elif line:
            log.info("[train] %s", line)
    if proc.wait() != 0 or result is None:
        raise RuntimeError(f"training entrypoint exited with code {proc.returncode}; see the lines above")
    return result


def evaluate_candidate(
    model: str, validated: Validated, split: Split, trained: Trained, *, dag_run_id: str
) -> Evaluated:
    """Score candidate, champion (same holdout) and naive baseline; decide the gate; publish the report."""
    import pandas as pd

    from include.modelops import scoring
    from include.modelops.evaluation.gate import decide
    from include.modelops.evaluation.metrics import baseline_scores, latency_profile
    from include.modelops.evaluation.report import evaluate, render_html

    spec = load_spec_by_name(model)
    run_id = validated["run_id"]
    holdout = pd.read_parquet(split["holdout_path"])
    y_train = pd.read_parquet(split["train_path"], columns=[spec.target.name])[spec.target.name]
    log.info("Scoring candidate %s on %d holdout rows", trained["model_uri"], len(holdout))
    candidate = scoring.load_pyfunc(trained["model_uri"])
    cand_scores = scoring.score(spec, candidate, holdout)
    champion_version = tracking.alias_version(spec.name, tracking.CHAMPION)
    champ_scores, latency, champion_error, champion_recorded = None, None, None, None
    # Binary: each model is judged at its own decision threshold, as its bento serves it.
    binary = spec.task.value == "binary_classification"
    cand_threshold = _candidate_threshold(spec, trained) if binary else None
    champ_threshold = None
    sample = scoring.feature_frame(spec, holdout.head(50))
    cand_latency = latency_profile(candidate.predict, sample)
    if champion_version:
        log.info("Re-scoring champion v%s on the same holdout", champion_version)
        try:
            champion = scoring.load_pyfunc(f"models:/{spec.name}/{champion_version}")
            champ_scores = scoring.score(spec, champion, holdout)
            champ_latency = latency_profile(champion.predict, scoring.conform_to_model(sample, champion))
            latency = {
                "candidate_p95": cand_latency["p95_ms"],
                "champion_p95": champ_latency["p95_ms"],
                "ratio": cand_latency["p95_ms"] / max(champ_latency["p95_ms"], 1e-9),
            }
        except Exception as exc:  # e.g. the spec's features changed since the champion was trained
            champion_error = f"champion v{champion_version} could not be re-scored: {exc}"
            log.warning(champion_error)
        if champ_scores is not None:  # what it scored when it was evaluated, for the collapse check
            champion_recorded = _recorded_holdout_metrics(spec.name, champion_version)
        if champ_scores is not None and binary:
            champ_threshold = _champion_threshold(spec, champion_version)
    if latency is None:
        latency = {"candidate_p95": cand_latency["p95_ms"], "champion_p95": None, "ratio": None}
    report = evaluate(
        spec,
        holdout,
        candidate_scores=cand_scores,
        baseline_scores=baseline_scores(spec, y_train, len(holdout)),
        champion_scores=champ_scores,
        champion_version=champion_version if champ_scores is not None else None,
        latency=latency,
        champion_recorded_metrics=champion_recorded,
        candidate_threshold=cand_threshold,
        champion_threshold=champ_threshold,
    )
    decision = decide(spec, report)
    if champion_error:
        decision["passed"] = False
        decision["checks"].append(
            {
                "name": "champion_rescored",
                "value": None,
                "threshold": "champion scores",
                "passed": False,
                "reason": champion_error,
            }
        )
        decision["failed_checks"] = [*decision.get("failed_checks", []), "champion_rescored"]
        decision["summary"] = f"REJECTED: {champion_error}"
    out = run_dir(model, dag_run_id)
    html = out / "evaluation_report.html"
    html.write_text(render_html(report, decision, title=f"{spec.name}: candidate evaluation"))
    (out / "evaluation.json").write_text(json.dumps(report, indent=2))
    (out / "decision.json").write_text(json.dumps(decision, indent=2))
    for f in ("evaluation.json", "decision.json", "evaluation_report.html"):
        tracking.log_file(run_id, out / f, "evaluation")
    tracking.log_metrics(run_id, report["models"]["candidate"]["metrics"], prefix="holdout_")
    if report["models"].get("champion"):
        tracking.log_metrics(run_id, report["models"]["champion"]["metrics"], prefix="champion_holdout_")
    tracking.set_tags(
        run_id,
        {
            TAG_GATE_STATUS: "passed" if decision["passed"] else "rejected",
            TAG_GATE_SUMMARY: decision["summary"][:5000],
            TAG_GATE_AT: tracking.now_iso(),
        },
    )
    log.info("Gate decision: %s", decision["summary"])
    return {
        "passed": bool(decision["passed"]),
        "summary": decision["summary"],
        "decision_path": str(out / "decision.json"),
        "evaluation_path": str(out / "evaluation.json"),
        "report_html": str(html),
        "champion_version": champion_version,
    }


def _candidate_threshold(spec: ModelSpec, trained: dict) -> dict:
    """The decision threshold training chose (its result, else its run's tags, else the spec's)."""
    from include.modelops.evaluation import threshold as decision_threshold
    from include.modelops.evaluation.metrics import spec_threshold

    if trained.get("threshold"):
        return trained["threshold"]
    try:
        tags = tracking.run_info(trained["run_id"])["tags"]
    except Exception as exc:
        log.warning("Could not read the training run's threshold tags (%s); using the spec's", exc)
        tags = None
    return decision_threshold.from_tags(tags) or spec_threshold(spec)


def _champion_threshold(spec: ModelSpec, version: str) -> dict:
    """The champion's own decision threshold, the one its bento labels with."""
    from include.modelops.evaluation.metrics import spec_threshold
    from include.modelops.evaluation.threshold import registered_threshold

    try:
        return registered_threshold(spec, version)
    except Exception as exc:  # the report then says the spec's value was used
        log.warning("Could not read champion v%s's decision threshold (%s); using the spec's", version, exc)
        return spec_threshold(spec)


def _recorded_holdout_metrics(model_name: str, version: str) -> dict[str, float] | None:
    """A version's holdout metrics as its own evaluation logged them (``holdout_<metric>``), or None."""
    try:
        run_id = tracking.version_info(model_name, version)["run_id"]
        metrics = tracking.run_info(run_id)["metrics"] if run_id else {}
    except Exception as exc:  # the gate then says it could not compare, rather than failing the run
        log.warning("Could not read the holdout metrics recorded for %s v%s: %s", model_name, version, exc)
        return None
    recorded = {k.removeprefix("holdout_"): v for k, v in metrics.items() if k.startswith("holdout_")}
    return recorded or None


def register_candidate(
    model: str, validated: Validated, trained: Trained, evaluated: Evaluated, *, dag_id: str, dag_run_id: str
) -> Registered:
    """Register the candidate as a model version with its evidence tags; alias challenger if it passed."""
    spec = load_spec_by_name(model)
    version = tracking.register_version(
        spec.name,
        run_id=trained["run_id"],
        model_uri=trained["model_uri"],
        tags={
            TAG_DATA_FINGERPRINT: validated.get("fingerprint") or "unknown",
            TAG_GIT_COMMIT: git_commit(),
            TAG_DAG_ID: dag_id,
            TAG_DAG_RUN_ID: dag_run_id,
            TAG_SPEC_HASH: spec.spec_hash(),
            TAG_RISK_TIER: spec.risk_tier.value,
            TAG_GATE_STATUS: "passed" if evaluated["passed"] else "rejected",
            TAG_GATE_SUMMARY: evaluated["summary"][:5000],
            # Why this version was trained (e.g. a drift-monitoring retrain request) and the report behind it.
            **{
                f"modelops.{k}": validated[k][:5000]
                for k in ("trigger_reason", "drift_report")
                if validated.get(k)
            },
            # Binary: the decision threshold its bento will label with.
            **(_threshold_tags(spec, trained) if spec.task.value == "binary_classification" else {}),
        },
    )
    if evaluated["passed"]:
        tracking.set_alias(spec.name, tracking.CHALLENGER, version)
    return {
        "version": version,
        "model_uri": f"models:/{spec.name}/{version}",
        "url": tracking.version_url(spec.name, version),
    }


def _threshold_tags(spec: ModelSpec, trained: dict) -> dict[str, str]:
    from include.modelops.evaluation import threshold as decision_threshold

    return decision_threshold.to_tags(_candidate_threshold(spec, trained))


def generate_model_card(
    model: str,
    validated: Validated,
    split: Split,
    evaluated: Evaluated,
    registered: Registered,
    *,
    dag_id: str,
    dag_run_id: str,
    approvals: list[dict] | None = None,
) -> Card:
    """Build the model card from the spec, the MLflow run and the evidence files; attach it to the run."""
    from include.modelops.governance import compliance, model_card

    spec = load_spec_by_name(model)
    run_id = validated["run_id"]
    version = registered["version"]
    out = run_dir(model, dag_run_id)
    vinfo = tracking.version_info(spec.name, version)
    if approvals is None:
        from include.modelops.governance.approvals import records

        approvals = records(spec.name, version, vinfo["tags"])
    card = model_card.build_card(
        spec,
        model_name=spec.name,
        version=version,
        run=tracking.run_info(run_id),
        validation=json.loads((out / "validation_report.json").read_text()),
        evaluation=json.loads(Path(evaluated["evaluation_path"]).read_text()),
        decision=json.loads(Path(evaluated["decision_path"]).read_text()),
        approvals=approvals,
        lineage={
            "git_commit": git_commit(),
            "dag_id": dag_id,
            "dag_run_id": dag_run_id,
            "mlflow_run_id": run_id,
            "data_fingerprint": validated.get("fingerprint"),
            "spec_hash": spec.spec_hash(),
            "data_path": validated["data_path"],
            "split": split.get("split"),
            "trigger_reason": validated.get("trigger_reason"),
            "drift_report": validated.get("drift_report"),
        },
        telemetry=_telemetry_from_tags(tracking.run_info(run_id)["tags"]),
        deployments=_deployments_from_tags(vinfo["tags"]),
        links={
            "mlflow_run": tracking.run_url(run_id),
            "mlflow_model_version": registered["url"],
            "airflow_dag_run": f"{get_settings().airflow_ui_url}/dags/{dag_id}/runs/{dag_run_id}",
            "validation_report": validated.get("report_html"),
            "evaluation_report": evaluated["report_html"],
        },
    )
    # The version's one local card (rewritten by every later regeneration) and its MLflow copy.
    paths = model_card.publish_card(card, model=spec.name, version=version, run_id=run_id)
    log.info("Model card for %s v%s: %s", spec.name, version, paths.get("html"))
    return {
        "card_html": paths.get("html"),
        "card_md": paths.get("md"),
        "card_json": paths.get("json"),
        "missing_evidence": compliance.missing_evidence(card, spec.risk_tier.value),
    }


def check_gate(evaluated: Evaluated) -> bool:
    """True when the candidate passed the gate; the reason is logged either way."""
    if evaluated["passed"]:
        log.info("Candidate passed the gate: %s", evaluated["summary"])
    else:
        log.info("Candidate rejected, the champion stays: %s", evaluated["summary"])
    return bool(evaluated["passed"])


def package_bento(model: str, registered: Registered, trained: Trained) -> Packaged:
    """Build the bento for this version from ``bentos/``."""
    from include.modelops.serving.bento import build_bento

    spec = load_spec_by_name(model)
    tag = build_bento(spec, registered["version"], trained["model_uri"])
    tracking.set_version_tags(
        spec.name, registered["version"], {TAG_BENTO_TAG: tag, TAG_BENTO_BUILT_AT: tracking.now_iso()}
    )
    return {"bento_tag": tag}


def smoke_serve_bento(
    model: str, registered: Registered, trained: Trained, split: Split, packaged: Packaged
) -> Smoked:
    """Serve the bento, send holdout rows, and require the offline predictions back (skew check)."""
    import pandas as pd

    from include.modelops import scoring
    from include.modelops.serving.contract import request_rows, smoke_rows
    from include.modelops.serving.smoke import check_smoke_report, smoke_serve

    spec = load_spec_by_name(model)
    sample = pd.read_parquet(split["holdout_path"]).head(20)
    # The sample plus its edge rows (no null at all, each nullable feature null, ints for numeric,
    # whole floats for integer), scored offline from exactly the values sent.
    payload = smoke_rows(spec, request_rows(spec, sample))
    rows = pd.DataFrame.from_records(payload, columns=spec.feature_names)
    expected = scoring.score(spec, scoring.load_pyfunc(trained["model_uri"]), rows)
    # .tolist(): one float per row, or one list of class probabilities per row (multiclass).
    report = smoke_serve(spec, packaged["bento_tag"], payload, expected.tolist())
    tracking.log_json(trained["run_id"], report, "serving/smoke_report.json")
    check_smoke_report(report)
    tracking.set_version_tags(
        spec.name,
        registered["version"],
        {
            TAG_DEPLOYABLE: "true",
            TAG_SMOKE_MAX_ABS_DIFF: report["max_abs_diff"],
            TAG_SMOKE_AT: tracking.now_iso(),
        },
    )
    return {"bento_tag": packaged["bento_tag"], "ok": report["ok"], "max_abs_diff": report["max_abs_diff"]}


def promote(model: str, registered: Registered) -> Promoted:
    """Point ``champion`` at the version (the old champion becomes ``previous``)."""
    spec = load_spec_by_name(model)
    result = tracking.promote_to_champion(spec.name, registered["version"])
    tracking.set_version_tags(spec.name, registered["version"], {TAG_PROMOTED_AT: tracking.now_iso()})
    return result


def summarize_run(model: str, *, dag_id: str, dag_run_id: str, results: dict[str, Any]) -> dict:
    """Write ``summary.json`` for the DAG run (and ``latest_summary.json``) with where to look next."""
    spec = load_spec_by_name(model)
    s = get_settings()
    champion = tracking.alias_version(spec.name, tracking.CHAMPION)
    summary = {
        "model": spec.name,
        "dag_id": dag_id,
        "dag_run_id": dag_run_id,
        "finished_at": tracking.now_iso(),
        "steps": results,
        "champion_version": champion,
        "failed_steps": [t for t, r in results.items() if r.get("state") == "failed"],
        "previous_version": tracking.alias_version(spec.name, tracking.PREVIOUS),
        "mlflow_tracking_uri": s.mlflow_tracking_uri,
        "mlflow_ui": f"{s.mlflow_ui_url}/#/models/{spec.name}",
        "run_dir": str(run_dir(model, dag_run_id)),
    }
    out = run_dir(model, dag_run_id)
    (out / "summary.json").write_text(json.dumps(summary, indent=2, default=str))
    (s.runs_dir / model / "latest_summary.json").write_text(json.dumps(summary, indent=2, default=str))
    return summary


def _deployments_from_tags(tags: dict[str, str]) -> list[dict]:
    """The version's deployment history (rollouts, rollbacks; alias moves when it had no rollout)."""
    from include.modelops.rollout.history import deployment_history

    return deployment_history(tags)


def _telemetry_from_tags(tags: dict[str, str]) -> dict | None:
    if "gpu.devices" not in tags:
        return None
    return {
        "devices": tags["gpu.devices"].split(","),
        "gpu_hours": tags.get("gpu.hours"),
        "energy_wh": tags.get("gpu.energy_wh"),
        "peak_memory_mb": tags.get("gpu.peak_memory_mb"),
        "mean_utilization_pct": tags.get("gpu.mean_utilization_pct"),
    }
