"""One way to turn any logged model into scores, used by evaluation and by the service.

Every trainer logs an MLflow pyfunc model whose ``predict`` takes a DataFrame of the
spec's feature columns. Flavours differ in what comes back (labels, a probability
column, a probability matrix); ``to_scores`` maps all of them to the contract:

* binary classification: a 1-D float array, probability of the positive class;
* multiclass: a 2-D array of class probabilities (columns in ``target.classes`` order);
* regression: a 1-D float array of predictions.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import pandas as pd

    from include.modelops.spec import ModelSpec


def feature_frame(spec: ModelSpec, df: pd.DataFrame) -> pd.DataFrame:
    """The feature columns in spec order, with booleans as bool and integers as float-safe ints."""
    frame = df[spec.feature_names].copy()
    for name in spec.boolean_features:
        frame[name] = frame[name].astype(bool)
    return frame


def to_scores(spec: ModelSpec, output: Any) -> np.ndarray:
    """Normalise a pyfunc model's output to the scoring contract (see the module docstring)."""
    arr = np.asarray(getattr(output, "values", output), dtype=float)
    task = spec.task.value
    if task == "binary_classification":
        if arr.ndim == 2:
            arr = arr[:, -1]
        return arr.reshape(-1)
    if task == "multiclass_classification":
        return arr if arr.ndim == 2 else arr.reshape(len(arr), -1)
    return arr.reshape(-1)


@contextlib.contextmanager
def quiet_model_io() -> Iterator[None]:
    """Silence the deprecation noise of saving or loading a model inside an Airflow task.

    skops (MLflow's safe scikit-learn format) looks up each type's module by scanning
    ``sys.modules`` with ``getattr``; in a task process that touches every one of Airflow's
    deprecated-import shims, and each answers with a FutureWarning: ~1,000 log lines per load
    around the lines that matter. Only that category is silenced, only for the block.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        warnings.simplefilter("ignore", DeprecationWarning)
        yield


def load_pyfunc(model_uri: str) -> Any:
    """Load a model from MLflow (``models:/name/3``, ``models:/name@champion``, ``runs:/...``)."""
    import mlflow.pyfunc

    with quiet_model_io():
        return mlflow.pyfunc.load_model(model_uri)


def score(spec: ModelSpec, model: Any, df: pd.DataFrame) -> np.ndarray:
    """Score rows of ``df`` with a loaded pyfunc model."""
    return to_scores(spec, model.predict(feature_frame(spec, df)))
