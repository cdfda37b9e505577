"""Every trainer x task type x table shape trains, passes the gate and is scored as the service scores.

Table shapes: with or without a categorical feature, with or without nulls (in numeric, integer,
boolean and categorical features alike); integer features are stored as whole-number floats, as
warehouse exports often store them. The PyTorch trainer once crashed on every table without a
categorical feature, and a served model answered 500 to rows without a null; both only showed on
tables the bundled example does not have.

Each case runs the real trainer and logs its MLflow model (a SQLite store in the test's folder),
scores the holdout, gates it against the naive baseline with the spec's rules, and scores the smoke
test's rows (the sample plus no-null, one-null-each and type-edge rows) through the service's own
conversion, which must equal offline scoring. The real bento and HTTP are covered by
tests/e2e/test_drafted_specs.py (scikit-learn, every task type) and tests/e2e/test_own_models.py
(PyTorch, multiclass and regression; the bundled example is binary).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from include.modelops import scoring
from include.modelops.evaluation.gate import decide
from include.modelops.evaluation.metrics import baseline_scores
from include.modelops.evaluation.report import evaluate
from include.modelops.serving.contract import request_row_model, request_rows, rows_to_frame, smoke_rows
from include.modelops.spec import ModelSpec

pytestmark = pytest.mark.integration

TASKS = {
    "binary": ("binary_classification", "roc_auc", {"roc_auc": {"min": 0.75}}),
    "multiclass": ("multiclass_classification", "macro_f1", {"macro_f1": {"min": 0.55}}),
    "regression": ("regression", "rmse", {"r2": {"min": 0.5}}),
}
LEVELS = ["low", "mid", "high"]


def table(task: str, *, categoricals: bool, nulls: bool, n: int = 1200, seed: int = 3) -> pd.DataFrame:
    from sklearn.datasets import make_classification, make_regression

    rng = np.random.default_rng(seed)
    if task == "regression":
        X, y = make_regression(n_samples=n, n_features=3, n_informative=3, noise=5.0, random_state=seed)
    else:
        X, y = make_classification(
            n_samples=n,
            n_features=3,
            n_informative=3,
            n_redundant=0,
            n_classes=2 if task == "binary" else 3,
            class_sep=1.5,
            random_state=seed,
        )
        y = y if task == "binary" else np.array(["amber", "green", "red"])[y]
    frame = pd.DataFrame(X, columns=["x0", "x1", "x2"])
    frame["visits"] = np.clip(np.round(X[:, 0] * 10 + 50), 0, 100).astype("float64")  # whole floats
    frame["member"] = pd.array(X[:, 1] > 0, dtype="boolean")
    if categoricals:
        frame["level"] = np.array(LEVELS, dtype=object)[np.digitize(X[:, 2], [-0.5, 0.5])]
    if nulls:
        for col in frame.columns:
            frame.loc[rng.random(n) < 0.07, col] = None
    frame["y"] = y
    return frame


def spec_for(task: str, framework: str, *, categoricals: bool, nulls: bool) -> ModelSpec:
    task_name, metric, thresholds = TASKS[task]
    gaps = {"max_null_fraction": 0.2} if nulls else {}
    features = [{"name": f"x{i}", "type": "numeric", "min": -20, "max": 20, **gaps} for i in range(3)]
    features += [
        {"name": "visits", "type": "integer", "min": 0, "max": 100, **gaps},
        {"name": "member", "type": "boolean", **gaps},
    ]
    if categoricals:
        features.append({"name": "level", "type": "categorical", "categories": LEVELS, **gaps})
    params = (
        {"max_iter": 40}
        if framework == "sklearn"
        else {"epochs": 12, "hidden_sizes": [32], "patience": 4, "batch_size": 256}
    )
    return ModelSpec.model_validate(
        {
            "name": "shapes",
            "description": "Every table shape.",
            "owner": {"team": "t", "email": "t@example.com"},
            "task": task_name,
            "data": {"path": "unused.parquet", "min_rows": 100},
            "target": {"name": "y", **({"classes": [0, 1]} if task == "binary" else {})},
            "features": features,
            "training": {"framework": framework, "params": params},
            "evaluation": {
                "primary_metric": metric,
                "bootstrap_samples": 50,
                "gate": {"thresholds": thresholds, "min_margin_over_baseline": 0.05},
            },
        }
    )


@pytest.mark.parametrize("nulls", [False, True], ids=["no-nulls", "nulls"])
@pytest.mark.parametrize("categoricals", [False, True], ids=["no-categoricals", "categoricals"])
@pytest.mark.parametrize("task", list(TASKS))
@pytest.mark.parametrize("framework", ["sklearn", "torch"])
def test_every_trainer_trains_gates_and_serves_every_table(
    sqlite_mlflow_store, framework, task, categoricals, nulls
):
    import mlflow

    from include.modelops.training import get_trainer

    spec = spec_for(task, framework, categoricals=categoricals, nulls=nulls)
    data = table(task, categoricals=categoricals, nulls=nulls)
    train, holdout = data.iloc[:900].reset_index(drop=True), data.iloc[900:].reset_index(drop=True)
    trainer = get_trainer(framework)
    with mlflow.start_run():
        fitted = trainer.fit(spec, train, params=dict(spec.training.params))
        model_uri = trainer.log_model(fitted, spec, train.head(50))
    model = scoring.load_pyfunc(model_uri)

    scores = scoring.score(spec, model, holdout)
    assert np.all(np.isfinite(scores))
    report = evaluate(
        spec,
        holdout,
        candidate_scores=scores,
        baseline_scores=baseline_scores(spec, train["y"], len(holdout)),
    )
    decision = decide(spec, report)
    assert decision["passed"], decision["summary"]

    sample = request_rows(spec, holdout.head(10))
    rows = smoke_rows(spec, sample)
    validator = request_row_model(spec)
    rows = [validator.model_validate(r).model_dump() for r in rows]  # what the service hands the model
    served = scoring.to_scores(
        spec, model.predict(scoring.conform_to_model(rows_to_frame(spec, rows), model))
    )
    offline = scoring.score(spec, model, pd.DataFrame.from_records(rows, columns=spec.feature_names))
    np.testing.assert_allclose(served, offline, atol=1e-6)
    if nulls:
        assert any(v is None for r in rows for v in r.values())
    assert any(all(v is not None for v in r.values()) for r in rows)
