"""Real models and bentos for rollout tests: a stable version, a good candidate, faulty candidates."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from include.modelops.spec import ModelSpec


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
    from include.modelops.rollout.faults import register_faulty_candidate

    return register_faulty_candidate(spec, inner_version, fault, experiment_id=experiment_id, workdir=workdir)


def build(spec: ModelSpec, version: str) -> str:
    from include.modelops.packaging import build_bento

    return build_bento(spec, version, f"models:/{spec.name}/{version}")
