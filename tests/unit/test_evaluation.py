"""Evaluation and the promotion gate, on synthetic scores (no models needed)."""

from __future__ import annotations

import copy
import json
import math
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import yaml

from include.modelops.evaluation.gate import decide
from include.modelops.evaluation.metrics import (
    BASELINE_DESCRIPTION,
    NUMERIC_SLICE_BINS,
    _pr_auc,
    _roc_auc,
    baseline_scores,
    compute_metrics,
    latency_profile,
    paired_bootstrap,
    slice_metrics,
)
from include.modelops.evaluation.report import evaluate, render_html
from include.modelops.platform import reports
from include.modelops.spec import ModelSpec

ROOT = Path(__file__).resolve().parents[2]
FRAUD_YAML = ROOT / "include" / "models" / "fraud_detection.yaml"
PREVALENCE = 0.05


# ------------------------------------------------------------------------------ helpers


def _merge(base: dict, update: dict) -> dict:
    out = copy.deepcopy(base)
    for key, value in update.items():
        if value and isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def fraud_spec(**gate: Any) -> ModelSpec:
    """The reference fraud spec with gate fields replaced (non-empty nested dicts are merged)."""
    raw = yaml.safe_load(FRAUD_YAML.read_text())
    return ModelSpec.model_validate(_merge(raw, {"evaluation": {"gate": gate}}) if gate else raw)


def other_spec(task: str, target: dict, evaluation: dict) -> ModelSpec:
    raw = yaml.safe_load(FRAUD_YAML.read_text())
    raw.update(
        task=task, target=target, evaluation=evaluation, risk_tier="medium", approval={"policy": "manual"}
    )
    return ModelSpec.model_validate(raw)


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-z))


class FraudHoldout:
    """A holdout of card transactions with calibrated synthetic scores of chosen quality.

    Each model sees a latent signal x ~ N(separation * y, 1), part of whose noise is shared
    between models (as real models trained on the same features share errors); its score is
    the exact posterior P(fraud | x), so scores are calibrated and separation sets the AUC
    (1.5 -> ~0.86, 2.0 -> ~0.92, 2.5 -> ~0.96).
    """

    def __init__(self, n: int = 8000, seed: int = 0) -> None:
        self.rng = np.random.default_rng(seed)
        self.y = (self.rng.random(n) < PREVALENCE).astype(int)
        self.shared = self.rng.standard_normal(n)
        self.df = pd.DataFrame(
            {
                "region": self.rng.choice(["north", "south", "east", "west", "central"], n),
                "channel": self.rng.choice(["pos", "online", "atm"], n),
                "is_fraud": self.y,
            }
        )

    def scores(self, separation: float) -> np.ndarray:
        x = separation * self.y + 0.6 * self.shared + 0.8 * self.rng.standard_normal(len(self.y))
        prior = math.log(PREVALENCE / (1 - PREVALENCE))
        return _sigmoid(prior + separation * x - separation**2 / 2)

    def baseline(self, spec: ModelSpec) -> np.ndarray:
        return baseline_scores(spec, self.y, len(self.y))


def run_gate(spec: ModelSpec, data: FraudHoldout, candidate, champion=None, **kwargs) -> tuple[dict, dict]:
    report = evaluate(
        spec,
        data.df,
        candidate_scores=candidate,
        baseline_scores=data.baseline(spec),
        champion_scores=champion,
        champion_version=None if champion is None else "3",
        candidate_version="4",
        **kwargs,
    )
    return report, decide(spec, report)


def check(decision: dict, name: str) -> dict:
    matches = [c for c in decision["checks"] if c["name"] == name]
    assert matches, f"no check {name!r} in {[c['name'] for c in decision['checks']]}"
    return matches[0]


@pytest.fixture(scope="module")
def data() -> FraudHoldout:
    return FraudHoldout()


# ------------------------------------------------------------------------------ the gate


