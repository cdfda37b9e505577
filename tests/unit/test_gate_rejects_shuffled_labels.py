"""A model trained on shuffled labels never passes the gate, for every task type (issue 16).

Real trainer (``sklearn_trainer.fit``), real scoring, evaluation and gate, on small tables made
here with sklearn's generators (not the bundled example). No Airflow, no MLflow: the model is
scored through the same ``predict`` a pyfunc model exposes (probabilities for classifiers).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest

from include.modelops import scoring
from include.modelops.evaluation.gate import decide
from include.modelops.evaluation.metrics import baseline_scores, compute_metrics
from include.modelops.evaluation.report import evaluate
from include.modelops.spec import ModelSpec
from include.modelops.training import sklearn_trainer

CLASSES = ["bronze", "gold", "silver"]  # string labels, in the score-column order sklearn uses
FEATURES = [f"x{i}" for i in range(5)]
TASKS = {
    "binary_classification": ("roc_auc", [0, 1], 0.501),
    "multiclass_classification": ("macro_f1", CLASSES, 0.334),
    "regression": ("r2", None, 0.001),
}
# The weakest gate check-specs accepts: thresholds a hair better than chance, no margin over the
# baseline, no champion limits, no slice rules.
WEAKEST = {"min_margin_over_baseline": 0.0, "max_drop_vs_champion": None}


def table(task: str, rows: int = 1500, seed: int = 7) -> pd.DataFrame:
    from sklearn.datasets import make_classification, make_regression

    if task == "regression":
        X, y = make_regression(n_samples=rows, n_features=5, n_informative=4, noise=20.0, random_state=seed)
    else:
        k = 3 if task == "multiclass_classification" else 2
        X, y = make_classification(
            n_samples=rows, n_features=5, n_informative=4, n_redundant=0, n_classes=k, random_state=seed
        )
        if k == 3:
            y = np.asarray(CLASSES, dtype=object)[y]
    df = pd.DataFrame(X, columns=FEATURES)
    df["label"] = y
    return df


def spec_for(task: str, gate: dict[str, Any]) -> ModelSpec:
    metric, classes, weakest = TASKS[task]
    return ModelSpec.model_validate(
        {
            "name": "shuffled",
            "description": "Test.",
            "owner": {"team": "t", "email": "t@example.com"},
            "task": task,
            "data": {"path": "unused.parquet"},
            "target": {"name": "label", **({"classes": classes} if classes else {})},
            "features": [{"name": f, "type": "numeric"} for f in FEATURES],
            "evaluation": {
                "primary_metric": metric,
                "bootstrap_samples": 100,
                "gate": {"thresholds": {metric: {"min": weakest}}, **gate},
            },
        }
    )


class Pyfunc:
    """What ``mlflow.pyfunc.load_model`` gives for the trainer's model: predict = probabilities."""

    def __init__(self, pipeline: Any, classifier: bool) -> None:
        self.predict = pipeline.predict_proba if classifier else pipeline.predict


def train(spec: ModelSpec, rows: pd.DataFrame) -> Pyfunc:
    return Pyfunc(sklearn_trainer.fit(spec, rows, params={"max_iter": 50}), spec.task.value != "regression")


def split(df: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    cut = int(len(df) * 0.7)
    return df.iloc[:cut].reset_index(drop=True), df.iloc[cut:].reset_index(drop=True)


def shuffled(df: pd.DataFrame, seed: int = 1) -> pd.DataFrame:
    out = df.copy()
    out["label"] = np.random.default_rng(seed).permutation(out["label"].to_numpy())
    return out


def gate(
    spec: ModelSpec,
    train_rows: pd.DataFrame,
    holdout: pd.DataFrame,
    *,
    champion: Pyfunc | None = None,
    champion_recorded: dict | None = None,
) -> dict:
    candidate = train(spec, train_rows)
    report = evaluate(
        spec,
        holdout,
        candidate_scores=scoring.score(spec, candidate, holdout),
        baseline_scores=baseline_scores(spec, train_rows["label"], len(holdout)),
        champion_scores=None if champion is None else scoring.score(spec, champion, holdout),
        champion_version=None if champion is None else "3",
        champion_recorded_metrics=champion_recorded,
    )
    return decide(spec, report)


GATES = {"weakest allowed": WEAKEST, "defaults": {}}


@pytest.mark.parametrize("gate_name", list(GATES))
@pytest.mark.parametrize("task", list(TASKS))
def test_a_model_trained_on_shuffled_labels_is_rejected(task, gate_name):
    spec = spec_for(task, GATES[gate_name])
    metric = spec.evaluation.primary_metric
    decision = gate(spec, *split(shuffled(table(task))))

    assert decision["passed"] is False, decision["summary"]
    assert f"{metric} better than chance" in decision["failed_checks"], decision["summary"]
    assert "is not better than chance" in decision["summary"]


@pytest.mark.parametrize("task", list(TASKS))
def test_a_model_trained_on_real_labels_passes_the_same_weak_gate(task):
    # The same data, labels intact: the chance check does not reject a model that learned something.
    spec = spec_for(task, WEAKEST)
    decision = gate(spec, *split(table(task)))

    assert decision["passed"] is True, decision["summary"]
    assert check(decision, f"{spec.evaluation.primary_metric} better than chance")["value"] > 10


def check(decision: dict, name: str) -> dict:
    return next(c for c in decision["checks"] if c["name"] == name)


@pytest.mark.parametrize("task", list(TASKS))
def test_a_champion_that_collapses_on_shuffled_data_fails_the_gate_closed(task):
    # The champion learned the real table and its holdout score was recorded; then the data broke
    # (labels shuffled). Re-scored on the new holdout it collapses: the gate blames the data.
    spec = spec_for(task, {})
    metric = spec.evaluation.primary_metric
    train_rows, holdout = split(table(task))
    champion = train(spec, train_rows)
    recorded = compute_metrics(spec, holdout["label"], scoring.score(spec, champion, holdout))

    broken_train, broken_holdout = split(shuffled(table(task, seed=8)))
    decision = gate(spec, broken_train, broken_holdout, champion=champion, champion_recorded=recorded)

    assert decision["passed"] is False
    assert "champion_consistent" in decision["failed_checks"]
    assert decision["summary"].startswith("REJECTED: champion v3 scored ")
    assert f"{metric} on this holdout but {recorded[metric]:.3f} when it was evaluated" in decision["summary"]
    assert "the data changed or broke" in decision["summary"]
