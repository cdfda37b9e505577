"""scikit-learn trainer: a preprocessing + gradient-boosting pipeline for tabular data.

``training.params`` in the spec are passed to the estimator (HistGradientBoosting*).
Class weights are left at 1 by default so that scores stay calibrated probabilities (the
gate checks Brier score and calibration error); set ``class_weight: balanced`` to trade
calibration for recall.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from include.modelops.scoring import feature_frame

if TYPE_CHECKING:
    import pandas as pd

    from include.modelops.spec import ModelSpec

log = logging.getLogger(__name__)


def build_pipeline(spec: ModelSpec, params: dict[str, Any]) -> Any:
    """Preprocessing (scaled numerics, one-hot categoricals, booleans as 0/1) + estimator."""
    from sklearn.compose import ColumnTransformer
    from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import Pipeline, make_pipeline
    from sklearn.preprocessing import OneHotEncoder, OrdinalEncoder, StandardScaler

    cats = {f.name: f.categories for f in spec.features if f.categories}
    pre = ColumnTransformer(
        [
            ("num", make_pipeline(SimpleImputer(strategy="median"), StandardScaler()), spec.numeric_features),
            (
                "cat",
                OneHotEncoder(
                    categories=[cats[c] for c in spec.categorical_features], handle_unknown="ignore"
                ),
                spec.categorical_features,
            ),
            ("bool", OrdinalEncoder(), spec.boolean_features),
        ],
        remainder="drop",
    )
    est_params = {"random_state": spec.split.seed, **params}
    if spec.task.value == "regression":
        est_params.pop("class_weight", None)
        estimator = HistGradientBoostingRegressor(**est_params)
    else:
        estimator = HistGradientBoostingClassifier(**est_params)
    return Pipeline([("preprocess", pre), ("model", estimator)])


def fit(
    spec: ModelSpec, train: pd.DataFrame, *, params: dict[str, Any], checkpoint_dir: Path | None = None
) -> Any:
    """Fit the pipeline on ``train`` (features + target). ``checkpoint_dir`` is unused: fits are seconds."""
    pipe = build_pipeline(spec, params)
    X, y = feature_frame(spec, train), train[spec.target.name]
    log.info("Training %s on %d rows x %d features", type(pipe[-1]).__name__, len(X), X.shape[1])
    t0 = time.perf_counter()
    pipe.fit(X, y)
    n_iter = getattr(pipe[-1], "n_iter_", None)
    log.info("Trained in %.1f s (%s boosting iterations)", time.perf_counter() - t0, n_iter)
    import mlflow

    if mlflow.active_run():
        mlflow.log_metrics({"train_seconds": time.perf_counter() - t0, "n_iter": float(n_iter or 0)})
    return pipe


def log_model(model: Any, spec: ModelSpec, input_example: pd.DataFrame) -> str:
    """Log the pipeline as an MLflow model with signature; pyfunc predicts probabilities."""
    import mlflow
    from mlflow.models import infer_signature

    example = feature_frame(spec, input_example)
    is_classifier = spec.task.value != "regression"
    output = model.predict_proba(example) if is_classifier else model.predict(example)
    from include.modelops.scoring import quiet_model_io

    with quiet_model_io():
        info = mlflow.sklearn.log_model(
            model,
            name="model",
            signature=infer_signature(example, output),
            input_example=example.head(5),
            pyfunc_predict_fn="predict_proba" if is_classifier else "predict",
            skops_trusted_types=_library_types(model),
        )
    return info.model_uri


def _library_types(model: Any) -> list[str]:
    """Types skops does not trust by default that come from scikit-learn or numpy themselves.

    MLflow saves scikit-learn models with skops (no arbitrary pickle code on load). Trusting
    only the libraries' own types keeps that guarantee: anything else still fails to save.
    """
    import skops.io

    untrusted = skops.io.get_untrusted_types(data=skops.io.dumps(model))
    return [t for t in untrusted if t.split(".")[0] in ("sklearn", "numpy")]