def test_worse_candidate_is_rejected_against_champion(data):
    spec = fraud_spec()
    report, decision = run_gate(spec, data, candidate=data.scores(1.5), champion=data.scores(2.0))

    assert decision["passed"] is False
    assert decision["first_model"] is False
    assert "roc_auc drop vs champion" in decision["failed_checks"]
    drop = check(decision, "roc_auc drop vs champion")
    assert drop["value"] > 0.005 and drop["threshold"] == 0.005
    assert drop["reason"].startswith("roc_auc dropped") and "limit 0.005" in drop["reason"]
    assert decision["summary"].startswith("REJECTED: candidate roc_auc")
    assert report["comparison"]["ci_high"] < 0


def test_better_candidate_passes_and_reports_ci_above_zero(data):
    spec = fraud_spec()
    report, decision = run_gate(spec, data, candidate=data.scores(2.5), champion=data.scores(2.0))

    assert decision["passed"] is True, decision["summary"]
    assert decision["failed_checks"] == []
    comparison = report["comparison"]
    assert comparison["ci_low"] > 0
    assert comparison["ci_low"] <= comparison["diff"] <= comparison["ci_high"]
    assert comparison["prob_candidate_better"] > 0.95
    assert comparison["samples"] == 200 and comparison["skipped"] == 0
    n_checks = len(decision["checks"])
    assert decision["summary"].startswith("PASSED: candidate roc_auc")
    assert (
        "95% CI [+" in decision["summary"] and f"{n_checks}/{n_checks} checks passed" in decision["summary"]
    )
    assert decision["candidate_version"] == "4" and decision["champion_version"] == "3"
    # Every rule of the fraud gate is visible as a check.
    names = [c["name"] for c in decision["checks"]]
    assert {"roc_auc min", "brier max", "roc_auc drop vs champion", "roc_auc margin over baseline"} <= set(
        names
    )
    assert "slice region=south vs champion" in names and "slice gap channel" in names
    assert (
        check(decision, "roc_auc min")["reason"].startswith("roc_auc 0.9")
        and "≥ 0.750" in check(decision, "roc_auc min")["reason"]
    )


def test_first_model_is_judged_on_thresholds_and_baseline_only(data):
    spec = fraud_spec(
        max_relative_drop_vs_champion=0.01,
        require_significant_improvement=True,
        max_latency_ratio_vs_champion=1.5,
    )
    report, decision = run_gate(
        spec, data, candidate=data.scores(2.0), latency={"candidate": {"p95_ms": 3.0}}
    )

    assert report["models"]["champion"] is None and report["comparison"] is None
    assert decision["first_model"] is True and decision["passed"] is True
    assert decision["champion_version"] is None
    for name in (
        "roc_auc drop vs champion",
        "roc_auc relative drop vs champion",
        "roc_auc significantly better than champion",
        "slices vs champion",
        "latency p95 vs champion",
    ):
        c = check(decision, name)
        assert c["passed"] is True
        assert c["reason"] == "no champion yet: first model, compared against thresholds and baseline only"
    assert decision["summary"].startswith("PASSED: first model, candidate roc_auc")

    # The thresholds and the baseline still apply to a first model.
    _, weak = run_gate(spec, data, candidate=data.scores(0.2))
    assert weak["passed"] is False
    assert {"roc_auc min", "roc_auc margin over baseline"} <= set(weak["failed_checks"])
    assert not any("champion" in name for name in weak["failed_checks"])


def test_candidate_worse_on_one_slice_beyond_limit_is_rejected_naming_the_slice(data):
    spec = fraud_spec(max_drop_vs_champion=None, slices={"max_gap": None})
    champion = data.scores(2.0)
    candidate = champion.copy()
    south = (data.df["region"] == "south").to_numpy()
    # Same as the champion everywhere but in the south, where it is much weaker (AUC ~0.8).
    candidate[south] = data.scores(1.2)[south]

    _, decision = run_gate(spec, data, candidate=candidate, champion=champion)

    assert decision["passed"] is False
    assert decision["failed_checks"] == ["slice region=south vs champion"]
    c = check(decision, "slice region=south vs champion")
    assert c["value"] > 0.05 and c["threshold"] == 0.05
    assert c["reason"].startswith("slice region=south roc_auc dropped") and c["reason"].endswith(
        "limit 0.050"
    )
    assert "region=south" in decision["summary"]
    assert decision["flagged_slices"] == [{"column": "region", "value": "south", "reason": c["reason"]}]
    assert check(decision, "slice region=north vs champion")["passed"] is True


