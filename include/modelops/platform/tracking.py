"""MLflow as the model's memory: runs, artifacts, registry versions, aliases and tags.

All MLflow access goes through here, so idempotency rules live in one place:
one MLflow run per Airflow DAG run (found again by its ``modelops.dag_run_id`` tag),
one model version per MLflow run, aliases instead of the deprecated stages.
"""

from __future__ import annotations

import json
import logging
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from include.modelops.platform.tags import (
    TAG_DAG_ID,
    TAG_DAG_RUN_ID,
    TAG_MODEL,
    TAG_RISK_TIER,
    TAG_SPEC_HASH,
    alias_set_at,
)
from include.modelops.settings import get_settings

if TYPE_CHECKING:
    from mlflow import MlflowClient

    from include.modelops.spec import ModelSpec

log = logging.getLogger(__name__)

TAG_DAG_RUN = TAG_DAG_RUN_ID
CHAMPION, CHALLENGER, PREVIOUS = "champion", "challenger", "previous"


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def client() -> MlflowClient:
    """An MLflow client for the configured tracking server (also sets the fluent API's URI)."""
    import mlflow

    uri = get_settings().mlflow_tracking_uri
    if not uri:
        raise RuntimeError(
            "MLFLOW_TRACKING_URI is not set. The make commands start this checkout's MLflow server for you; "
            "elsewhere (Airflow workers, notebooks) set it to your tracking server's URL."
        )
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    return mlflow.MlflowClient(tracking_uri=uri, registry_uri=uri)


def all_runs(experiment_id: str, filter_string: str = "", order_by: list[str] | None = None) -> list[Any]:
    """Every run of the experiment that matches ``filter_string``, all pages (MLflow returns 1,000 at most)."""
    c = client()
    runs, token = [], None
    while True:
        page = c.search_runs(
            [experiment_id],
            filter_string=filter_string,
            order_by=order_by,
            max_results=1000,
            page_token=token,
        )
        runs += list(page)
        token = page.token
        if not token:
            return runs


def experiment_id(spec_name: str) -> str:
    """The experiment named after the model, created on first use."""
    c = client()
    exp = c.get_experiment_by_name(spec_name)
    if exp is not None:
        return exp.experiment_id
    try:
        return c.create_experiment(spec_name, tags={TAG_MODEL: spec_name})
    except Exception:  # created concurrently by another task: read it back
        exp = c.get_experiment_by_name(spec_name)
        if exp is None:
            raise
        return exp.experiment_id


def ensure_run(spec: ModelSpec, *, dag_id: str, dag_run_id: str) -> str:
    """The MLflow run for this DAG run: found by tag, or created. Safe to call from every task."""
    c = client()
    exp_id = experiment_id(spec.name)
    found = c.search_runs([exp_id], filter_string=f"tags.`{TAG_DAG_RUN}` = '{dag_run_id}'", max_results=1)
    if found:
        return found[0].info.run_id
    from include.modelops.settings import git_commit

    run = c.create_run(
        exp_id,
        run_name=f"{spec.name}-{dag_run_id}"[:250],
        tags={
            TAG_DAG_RUN: dag_run_id,
            TAG_DAG_ID: dag_id,
            TAG_MODEL: spec.name,
            TAG_SPEC_HASH: spec.spec_hash(),
            TAG_RISK_TIER: spec.risk_tier.value,
            "mlflow.source.git.commit": git_commit(),
        },
    )
    log.info("Created MLflow run %s for DAG run %s", run.info.run_id, dag_run_id)
    return run.info.run_id


def log_file(run_id: str, path: str | Path, artifact_path: str | None = None) -> str:
    """Upload a file to the run; returns its ``runs:/`` URI."""
    client().log_artifact(run_id, str(path), artifact_path)
    name = Path(path).name
    return f"runs:/{run_id}/{artifact_path + '/' if artifact_path else ''}{name}"


def log_json(run_id: str, obj: Any, artifact_file: str) -> str:
    """Upload a JSON document to the run; returns its ``runs:/`` URI."""
    client().log_dict(run_id, obj, artifact_file)
    return f"runs:/{run_id}/{artifact_file}"


def load_json_artifact(run_id: str, artifact_file: str) -> Any:
    """Read back a JSON artifact logged with :func:`log_json`."""
    import mlflow.artifacts

    client()
    return json.loads(mlflow.artifacts.load_text(f"runs:/{run_id}/{artifact_file}"))


def set_tags(run_id: str, tags: dict[str, Any]) -> None:
    """Set run tags (values stringified)."""
    c = client()
    for k, v in tags.items():
        c.set_tag(run_id, k, str(v))


