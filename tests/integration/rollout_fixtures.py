"""Real models and bentos for rollout tests: a stable version, a good candidate, faulty candidates."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from include.modelops.spec import ModelSpec

CANDIDATE_CODE = Path(__file__).with_name("rollout_candidate.py")


def train_and_register(spec: ModelSpec, frame: pd.DataFrame, *, seed: int, experiment_id: str) -> str:
    """Fit the project's scikit-learn pipeline on a sample of ``frame``; returns its registered version."""
    import mlflow

    from include.modelops.training import sklearn_trainer

    train = frame.sample(frac=0.8, random_state=seed)
    with mlflow.start_run(experiment_id=experiment_id):
        model = sklearn_trainer.fit(spec, train, params={"max_iter": 30, "random_state": seed})
        uri = sklearn_trainer.log_model(model, spec, train.head(50))
    return str(mlflow.register_model(uri, spec.name).version)


def register_faulty(spec: ModelSpec, inner_version: str, fault: str, *, experiment_id: str, workdir: Path) -> str:
    """Register a candidate that wraps version ``inner_version`` with ``fault``; returns its version."""
    import mlflow
    inner_dir = workdir / f"inner-v{inner_version}-{fault}"
    mlflow.artifacts.download_artifacts(f"models:/{spec.name}/{inner_version}", dst_path=str(inner_dir))
    inner = mlflow.pyfunc.load_model(str(inner_dir))
    with mlflow.start_run(experiment_id=experiment_id):
        info = mlflow.pyfunc.log_model(
            name="model", python_model=str(CANDIDATE_CODE), artifacts={"inner": str(inner_dir)},
            model_config={"fault": fault}, signature=inner.metadata.signature,
        )
    return str(mlflow.register_model(info.model_uri, spec.name).version)


def build(spec: ModelSpec, version: str) -> str:
    from include.modelops.packaging import build_bento

    return build_bento(spec, version, f"models:/{spec.name}/{version}")