def test_slice_gap_beyond_limit_is_rejected(data):
    spec = fraud_spec(
        thresholds={}, max_drop_vs_champion=None, slices={"max_drop_vs_champion": None, "max_gap": 0.1}
    )
    candidate = data.scores(2.0)
    atm = (data.df["channel"] == "atm").to_numpy()
    candidate[atm] = data.rng.random(atm.sum())  # random scores: AUC ~0.5 for ATM only

    _, decision = run_gate(spec, data, candidate=candidate)

    assert decision["failed_checks"] == ["slice gap channel"]
    reason = check(decision, "slice gap channel")["reason"]
    assert "channel=atm" in reason and "limit 0.100" in reason
    assert check(decision, "slice gap region")["passed"] is True


def test_small_slices_are_reported_not_gated(data):
    spec = fraud_spec(slices={"min_rows": 2000})  # every region has ~1600 rows
    _, decision = run_gate(spec, data, candidate=data.scores(2.0), champion=data.scores(2.0))

    names = [c["name"] for c in decision["checks"]]
    assert not any(name.startswith("slice region=") for name in names)
    assert any(
        note.startswith("slice region=south has") and "not gated" in note for note in decision["notes"]
    )
    assert "slice channel=atm vs champion" in names  # ~2700 rows


def test_significant_improvement_rule_rejects_a_tie(data):
    spec = fraud_spec(require_significant_improvement=True)
    champion = data.scores(2.0)
    candidate = np.clip(champion + 1e-4 * data.rng.standard_normal(len(champion)), 0, 1)

    report, decision = run_gate(spec, data, candidate=candidate, champion=champion)

    assert report["comparison"]["ci_low"] <= 0 <= report["comparison"]["ci_high"]
    assert decision["failed_checks"] == ["roc_auc significantly better than champion"]
    assert (
        "not significantly better" in check(decision, "roc_auc significantly better than champion")["reason"]
    )

    _, better = run_gate(spec, data, candidate=data.scores(2.5), champion=champion)
    assert better["passed"] is True


def test_significance_rule_flips_sign_for_lower_is_better_metrics():
    spec = other_spec(
        "regression",
        {"name": "is_fraud"},
        {
            "primary_metric": "rmse",
            "bootstrap_samples": 200,
            "gate": {"require_significant_improvement": True, "min_margin_over_baseline": None},
        },
    )
    rng = np.random.default_rng(3)
    y = rng.normal(100, 20, 3000)
    df = pd.DataFrame({"region": "north", "channel": "pos", "is_fraud": y})
    base = baseline_scores(spec, y, len(y))
    champion = y + rng.normal(0, 10, len(y))
    better = y + rng.normal(0, 5, len(y))

    report = evaluate(spec, df, candidate_scores=better, baseline_scores=base, champion_scores=champion)
    decision = decide(spec, report)
    assert report["comparison"]["ci_high"] < 0  # candidate - champion rmse is negative: better
    assert decision["passed"] is True, decision["summary"]

    worse = evaluate(spec, df, candidate_scores=champion, baseline_scores=base, champion_scores=better)
    assert decide(spec, worse)["failed_checks"] == [
        "rmse drop vs champion",
        "rmse significantly better than champion",
    ]


def test_candidate_not_beating_baseline_margin_is_rejected(data):
    spec = fraud_spec(thresholds={})
    _, decision = run_gate(spec, data, candidate=data.scores(0.3))  # AUC ~0.58, baseline 0.5

    assert decision["failed_checks"] == ["roc_auc margin over baseline"]
    c = check(decision, "roc_auc margin over baseline")
    assert c["threshold"] == 0.1 and 0 < c["value"] < 0.1
    assert "beats baseline 0.500 by only" in c["reason"] and "needs ≥ 0.100" in c["reason"]


