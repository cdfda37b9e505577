"""The gate's always-on checks: better than chance, and a champion consistent with its record (issue 16)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from include.modelops.evaluation.gate import decide
from include.modelops.evaluation.metrics import (
    CHAMPION_COLLAPSE_SHARE,
    CHANCE_MIN_SIGMAS,
    CHANCE_PERMUTATIONS,
    baseline_scores,
    chance_level,
    compute_metrics,
)
from include.modelops.evaluation.report import evaluate, render_html
from include.modelops.governance import card_render, model_card
from include.modelops.spec import ModelSpec

ROWS = 3000


def spec(**gate) -> ModelSpec:
    return ModelSpec.model_validate(
        {
            "name": "churn_gate",
            "description": "Test.",
            "owner": {"team": "t", "email": "t@example.com"},
            "task": "binary_classification",
            "data": {"path": "unused.parquet"},
            "target": {"name": "churned", "classes": [0, 1]},
            "features": [{"name": "tenure", "type": "numeric"}],
            "evaluation": {"primary_metric": "roc_auc", "bootstrap_samples": 100, "gate": gate},
        }
    )


class Holdout:
    """Labels with 30% positives and calibrated scores whose quality ``separation`` sets."""

    def __init__(self, seed: int = 3) -> None:
        self.rng = np.random.default_rng(seed)
        self.y = (self.rng.random(ROWS) < 0.3).astype(int)
        self.df = pd.DataFrame({"churned": self.y})

    def scores(self, separation: float, y: np.ndarray | None = None) -> np.ndarray:
        y = self.y if y is None else y
        x = separation * y + self.rng.standard_normal(len(y))
        return 1.0 / (1.0 + np.exp(-(math.log(0.3 / 0.7) + separation * x - separation**2 / 2)))


def run(s: ModelSpec, data: Holdout, candidate, champion=None, recorded=None) -> tuple[dict, dict]:
    report = evaluate(
        s,
        data.df,
        candidate_scores=candidate,
        baseline_scores=baseline_scores(s, data.y, ROWS),
        champion_scores=champion,
        champion_version=None if champion is None else "3",
        candidate_version="4",
        champion_recorded_metrics=recorded,
    )
    return report, decide(s, report)


def check(decision: dict, name: str) -> dict:
    return next(c for c in decision["checks"] if c["name"] == name)


# ------------------------------------------------------------------------------ chance


def test_chance_level_of_scores_that_carry_no_information_is_their_own_score():
    data = Holdout()
    s = spec()
    noise = data.rng.random(ROWS)
    level = chance_level(s, data.y, noise, metric="roc_auc", seed=1)
    assert level["valid"] == CHANCE_PERMUTATIONS
    assert abs(level["mean"] - 0.5) < 0.01 and 0 < level["sd"] < 0.03
    assert abs(level["value"] - level["mean"]) < 3 * level["sd"]


def test_a_candidate_at_chance_is_rejected_even_when_every_other_rule_passes():
    data = Holdout()
    # The weakest gate the spec allows; the candidate scores noise that happens to beat roc_auc 0.501.
    s = spec(thresholds={"roc_auc": {"min": 0.501}}, min_margin_over_baseline=0.0)
    noise = data.rng.random(ROWS)
    noise_auc = compute_metrics(s, data.y, noise)["roc_auc"]
    if noise_auc < 0.501:  # make it pass the threshold, as a lucky shuffled model would
        noise = 1.0 - noise
    _, decision = run(s, data, noise)

    assert decision["failed_checks"] == ["roc_auc better than chance"], decision["summary"]
    chance = check(decision, "roc_auc better than chance")
    assert chance["value"] < CHANCE_MIN_SIGMAS and chance["threshold"] == CHANCE_MIN_SIGMAS
    assert "is not better than chance" in decision["summary"]


def test_a_useful_candidate_is_far_better_than_chance():
    data = Holdout()
    _, decision = run(spec(), data, data.scores(1.5))
    assert decision["passed"] is True, decision["summary"]
    assert check(decision, "roc_auc better than chance")["value"] > 20


def test_constant_scores_are_not_better_than_chance():
    data = Holdout()
    _, decision = run(spec(min_margin_over_baseline=0.0), data, np.full(ROWS, 0.3))
    assert "roc_auc better than chance" in decision["failed_checks"]


def test_a_report_without_a_chance_level_fails_closed():
    data = Holdout()
    s = spec()
    report, _ = run(s, data, data.scores(1.5))
    del report["chance"]
    decision = decide(s, report)
    assert decision["passed"] is False
    assert "was not computed" in check(decision, "roc_auc better than chance")["reason"]


# ------------------------------------------------------------------------------ champion collapse


def test_a_champion_that_collapses_on_the_new_holdout_fails_the_gate_closed():
    data = Holdout()
    s = spec()
    # The labels of the new data broke: the champion (0.988 when evaluated) now scores ~0.5 or worse.
    broken = data.rng.permutation(data.y)
    champion = data.scores(4.0, y=broken)
    candidate = data.scores(3.0)
    _, decision = run(s, data, candidate, champion=champion, recorded={"roc_auc": 0.988})

    assert decision["passed"] is False
    assert "champion_consistent" in decision["failed_checks"]
    collapse = check(decision, "champion_consistent")
    assert collapse["value"] > 0.5 and collapse["threshold"] == CHAMPION_COLLAPSE_SHARE
    # The summary leads with it, naming the champion and both scores.
    assert decision["summary"].startswith("REJECTED: champion v3 scored 0.")
    assert "roc_auc on this holdout but 0.988 when it was evaluated" in decision["summary"]
    assert "the data changed or broke, so the candidate is not promoted" in decision["summary"]
    # ... although the candidate is far better than the collapsed champion.
    assert check(decision, "roc_auc drop vs champion")["passed"] is True


def test_a_champion_that_drifts_a_little_is_consistent():
    data = Holdout()
    s = spec()
    champion = data.scores(2.0)
    recorded = compute_metrics(s, data.y, data.scores(2.6))["roc_auc"]  # it was a bit better back then
    _, decision = run(s, data, data.scores(2.4), champion=champion, recorded={"roc_auc": recorded})

    consistent = check(decision, "champion_consistent")
    assert consistent["passed"] is True, consistent["reason"]
    assert 0 < consistent["value"] < CHAMPION_COLLAPSE_SHARE
    assert decision["passed"] is True, decision["summary"]


def test_a_champion_without_a_recorded_score_is_not_compared():
    data = Holdout()
    _, decision = run(spec(), data, data.scores(2.4), champion=data.scores(2.0))
    consistent = check(decision, "champion_consistent")
    assert consistent["passed"] is True
    assert consistent["reason"] == "champion v3 has no recorded holdout roc_auc; not compared"


def test_the_model_card_and_the_report_show_why_a_collapsed_champion_blocked_the_candidate():
    data = Holdout()
    s = spec()
    champion = data.scores(4.0, y=data.rng.permutation(data.y))
    report, decision = run(s, data, data.scores(3.0), champion=champion, recorded={"roc_auc": 0.988})

    card = model_card.build_card(
        s, model_name=s.name, version="4", run={}, validation=None, evaluation=report, decision=decision
    )
    for text in (
        card_render.render_markdown(card),
        card_render.render_html(card),
        render_html(report, decision),
    ):
        assert "champion_consistent" in text
        assert "when it was evaluated" in text and "the data changed or broke" in text


@pytest.mark.parametrize("task", ["multiclass_classification", "regression"])
def test_chance_level_works_for_every_task(task):
    rng = np.random.default_rng(0)
    if task == "regression":
        s = ModelSpec.model_validate(
            {
                **spec().model_dump(mode="json"),
                "task": task,
                "target": {"name": "churned"},
                "evaluation": {"primary_metric": "rmse"},
            }
        )
        y = rng.normal(size=ROWS)
        good, noise = y + 0.3 * rng.normal(size=ROWS), rng.normal(size=ROWS)
    else:
        s = ModelSpec.model_validate(
            {
                **spec().model_dump(mode="json"),
                "task": task,
                "target": {"name": "churned", "classes": ["a", "b", "c"]},
                "evaluation": {"primary_metric": "macro_f1"},
            }
        )
        codes = rng.integers(0, 3, ROWS)
        y = np.asarray(["a", "b", "c"])[codes]
        good = np.eye(3)[codes] * 0.8 + 0.2 / 3
        noise = rng.dirichlet(np.ones(3), ROWS)
    metric = s.evaluation.primary_metric
    high_better = metric != "rmse"
    for scores, skilled in ((good, True), (noise, False)):
        level = chance_level(s, y, scores, metric=metric)
        edge = (level["value"] - level["mean"]) * (1 if high_better else -1)
        assert (edge > CHANCE_MIN_SIGMAS * level["sd"]) is skilled, (skilled, level)


def test_the_champion_record_is_read_from_the_run_it_was_registered_from(tmp_path, monkeypatch):
    # evaluate_candidate logs the candidate's holdout metrics as holdout_<metric> on its run (and
    # the champion's re-scored ones as champion_holdout_<metric>); the version keeps that run.
    import mlflow
    from sklearn.dummy import DummyClassifier

    from include.modelops.pipelines import training as steps
    from include.modelops.platform import tracking

    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    s = spec()
    tracking.client().create_experiment(s.name, artifact_location=str(tmp_path / "artifacts"))
    run_id = tracking.ensure_run(s, dag_id="d", dag_run_id="r1")
    tracking.log_metrics(run_id, {"roc_auc": 0.988, "brier": 0.02}, prefix="holdout_")
    tracking.log_metrics(run_id, {"roc_auc": 0.7}, prefix="champion_holdout_")
    with mlflow.start_run(run_id=run_id):
        uri = mlflow.sklearn.log_model(
            DummyClassifier().fit([[0], [1]], [0, 1]), name="model", serialization_format="cloudpickle"
        ).model_uri
    version = tracking.register_version(s.name, run_id=run_id, model_uri=uri, tags={})

    assert steps._recorded_holdout_metrics(s.name, version) == {"roc_auc": 0.988, "brier": 0.02}
    assert steps._recorded_holdout_metrics(s.name, "99") is None
