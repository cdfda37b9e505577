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
    """The model's input: the spec's feature columns in spec order, one fixed dtype per feature type.

    This is the one conversion between data and model, used by training (so it fixes the
    logged signature), evaluation, the smoke test and the service:

    * numeric and integer → float64 (an integer feature may hold nulls, and data often stores
      whole numbers as floats: ``3.0`` and ``3`` are the same value to the model);
    * boolean → float64 1.0 / 0.0, NaN for a null (never "null is True", as ``astype(bool)`` does);
    * categorical → object, each value as text (the spec's categories are text), None for a null.

    A batch's dtypes never depend on the values in it, so MLflow's schema check cannot reject a
    valid batch for happening to hold no null, or only whole numbers.
    """
    import pandas as pd

    frame = pd.DataFrame(index=df.index)
    for feature in spec.features:
        column = df[feature.name]
        kind = feature.type.value
        if kind in ("numeric", "integer"):
            frame[feature.name] = _float_column(
                pd.to_numeric(column, errors="coerce") if column.dtype == object else column
            )
        elif kind == "boolean":
            frame[feature.name] = _float_column(column.astype("boolean"))
        else:
            missing = column.isna().to_numpy()
            if column.dtype.kind == "f":  # codes stored as floats because of a null: 1.0 is category "1"
                column = column.map(lambda v: str(int(v)) if float(v).is_integer() else str(v))
            text = column.astype(str).astype(object).to_numpy()
            text[missing] = None
            frame[feature.name] = text
    return frame


def _float_column(column: pd.Series) -> np.ndarray:
    return column.to_numpy(dtype="float64", na_value=np.nan)


def conform_to_model(frame: pd.DataFrame, model: Any) -> pd.DataFrame:
    """``frame`` (from ``feature_frame``) cast to the column types of ``model``'s signature.

    Models trained since ``feature_frame`` fixed one dtype per type take the frame as it is.
    Models registered before kept an ``integer`` feature as int64 (``long``) and a boolean as
    ``bool`` in their signature; MLflow refuses float64 for those ("Can not safely convert
    float64 to int64"), so a champion registered then is still re-scored, served and rolled
    back to: whole-number floats become int64 and 0/1 floats bool when the column has no null.
    """
    schema = _input_schema(model)
    if not schema:
        return frame
    out = None
    for name, wanted in schema.items():
        if (
            name not in frame.columns
            or frame[name].dtype != np.float64
            or wanted not in ("long", "integer", "boolean")
        ):
            continue
        values = frame[name].to_numpy()
        if np.isnan(values).any():
            continue  # MLflow's own error names the column; there is no lossless cast
        out = frame.copy() if out is None else out
        out[name] = values.astype(bool) if wanted == "boolean" else values.astype(np.int64)
    return frame if out is None else out


def _input_schema(model: Any) -> dict[str, str]:
    """Column name → MLflow type name of a pyfunc model's input signature ({} without one)."""
    cached = getattr(model, "_modelops_input_schema", None)
    if cached is not None:
        return cached
    schema: dict[str, str] = {}
    try:
        inputs = model.metadata.get_input_schema()
        for col in getattr(inputs, "inputs", None) or []:
            if getattr(col, "name", None):
                schema[col.name] = getattr(col.type, "name", str(col.type))
    except Exception:  # no metadata (a plain callable in tests) or no signature
        schema = {}
    try:
        model._modelops_input_schema = schema
    except Exception:  # an object that takes no attributes: look it up each time
        pass
    return schema


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
    return to_scores(spec, model.predict(model_frame(spec, model, df)))


def model_frame(spec: ModelSpec, model: Any, df: pd.DataFrame) -> pd.DataFrame:
    """``feature_frame`` of ``df``, conformed to ``model``'s signature (see ``conform_to_model``)."""
    return conform_to_model(feature_frame(spec, df), model)