def test_relative_drop_rule_rejects_beyond_limit_and_passes_within():
    spec = other_spec(
        "regression",
        {"name": "is_fraud"},
        {
            "primary_metric": "rmse",
            "bootstrap_samples": 0,
            "gate": {
                "max_drop_vs_champion": None,
                "max_relative_drop_vs_champion": 0.02,
                "min_margin_over_baseline": None,
            },
        },
    )
    y = np.tile([0.0, 100.0], 500)
    df = pd.DataFrame({"region": "north", "channel": "pos", "is_fraud": y})
    base = baseline_scores(spec, y, len(y))
    champion = y + np.tile([10.0, -10.0], 500)  # rmse 10

    def decision_for(candidate_rmse: float) -> dict:
        candidate = y + np.tile([candidate_rmse, -candidate_rmse], 500)
        report = evaluate(
            spec, df, candidate_scores=candidate, baseline_scores=base, champion_scores=champion
        )
        return decide(spec, report)

    rejected = decision_for(10.5)  # 5% worse
    assert rejected["failed_checks"] == ["rmse relative drop vs champion"]
    c = check(rejected, "rmse relative drop vs champion")
    assert c["value"] == pytest.approx(0.05) and "5.00% relative to champion" in c["reason"]
    assert decision_for(10.1)["passed"] is True  # 1% worse
    assert decision_for(9.0)["passed"] is True  # better


def test_latency_rule_rejects_a_slower_candidate_and_skips_unmeasured(data):
    spec = fraud_spec(max_latency_ratio_vs_champion=1.5)
    cand, champ = data.scores(2.0), data.scores(2.0)

    report, slow = run_gate(
        spec, data, cand, champ, latency={"candidate": {"p95_ms": 4.0}, "champion": {"p95_ms": 2.0}}
    )
    assert report["latency_ms"] == {"candidate_p95": 4.0, "champion_p95": 2.0, "ratio": 2.0}
    assert "latency p95 vs champion" in slow["failed_checks"]
    assert "2.00× the champion's 2.00 ms" in check(slow, "latency p95 vs champion")["reason"]

    _, fast = run_gate(spec, data, cand, champ, latency={"candidate_p95": 2.5, "champion_p95": 2.0})
    assert check(fast, "latency p95 vs champion")["passed"] is True

    _, unmeasured = run_gate(spec, data, cand, champ, latency={"candidate": {"p95_ms": 4.0}})
    c = check(unmeasured, "latency p95 vs champion")
    assert c["passed"] is True and "not measured for champion" in c["reason"]


def test_undefined_candidate_metric_fails_its_check():
    spec = fraud_spec(
        thresholds={"precision": {"min": 0.5}}, slices={"max_gap": None, "max_drop_vs_champion": None}
    )
    df = pd.DataFrame({"region": "north", "channel": "pos", "is_fraud": np.tile([0, 1], 200)})
    scores = np.full(400, 0.1)  # never predicts positive: precision undefined
    report = evaluate(spec, df, candidate_scores=scores, baseline_scores=np.full(400, 0.5))
    decision = decide(spec, report)
    assert report["models"]["candidate"]["metrics"]["precision"] is None
    assert "precision min" in decision["failed_checks"]
    assert "undefined" in check(decision, "precision min")["reason"]


# ------------------------------------------------------------------------------ metrics


def test_binary_metrics_match_sklearn(data):
    from sklearn import metrics as skm

    spec = fraud_spec()
    scores = np.round(data.scores(2.0), 2)  # rounding creates ties
    m = compute_metrics(spec, data.y, scores)
    pred = scores >= 0.5
    assert set(m) == {"roc_auc", "pr_auc", "f1", "precision", "recall", "brier", "calibration_error"}
    assert m["roc_auc"] == pytest.approx(skm.roc_auc_score(data.y, scores), abs=1e-12)
    assert m["pr_auc"] == pytest.approx(skm.average_precision_score(data.y, scores), abs=1e-12)
    assert m["f1"] == pytest.approx(skm.f1_score(data.y, pred))
    assert m["precision"] == pytest.approx(skm.precision_score(data.y, pred))
    assert m["recall"] == pytest.approx(skm.recall_score(data.y, pred))
    assert m["brier"] == pytest.approx(skm.brier_score_loss(data.y, scores))
    # Expected calibration error, written out the slow way.
    bins = np.minimum((scores * 10).astype(int), 9)
    ece = sum(
        abs(data.y[bins == b].mean() - scores[bins == b].mean()) * (bins == b).mean() for b in np.unique(bins)
    )
    assert m["calibration_error"] == pytest.approx(ece)


