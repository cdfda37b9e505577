"""Asset definitions: the lineage a model leaves in Airflow (dataset -> candidate -> bento -> production).

The one place Asset names and URIs are made. Other DAGs (drift detection, rollout) schedule
on these; a data pipeline can trigger retraining by emitting the dataset asset.
"""

from __future__ import annotations

from airflow.sdk import Asset


def _asset(model: str, kind: str) -> Asset:
    return Asset(name=f"{model}.{kind}", uri=f"modelops://{model}/{kind}", group="modelops")


def validated_dataset(model: str) -> Asset:
    """Emitted when a dataset passes validation for ``model``."""
    return _asset(model, "validated_dataset")


def candidate(model: str) -> Asset:
    """Emitted when a candidate version is registered (passed or rejected)."""
    return _asset(model, "candidate")


def deployable_bento(model: str) -> Asset:
    """Emitted when a bento passed smoke-serving (train/serve skew check)."""
    return _asset(model, "deployable_bento")


def production(model: str) -> Asset:
    """Emitted when the champion alias moves."""
    return _asset(model, "production")


def drift_report(model: str) -> Asset:
    """Emitted by every monitoring run with a verdict or an outcome (the figures in the event's extra)."""
    return _asset(model, "drift_report")


def retrain_requested(model: str) -> Asset:
    """Emitted when the retraining policy decides to retrain ({reason, window, figures} in the extra);
    the training DAG is scheduled on it."""
    return _asset(model, "retrain_requested")
