"""The one conversion between data and model (``scoring.feature_frame``), as training, evaluation,
the smoke test and the service use it.

A drafted spec marks a float64 column of whole numbers as ``integer``. The service used to turn
an integer feature into int64 whenever a batch held no null, while the model had been trained
(and its MLflow signature inferred) on float64: every such valid request got HTTP 500 ("Can not
safely convert int64 to float64"). These tests train on that kind of table and score request
rows the way the service does.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from include.modelops import scoring
from include.modelops.serving.contract import request_row_model, request_rows, rows_to_frame, smoke_rows
from include.modelops.spec import ModelSpec


def spec_for(task: str = "binary_classification") -> ModelSpec:
    return ModelSpec.model_validate(
        {
            "name": "visits",
            "description": "Whole numbers stored as floats, as many warehouse tables do.",
            "owner": {"team": "t", "email": "t@example.com"},
            "task": task,
            "data": {"path": "unused.parquet"},
            "target": {"name": "y", **({"classes": [0, 1]} if task == "binary_classification" else {})},
            "features": [
                {"name": "visits", "type": "integer", "min": 0, "max": 500, "max_null_fraction": 0.2},
                {"name": "age", "type": "integer", "min": 18, "max": 99},
                {"name": "spend", "type": "numeric", "min": 0, "max": 1000, "max_null_fraction": 0.2},
                {"name": "member", "type": "boolean", "max_null_fraction": 0.2},
                {"name": "plan", "type": "categorical", "categories": ["a", "b"], "max_null_fraction": 0.2},
            ],
            "evaluation": {"primary_metric": "roc_auc" if task == "binary_classification" else "rmse"},
        }
    )


def float_table(n: int = 400, seed: int = 0) -> pd.DataFrame:
    """A table whose integer features are float64 whole numbers, with nulls in the nullable ones."""
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(
        {
            "visits": rng.integers(0, 400, n).astype("float64"),
            "age": rng.integers(18, 99, n).astype("float64"),
            "spend": rng.uniform(0, 900, n),
            "member": pd.array(rng.random(n) < 0.5, dtype="boolean"),
            "plan": rng.choice(["a", "b"], n).astype(object),
        }
    )
    for col in ("visits", "spend", "member", "plan"):
        frame.loc[rng.random(n) < 0.1, col] = None
    frame["y"] = ((frame["visits"].fillna(200) + frame["spend"].fillna(450) / 3) > 330).astype(int)
    return frame


def saved_model(tmp_path, spec: ModelSpec, frame: pd.DataFrame, *, example: pd.DataFrame | None = None):
    """Train the real scikit-learn trainer, save it as MLflow saves it (signature included), load it back."""
    import mlflow.pyfunc
    import mlflow.sklearn
    from mlflow.models import infer_signature

    from include.modelops.training import sklearn_trainer

    pipe = sklearn_trainer.fit(spec, frame, params={"max_iter": 20})
    example = scoring.feature_frame(spec, frame) if example is None else example
    output = pipe.predict_proba(example) if spec.task.value != "regression" else pipe.predict(example)
    path = tmp_path / "model"
    mlflow.sklearn.save_model(
        pipe,
        str(path),
        signature=infer_signature(example, output),
        pyfunc_predict_fn="predict_proba" if spec.task.value != "regression" else "predict",
        skops_trusted_types=sklearn_trainer._library_types(pipe),
    )
    return mlflow.pyfunc.load_model(str(path))


def test_one_dtype_per_feature_type_whatever_the_values():
    spec = spec_for()
    with_nulls = scoring.feature_frame(spec, float_table())
    ints_no_null = scoring.feature_frame(
        spec, pd.DataFrame({"visits": [3], "age": [40], "spend": [10], "member": [True], "plan": ["a"]})
    )
    for frame in (with_nulls, ints_no_null):
        assert frame.dtypes.astype(str).to_dict() == {
            "visits": "float64",
            "age": "float64",
            "spend": "float64",
            "member": "float64",
            "plan": "object",
        }


def test_a_null_boolean_is_missing_not_true():
    spec = spec_for()
    frame = scoring.feature_frame(
        spec,
        pd.DataFrame(
            {
                "visits": [1, 1, 1],
                "age": [20, 20, 20],
                "spend": [1, 1, 1],
                "member": [True, False, None],
                "plan": ["a", None, "b"],
            }
        ),
    )
    assert frame["member"].iloc[:2].tolist() == [1.0, 0.0] and np.isnan(frame["member"].iloc[2])
    assert frame["plan"].tolist() == ["a", None, "b"]


@pytest.mark.parametrize("task", ["binary_classification", "regression"])
def test_request_rows_without_nulls_score_like_the_training_data(tmp_path, task):
    spec = spec_for(task)
    table = float_table()
    model = saved_model(tmp_path, spec, table)
    clean = table.dropna().head(30)
    rows = request_rows(spec, clean)
    rows = [{**r, "visits": int(r["visits"]), "age": int(r["age"])} for r in rows]  # a client's JSON ints
    for batch in ([rows[0]], rows, smoke_rows(spec, rows)):
        served = scoring.to_scores(
            spec, model.predict(scoring.conform_to_model(rows_to_frame(spec, batch), model))
        )
        offline = scoring.score(spec, model, pd.DataFrame.from_records(batch, columns=spec.feature_names))
        assert served.shape[0] == len(batch) and np.all(np.isfinite(served))
        np.testing.assert_allclose(served, offline, atol=1e-12)


def test_a_model_registered_with_int64_and_bool_columns_is_still_scored(tmp_path):
    # Models registered before the conversion was fixed have `long` and `boolean` in their signature.
    spec = spec_for()
    table = float_table().dropna()
    old_example = table[spec.feature_names].astype({"visits": "int64", "age": "int64", "member": "bool"})
    model = saved_model(tmp_path, spec, table, example=old_example)
    types = {c.name: c.type.name for c in model.metadata.get_input_schema().inputs}
    assert types["visits"] == "long" and types["member"] == "boolean"
    scores = scoring.score(spec, model, table.head(25))
    assert scores.shape == (25,) and np.all((scores >= 0) & (scores <= 1))


def test_smoke_rows_cover_nulls_and_type_edges():
    spec = spec_for()
    sample = request_rows(spec, float_table().head(5))
    rows = smoke_rows(spec, sample)
    assert rows[:5] == sample
    edges = rows[5:]
    assert any(all(v is not None for v in r.values()) for r in edges), "a row with no null at all"
    for name in ("visits", "spend", "member", "plan"):  # every nullable feature null on its own
        assert any(r[name] is None and sum(v is None for v in r.values()) == 1 for r in edges), name
    assert any(type(r["spend"]) is int for r in edges), "a numeric feature sent as a JSON integer"
    assert any(type(r["visits"]) is float and type(r["age"]) is float for r in edges), "integers as 3.0"
    validator = request_row_model(spec)
    for row in rows:
        validator.model_validate(row)  # every edge row is a valid request


def test_category_codes_stored_as_floats_match_their_categories():
    # A categorical of numeric codes with a null is stored as float64 (1.0, NaN) by pandas and Parquet.
    spec = ModelSpec.model_validate(
        {
            "name": "codes",
            "description": "d",
            "owner": {"team": "t", "email": "t@example.com"},
            "task": "regression",
            "data": {"path": "x.parquet"},
            "target": {"name": "y"},
            "features": [
                {
                    "name": "store",
                    "type": "categorical",
                    "categories": ["1", "2", "2.5"],
                    "max_null_fraction": 0.5,
                }
            ],
            "evaluation": {"primary_metric": "rmse"},
        }
    )
    frame = scoring.feature_frame(spec, pd.DataFrame({"store": [1.0, None, 2.0, 2.5]}))
    assert frame["store"].tolist() == ["1", None, "2", "2.5"]