def test_fast_auc_matches_sklearn():
    from sklearn.metrics import average_precision_score, roc_auc_score

    rng = np.random.default_rng(7)
    y = (rng.random(3000) < 0.2).astype(float)
    s = np.round(rng.random(3000) * 0.6 + 0.4 * y, 2)  # many ties
    rows = rng.integers(0, len(y), size=(5, len(y)))
    weights = np.stack([np.bincount(r, minlength=len(y)) for r in rows]).astype(float)

    # One weight row per resample equals the metric on the resampled rows.
    aucs, aps = _roc_auc(y, s, weights), _pr_auc(y, s, weights)
    for i, r in enumerate(rows):
        assert aucs[i] == pytest.approx(roc_auc_score(y[r], s[r]), abs=1e-12)
        assert aps[i] == pytest.approx(average_precision_score(y[r], s[r]), abs=1e-12)


def test_metrics_of_single_class_slice_are_none_not_nan():
    spec = fraud_spec()
    m = compute_metrics(spec, np.zeros(50, dtype=int), np.linspace(0, 1, 50))
    assert m["roc_auc"] is None and m["pr_auc"] is None and m["recall"] is None
    assert m["brier"] is not None and not any(isinstance(v, float) and math.isnan(v) for v in m.values())
    assert all(v is None for v in compute_metrics(spec, [], []).values())

    # A whole slice without fraud: its AUC is None for every model, and the gate does not crash.
    rng = np.random.default_rng(0)
    df = pd.DataFrame({"region": rng.choice(["north", "south"], 1000), "channel": "pos"})
    df["is_fraud"] = np.where(df["region"] == "south", 0, (rng.random(1000) < 0.3).astype(int))
    df.loc[0, "channel"] = "atm"
    cand = np.clip(df["is_fraud"] * 0.5 + rng.random(1000) * 0.5, 0, 1)
    report = evaluate(
        spec, df, candidate_scores=cand, baseline_scores=np.full(1000, 0.15), champion_scores=cand * 0.9
    )
    south = next(s for s in report["slices"] if s["value"] == "south")
    assert south["positives"] == 0
    assert south["metrics"] == {"candidate": None, "champion": None, "baseline": None}
    json.dumps(report, allow_nan=False)
    decision = decide(spec, report)
    assert any("region=south" in note and "undefined" in note for note in decision["notes"])


def test_bootstrap_skips_resamples_where_the_metric_is_undefined():
    spec = fraud_spec()
    y = np.zeros(30, dtype=int)
    y[0] = 1  # one positive: about a third of resamples have none
    s = np.linspace(0, 1, 30)
    result = paired_bootstrap(spec, y, s, s[::-1], metric="roc_auc", samples=100, seed=1)
    assert result["skipped"] > 0
    assert result["valid_samples"] + result["skipped"] == result["samples"] == 100
    assert result["ci_low"] is not None and result["confidence"] == 0.95


def test_bootstrap_is_reproducible_and_fast_on_20k_rows():
    spec = fraud_spec()
    rng = np.random.default_rng(0)
    y = (rng.random(20_000) < 0.1).astype(int)
    cand, champ = rng.random(20_000) + 0.3 * y, rng.random(20_000) + 0.25 * y
    start = time.perf_counter()
    first = paired_bootstrap(spec, y, cand, champ, metric="roc_auc", samples=200, seed=5)
    elapsed = time.perf_counter() - start
    assert elapsed < 10, f"200 bootstrap resamples of 20k rows took {elapsed:.1f}s"
    assert first == paired_bootstrap(spec, y, cand, champ, metric="roc_auc", samples=200, seed=5)
    assert first["valid_samples"] == 200 and first["ci_low"] < first["diff"] < first["ci_high"]