def log_metrics(run_id: str, metrics: dict[str, float | None], *, prefix: str = "") -> None:
    """Log numeric metrics in one batch; None values are skipped."""
    from mlflow.entities import Metric

    ts = int(datetime.now(UTC).timestamp() * 1000)
    batch = [Metric(f"{prefix}{k}", float(v), ts, 0) for k, v in metrics.items() if v is not None]
    if batch:
        client().log_batch(run_id, metrics=batch)


def end_run(run_id: str, status: str) -> None:
    """Mark the run FINISHED / FAILED / KILLED."""
    client().set_terminated(run_id, status=status)


def run_info(run_id: str) -> dict[str, Any]:
    """Params, metrics, tags and times of a run as plain dicts."""
    r = client().get_run(run_id)
    return {
        "run_id": run_id,
        "experiment_id": r.info.experiment_id,
        "status": r.info.status,
        "start_time": datetime.fromtimestamp(r.info.start_time / 1000, UTC).isoformat(timespec="seconds"),
        "params": dict(r.data.params),
        "metrics": dict(r.data.metrics),
        "tags": {k: v for k, v in r.data.tags.items() if not k.startswith("mlflow.log-model")},
    }


def run_url(run_id: str) -> str:
    """Link to the run in the MLflow UI."""
    r = client().get_run(run_id)
    return f"{get_settings().mlflow_ui_url}/#/experiments/{r.info.experiment_id}/runs/{run_id}"


def version_url(model_name: str, version: str) -> str:
    """Link to a model version in the MLflow UI."""
    return f"{get_settings().mlflow_ui_url}/#/models/{model_name}/versions/{version}"


# --- registry -------------------------------------------------------------------------------


def register_version(model_name: str, *, run_id: str, model_uri: str, tags: dict[str, Any]) -> str:
    """Register the run's model as a new version (or return the version already registered for it)."""
    c = client()
    try:
        c.get_registered_model(model_name)
    except Exception:
        try:
            c.create_registered_model(model_name, tags={TAG_MODEL: model_name})
        except Exception:
            log.info("Registered model %s was created concurrently", model_name)
    existing = c.search_model_versions(f"name = '{model_name}' and run_id = '{run_id}'")
    if existing:
        version = str(existing[0].version)
        log.info("Run %s is already registered as %s v%s (retry): reusing it", run_id, model_name, version)
    else:
        import mlflow

        mv = mlflow.register_model(model_uri, model_name)  # resolves MLflow 3 logged-model URIs
        version = str(mv.version)
        log.info("Registered %s as %s v%s", model_uri, model_name, version)
    set_version_tags(model_name, version, tags)
    return version


def set_version_tags(model_name: str, version: str, tags: dict[str, Any]) -> None:
    c = client()
    for k, v in tags.items():
        c.set_model_version_tag(model_name, version, k, str(v))


def version_info(model_name: str, version: str) -> dict[str, Any]:
    """Tags, aliases, source run and creation time of a model version."""
    mv = client().get_model_version(model_name, version)
    return {
        "name": model_name,
        "version": str(mv.version),
        "run_id": mv.run_id,
        "source": mv.source,
        "aliases": list(mv.aliases or []),
        "tags": dict(mv.tags or {}),
        "created": datetime.fromtimestamp(mv.creation_timestamp / 1000, UTC).isoformat(timespec="seconds"),
    }


def alias_version(model_name: str, alias: str) -> str | None:
    """The version an alias points at, or None (no such model or alias)."""
    try:
        return str(client().get_model_version_by_alias(model_name, alias).version)
    except Exception:
        return None


def set_alias(model_name: str, alias: str, version: str) -> None:
    client().set_registered_model_alias(model_name, alias, version)
    set_version_tags(model_name, version, {alias_set_at(alias): now_iso()})
    log.info("Alias %s@%s -> v%s", model_name, alias, version)


def promote_to_champion(model_name: str, version: str) -> dict[str, str | None]:
    """Point ``champion`` at ``version``, keeping the old champion as ``previous``. Idempotent."""
    old = alias_version(model_name, CHAMPION)
    if old == version:
        log.info("%s v%s is already champion", model_name, version)
        return {"champion": version, "previous": alias_version(model_name, PREVIOUS)}
    if old is not None:
        set_alias(model_name, PREVIOUS, old)
    set_alias(model_name, CHAMPION, version)
    if alias_version(model_name, CHALLENGER) == version:
        client().delete_registered_model_alias(model_name, CHALLENGER)
    return {"champion": version, "previous": old}


def download_artifacts(run_id: str, artifact_path: str, dst: Path) -> Path:
    """Download run artifacts (a file or folder) under ``dst``."""
    import mlflow.artifacts

    client()
    dst.mkdir(parents=True, exist_ok=True)
    return Path(
        mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path=artifact_path, dst_path=str(dst))
    )


def scratch_dir() -> Path:
    return Path(tempfile.mkdtemp(prefix="modelops-"))
