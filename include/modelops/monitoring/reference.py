"""The drift reference: a fixed-size sample of the training split, stored with the training run.

Written at training time (``steps.split_dataset``) as the MLflow artifact
``monitoring/reference_sample.parquet`` of the run that produced the version, so monitoring
compares live traffic with what the model actually learned from, without re-reading the
training set. Its size is the spec's ``monitoring.reference_sample_rows`` (default 20,000).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from include.modelops.platform import tracking

if TYPE_CHECKING:
    import pandas as pd

    from include.modelops.spec import ModelSpec

ARTIFACT_DIR = "monitoring"
FILE_NAME = "reference_sample.parquet"


class ReferenceMissingError(LookupError):
    """The version's training run has no reference sample (trained before monitoring existed)."""


def reference_sample(spec: ModelSpec, train: pd.DataFrame) -> pd.DataFrame:
    """Up to ``monitoring.reference_sample_rows`` rows of the features and target, seeded."""
    cols = [c for c in [*spec.feature_names, spec.target.name] if c in train.columns]
    n = min(len(train), spec.monitoring.reference_sample_rows)
    sample = train[cols] if n == len(train) else train[cols].sample(n=n, random_state=spec.split.seed)
    return sample.reset_index(drop=True)


def log_reference_sample(spec: ModelSpec, train: pd.DataFrame, run_id: str, out_dir: Path) -> str:
    """Write the sample next to the split and attach it to the training run; returns its ``runs:/`` URI."""
    path = Path(out_dir) / FILE_NAME
    reference_sample(spec, train).to_parquet(path, index=False)
    return tracking.log_file(run_id, path, ARTIFACT_DIR)


def load_reference_sample(model: str, version: str, dst: Path) -> pd.DataFrame:
    """The reference sample of a model version's training run.

    Raises:
        ReferenceMissingError: the run has none; retrain the version to create it.
    """
    import pandas as pd

    run_id = tracking.version_info(model, version)["run_id"]
    try:
        path = tracking.download_artifacts(run_id, f"{ARTIFACT_DIR}/{FILE_NAME}", dst)
    except Exception as exc:
        raise ReferenceMissingError(
            f"{model} v{version} (MLflow run {run_id}) has no {ARTIFACT_DIR}/{FILE_NAME}: it was trained before "
            f"reference samples were stored. Retrain it (trigger {model}_training) to monitor drift."
        ) from exc
    return pd.read_parquet(path)