def test_regression_metrics_match_sklearn_and_r2_of_constant_target_is_none():
    from sklearn import metrics as skm

    spec = other_spec("regression", {"name": "is_fraud"}, {"primary_metric": "rmse"})
    rng = np.random.default_rng(1)
    y = rng.normal(50, 10, 500)
    pred = y + rng.normal(0, 3, 500)
    m = compute_metrics(spec, y, pred)
    assert set(m) == {"rmse", "mae", "r2"}
    assert m["rmse"] == pytest.approx(math.sqrt(skm.mean_squared_error(y, pred)))
    assert m["mae"] == pytest.approx(skm.mean_absolute_error(y, pred))
    assert m["r2"] == pytest.approx(skm.r2_score(y, pred))
    assert compute_metrics(spec, np.full(10, 3.0), np.arange(10.0))["r2"] is None
    baseline = baseline_scores(spec, y, 4)
    assert baseline.shape == (4,) and baseline[0] == pytest.approx(y.mean())
    assert compute_metrics(spec, y, np.full(500, y.mean()))["r2"] == pytest.approx(0.0, abs=1e-9)


def test_multiclass_metrics_match_sklearn_and_baseline_is_class_frequencies():
    from sklearn import metrics as skm

    classes = ["low", "mid", "high"]
    spec = other_spec(
        "multiclass_classification", {"name": "is_fraud", "classes": classes}, {"primary_metric": "macro_f1"}
    )
    rng = np.random.default_rng(2)
    codes = rng.integers(0, 3, 600)
    labels = np.array(classes)[codes]
    logits = rng.normal(size=(600, 3)) + 1.5 * np.eye(3)[codes]
    proba = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    m = compute_metrics(spec, labels, proba)
    assert set(m) == {"macro_f1", "accuracy", "log_loss"}
    predicted = proba.argmax(axis=1)
    assert m["accuracy"] == pytest.approx(skm.accuracy_score(codes, predicted))
    assert m["macro_f1"] == pytest.approx(skm.f1_score(codes, predicted, average="macro"))
    assert m["log_loss"] == pytest.approx(skm.log_loss(codes, proba, labels=[0, 1, 2]))

    base = baseline_scores(spec, ["low", "low", "mid", "high"], 5)
    assert base.shape == (5, 3) and base[0].tolist() == [0.5, 0.25, 0.25]
    assert compute_metrics(spec, labels, np.tile(base[0], (600, 1)))["log_loss"] > m["log_loss"]


def test_labels_outside_target_classes_are_a_clear_error():
    spec = fraud_spec()
    with pytest.raises(ValueError, match=r"not in target.classes \[0, 1\]"):
        compute_metrics(spec, [0, 1, 2], [0.1, 0.2, 0.3])
    with pytest.raises(ValueError, match="3 scores for 2 rows"):
        compute_metrics(spec, [0, 1], [0.1, 0.2, 0.3])


def test_slices_cover_every_segment_value_with_rows_and_positives(data):
    spec = fraud_spec()
    scores = {"candidate": data.scores(2.0), "baseline": data.baseline(spec)}
    slices = slice_metrics(spec, data.df, data.y, scores)
    assert [(s["column"], s["value"]) for s in slices] == [
        ("region", v) for v in ["central", "east", "north", "south", "west"]
    ] + [("channel", v) for v in ["atm", "online", "pos"]]
    assert sum(s["rows"] for s in slices if s["column"] == "region") == len(data.y)
    assert sum(s["positives"] for s in slices if s["column"] == "channel") == data.y.sum()
    assert all(set(s["metrics"]) == {"candidate", "baseline"} for s in slices)
    assert all(s["metrics"]["baseline"] == 0.5 for s in slices)


def test_latency_profile_warms_up_and_times_single_rows():
    calls: list[int] = []
    rows = pd.DataFrame({"a": range(7)})
    profile = latency_profile(lambda row: calls.append(len(row)), rows, n=20)
    assert set(profile) == {"p50_ms", "p95_ms", "n"} and profile["n"] == 20
    assert 0 <= profile["p50_ms"] <= profile["p95_ms"]
    assert len(calls) == 20 + 5 and set(calls) == {1}


