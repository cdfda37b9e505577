"""The deliberately broken candidate (``include/modelops/demo/faulty_model.py``), loaded as MLflow loads it."""

from __future__ import annotations

import time

import numpy as np
import pandas as pd
import pytest

from include.modelops.demo.faults import MODEL_CODE

ROWS = pd.DataFrame({"x": [0.0, 1.0, 2.0, 3.0]})


@pytest.fixture(scope="module")
def inner_model(tmp_path_factory) -> str:
    """A real fitted classifier saved as an MLflow model that answers P(class) per row."""
    import mlflow.sklearn
    from sklearn.linear_model import LogisticRegression

    path = tmp_path_factory.mktemp("inner") / "model"
    model = LogisticRegression().fit(ROWS, [0, 0, 1, 1])
    mlflow.sklearn.save_model(model, str(path), pyfunc_predict_fn="predict_proba")
    return str(path)


def load_faulty(tmp_path, inner: str, config: dict):
    import mlflow.pyfunc

    path = tmp_path / "faulty"
    mlflow.pyfunc.save_model(
        str(path), python_model=str(MODEL_CODE), artifacts={"inner": inner}, model_config=config
    )
    return mlflow.pyfunc.load_model(str(path))


def test_error_candidate_fails_from_its_first_prediction(tmp_path, inner_model):
    model = load_faulty(tmp_path, inner_model, {"fault": "error"})
    with pytest.raises(Exception, match="injected fault"):
        model.predict(ROWS)


def test_fault_after_s_answers_like_the_inner_model_then_starts_failing(tmp_path, inner_model):
    import mlflow.pyfunc

    inner = np.asarray(mlflow.pyfunc.load_model(inner_model).predict(ROWS), dtype=float)
    model = load_faulty(tmp_path, inner_model, {"fault": "error", "fault_after_s": 1.0})
    time.sleep(1.2)  # loaded long ago: the clock starts at the first prediction, not at load
    np.testing.assert_allclose(model.predict(ROWS), inner)
    time.sleep(1.05)
    with pytest.raises(Exception, match="injected fault"):
        model.predict(ROWS)


def test_shift_after_s_moves_scores_only_once_the_fault_is_on(tmp_path, inner_model):
    import mlflow.pyfunc

    inner = np.asarray(mlflow.pyfunc.load_model(inner_model).predict(ROWS), dtype=float)
    model = load_faulty(tmp_path, inner_model, {"fault": "shift", "fault_after_s": 0.5})
    np.testing.assert_allclose(model.predict(ROWS), inner)
    time.sleep(0.6)
    shifted = model.predict(ROWS)
    np.testing.assert_allclose(shifted[:, 1], np.clip(inner[:, 1] + 0.5, 0, 1))