# ------------------------------------------------------------------------------ report and HTML


def test_report_is_json_serialisable(data):
    spec = fraud_spec(max_latency_ratio_vs_champion=2.0)
    report, decision = run_gate(
        spec,
        data,
        data.scores(2.5),
        data.scores(2.0),
        latency={"candidate": {"p50_ms": 1.0, "p95_ms": 1.5, "n": 100}, "champion": {"p95_ms": 1.2}},
    )
    assert json.loads(json.dumps(report, allow_nan=False)) == report
    assert json.loads(json.dumps(decision, allow_nan=False)) == decision
    assert set(report) >= {
        "task",
        "primary_metric",
        "higher_is_better",
        "rows",
        "decision_threshold",
        "models",
        "comparison",
        "slices",
        "latency_ms",
    }
    assert report["models"]["baseline"]["description"] == BASELINE_DESCRIPTION["binary_classification"]
    assert report["models"]["candidate"]["version"] == "4"
    assert set(report["comparison"]) >= {
        "metric",
        "diff",
        "ci_low",
        "ci_high",
        "samples",
        "confidence",
        "prob_candidate_better",
        "candidate",
        "champion",
    }
    for c in decision["checks"]:
        assert set(c) == {"name", "value", "threshold", "passed", "reason"}


def test_html_names_failed_checks(data):
    spec = fraud_spec()
    report, decision = run_gate(spec, data, candidate=data.scores(1.5), champion=data.scores(2.0))
    page = render_html(report, decision, title="fraud_detection v4 <candidate>")

    assert page.startswith("<!DOCTYPE html>") and "<style>" in page
    assert reports.STYLESHEET in page  # the one toolkit's page and stylesheet
    assert "REJECTED" in page and "fraud_detection v4 &lt;candidate&gt;" in page
    for name in decision["failed_checks"]:
        assert name in page
    assert 'class="fail"' in page and "region=south" in page and "95% CI" in page
    assert "src=" not in page and "<link" not in page  # self-contained


def test_module_import_is_cheap():
    code = (
        "import sys, include.modelops.evaluation.gate, include.modelops.evaluation.report; "
        "print(sorted({'sklearn', 'pandas', 'scipy'} & set(sys.modules)))"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_continuous_and_time_segments_are_binned_and_missing_values_get_a_slice():
    raw = yaml.safe_load(FRAUD_YAML.read_text())
    raw["segment_columns"] = ["amount", "event_time", "region"]
    spec = ModelSpec.model_validate(raw)
    rng = np.random.default_rng(4)
    n = 1000
    df = pd.DataFrame(
        {
            "amount": rng.exponential(100, n),
            "event_time": pd.Timestamp("2025-01-01") + pd.to_timedelta(rng.integers(0, 90 * 24, n), unit="h"),
            "region": rng.choice(["north", "south", None], n),
            "is_fraud": (rng.random(n) < 0.2).astype(int),
        }
    )
    slices = slice_metrics(spec, df, df["is_fraud"], {"candidate": rng.random(n)})
    by_column = {c: [s["value"] for s in slices if s["column"] == c] for c in spec.segment_columns}
    assert len(by_column["amount"]) == NUMERIC_SLICE_BINS
    assert by_column["event_time"] == ["2025-01", "2025-02", "2025-03"]
    assert by_column["region"] == ["north", "south", None]
    assert sum(s["rows"] for s in slices if s["column"] == "amount") == n
    json.dumps(slices, allow_nan=False)


@pytest.mark.parametrize("task", ["multiclass_classification", "regression"])
def test_every_task_gets_a_report_a_decision_and_a_page(task):
    rng = np.random.default_rng(5)
    n = 1500
    df = pd.DataFrame({"region": rng.choice(["north", "south"], n), "channel": rng.choice(["pos", "atm"], n)})
    if task == "regression":
        spec = other_spec(task, {"name": "is_fraud"}, {"primary_metric": "mae", "bootstrap_samples": 50})
        df["is_fraud"] = rng.normal(0, 1, n)
        champion = df["is_fraud"].to_numpy() + rng.normal(0, 0.5, n)
        candidate = df["is_fraud"].to_numpy() + rng.normal(0, 0.4, n)
    else:
        spec = other_spec(
            task,
            {"name": "is_fraud", "classes": [0, 1, 2]},
            {"primary_metric": "log_loss", "bootstrap_samples": 50},
        )
        codes = rng.integers(0, 3, n)
        df["is_fraud"] = codes

        def proba(strength: float) -> np.ndarray:
            logits = rng.normal(size=(n, 3)) + strength * np.eye(3)[codes]
            return np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)

        champion, candidate = proba(1.5), proba(2.0)
    base = baseline_scores(spec, df["is_fraud"], n)
    report = evaluate(spec, df, candidate_scores=candidate, baseline_scores=base, champion_scores=champion)
    decision = decide(spec, report)

    assert decision["passed"] is True, decision["summary"]
    assert report["higher_is_better"] is False and report["comparison"]["ci_high"] < 0
    assert "positives" not in report["slices"][0]
    json.dumps([report, decision], allow_nan=False)
    assert "PASSED" in render_html(report, decision)


# ------------------------------------------------------------------------------ curves


def test_binary_reports_carry_roc_pr_and_calibration_curves_that_agree_with_the_metrics(data):
    spec = fraud_spec()
    report, decision = run_gate(spec, data, candidate=data.scores(2.0), champion=data.scores(1.5))
    curves = report["curves"]

    assert set(curves["roc"]) == {"candidate", "champion", "baseline"}
    for model, pts in curves["roc"].items():
        assert pts[0] == [0.0, 0.0] and pts[-1] == [1.0, 1.0], model
        assert len(pts) <= 101
        xs, ys = np.array(pts).T
        assert np.all(np.diff(xs) >= 0) and np.all(np.diff(ys) >= 0), model  # a ROC curve only rises
    for model in ("candidate", "champion"):
        xs, ys = np.array(curves["roc"][model]).T
        area = float(np.trapezoid(ys, xs))
        assert abs(area - report["models"][model]["metrics"]["roc_auc"]) < 0.01, model
    recall, precision = np.array(curves["precision_recall"]["candidate"]).T
    assert (
        recall[-1] == 1.0 and abs(precision[-1] - data.y.mean()) < 1e-3
    )  # everything flagged: the prevalence
    # The synthetic scores are exact posteriors: the reliability curve sits on the diagonal.
    mean_score, share = np.array(curves["calibration"]["candidate"]).T
    assert np.max(np.abs(mean_score - share)) < 0.05
    assert "baseline" not in curves["calibration"]

    page = render_html(report, decision)
    for title in ("ROC curve", "Precision-recall", "Calibration (score deciles)"):
        assert f'aria-label="{title}"' in page
    assert page.count("<polyline") >= 8 and "<script" not in page and "src=" not in page


def test_regression_reports_carry_predicted_vs_actual_on_the_same_rows_for_each_model():
    rng = np.random.default_rng(9)
    n = 1200
    df = pd.DataFrame({"region": rng.choice(["north", "south"], n), "channel": rng.choice(["pos", "atm"], n)})
    spec = other_spec("regression", {"name": "is_fraud"}, {"primary_metric": "mae", "bootstrap_samples": 30})
    df["is_fraud"] = rng.normal(0, 1, n)
    candidate = df["is_fraud"].to_numpy() + rng.normal(0, 0.3, n)
    report = evaluate(
        spec, df, candidate_scores=candidate, baseline_scores=baseline_scores(spec, df["is_fraud"], n)
    )

    pts = report["curves"]["predicted_vs_actual"]["candidate"]
    assert len(pts) == 400 and "baseline" not in report["curves"]["predicted_vs_actual"]
    actual, predicted = np.array(pts).T
    assert np.corrcoef(actual, predicted)[0, 1] > 0.9
    page = render_html(report, decide(spec, report))
    assert 'aria-label="Predicted vs actual (sample of rows)"' in page and page.count("<circle") == 400
