"""The canary analysis: Prometheus text and logged scores in, a table of checks and a verdict out."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

from include.modelops.rollout import analysis as a
from include.modelops.serving.metrics import LATENCY_BUCKETS
from include.modelops.spec import RolloutAnalysis

CFG = RolloutAnalysis()


class Service:
    """A registry with the service's /predict metrics, as `bentoml serve` exports them."""

    def __init__(self, variant: str, version: str = "2") -> None:
        self.registry = CollectorRegistry()
        self.labels = ("fraud_detection", version, variant)
        self.requests = Counter(
            "modelops_requests", "answers", ("model", "version", "variant", "status"), registry=self.registry
        )
        self.latency = Histogram(
            "modelops_request_latency_seconds",
            "latency",
            ("model", "version", "variant"),
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )

    def answer(self, n: int, status: int = 200, seconds: float = 0.004) -> Service:
        for _ in range(n):
            self.requests.labels(*self.labels, str(status)).inc()
            if status == 200:
                self.latency.labels(*self.labels).observe(seconds)
        return self

    def scrape(self) -> a.MetricsWindow:
        return a.parse_service_metrics(generate_latest(self.registry).decode(), variant=self.labels[2])


def scores(mean: float, n: int = 1000, seed: int = 0) -> np.ndarray:
    return np.clip(np.random.default_rng(seed).normal(mean, 0.1, n), 0, 1)


def test_metrics_text_gives_requests_by_status_and_latency_of_one_variant():
    window = Service("canary").answer(30).answer(5, status=500).answer(2, status=400).scrape()
    assert window.requests == 37 and window.errors == 5
    assert window.error_rate == pytest.approx(5 / 37)
    assert window.latency_count == 30
    assert (
        a.parse_service_metrics(
            generate_latest(Service("canary").registry).decode(), variant="stable"
        ).requests
        == 0
    )


def test_window_is_the_difference_of_two_scrapes_and_survives_a_restarted_process():
    service = Service("canary").answer(100)
    before = service.scrape()
    after = service.answer(40).answer(10, status=503).scrape()
    window = a.metrics_window(before, after)
    assert (window.requests, window.errors, window.latency_count) == (50, 10, 40)
    restarted = Service("canary").answer(7).scrape()  # counters start again from zero
    assert a.metrics_window(after, restarted).requests == 7


def test_latency_quantile_interpolates_inside_its_bucket_like_prometheus():
    buckets = {0.1: 50.0, 0.2: 100.0, float("inf"): 100.0}
    assert a.histogram_quantile(0.75, buckets) == pytest.approx(0.15)
    assert a.histogram_quantile(0.5, {float("inf"): 0.0}) is None


def test_a_healthy_canary_passes_every_check():
    result = a.analyse(
        CFG,
        canary=Service("canary").answer(200).scrape(),
        stable=Service("stable").answer(800).scrape(),
        canary_scores=scores(0.3, seed=1),
        stable_scores=scores(0.3, seed=2),
        min_requests=200,
    )
    assert result.verdict == a.PASS, a.render_table(result)
    assert [c.name for c in result.checks] == [
        "min_requests",
        "error_rate",
        "error_rate_vs_stable",
        "latency_p95_ratio",
        "score_jensen_shannon",
    ]


def test_a_canary_answering_5xx_fails_both_error_checks_with_the_counts():
    canary = Service("canary").answer(90).answer(10, status=500).scrape()
    result = a.analyse(
        CFG,
        canary=canary,
        stable=Service("stable").answer(400).scrape(),
        canary_scores=scores(0.3),
        stable_scores=scores(0.3, seed=3),
    )
    assert result.verdict == a.FAIL
    assert {c.name for c in result.failed} == {"error_rate", "error_rate_vs_stable"}
    assert "10 of 100 canary answers were 5xx" in result.reason()


@pytest.mark.parametrize("measure", ["jensen_shannon", "psi"])
def test_shifted_scores_fail_the_distribution_check(measure):
    cfg = RolloutAnalysis(score_distance=measure)
    ok = a.analyse(
        cfg,
        canary=Service("canary").answer(100).scrape(),
        stable=Service("stable").answer(100).scrape(),
        canary_scores=scores(0.3, n=1000, seed=4),
        stable_scores=scores(0.3, n=1000, seed=5),
    )
    shifted = a.analyse(
        cfg,
        canary=Service("canary").answer(100).scrape(),
        stable=Service("stable").answer(100).scrape(),
        canary_scores=scores(0.6, seed=4),
        stable_scores=scores(0.3, seed=5),
    )
    assert ok.verdict == a.PASS
    assert [c.name for c in shifted.failed] == [f"score_{measure}"]
    assert shifted.failed[0].canary > cfg.max_score_distance


def test_a_slow_canary_fails_latency_but_millisecond_noise_does_not():
    stable = Service("stable").answer(100, seconds=0.004).scrape()
    slow = a.analyse(
        CFG,
        canary=Service("canary").answer(100, seconds=0.2).scrape(),
        stable=stable,
        canary_scores=scores(0.3),
        stable_scores=scores(0.3),
    )
    noisy = a.analyse(
        CFG,
        canary=Service("canary").answer(100, seconds=0.007).scrape(),
        stable=stable,
        canary_scores=scores(0.3),
        stable_scores=scores(0.3),
    )
    assert [c.name for c in slow.failed] == ["latency_p95_ratio"]
    assert noisy.verdict == a.PASS  # 7 ms vs 4 ms is a ratio of 1.75, but within the 5 ms tolerance


def test_too_few_requests_is_inconclusive_never_a_pass():
    result = a.analyse(
        CFG,
        canary=Service("canary").answer(5).scrape(),
        stable=Service("stable").answer(100).scrape(),
        canary_scores=scores(0.3, n=5),
        stable_scores=scores(0.3),
        min_requests=50,
    )
    assert result.verdict == a.INCONCLUSIVE
    assert {c.name for c in result.inconclusive} >= {"min_requests", "error_rate", "score_jensen_shannon"}
    assert "canary answered 5 of the 50 requests" in result.reason()


def test_scores_come_from_the_inference_log_column_of_the_task():
    binary = pd.DataFrame({"score": [0.1, 0.9]})
    multiclass = pd.DataFrame({"probabilities": ['{"a": 0.2, "b": 0.8}', '{"a": 0.6, "b": 0.4}']})
    assert a.scores_of("binary_classification", binary).tolist() == [0.1, 0.9]
    assert a.scores_of("multiclass_classification", multiclass).tolist() == [0.8, 0.6]


def test_shadow_pairs_are_joined_on_request_and_row_and_disagreements_counted():
    stable = pd.DataFrame(
        {"request_id": ["r1", "r1", "r2", "r3"], "row_index": [0, 1, 0, 0], "label": [0, 1, 1, 0]}
    )
    shadow = pd.DataFrame(
        {"request_id": ["r1", "r1", "r2", "r9"], "row_index": [0, 1, 0, 0], "label": [0, 0, 1, 1]}
    )
    rate, pairs = a.paired_disagreement_rate("binary_classification", stable, shadow)
    assert (rate, pairs) == (pytest.approx(1 / 3), 3)
    check = a.shadow_check("binary_classification", stable, shadow, max_disagreement_rate=0.05, min_pairs=3)
    assert check.outcome == a.FAIL and "33.33% of 3 paired rows" in check.reason


def test_the_table_lists_check_values_threshold_result_and_reason():
    canary = Service("canary").answer(90).answer(10, status=500).scrape()
    table = a.render_table(
        a.analyse(
            CFG,
            canary=canary,
            stable=Service("stable").answer(100).scrape(),
            canary_scores=scores(0.3),
            stable_scores=scores(0.3),
        ),
        title="step 5%",
    )
    lines = table.splitlines()
    assert lines[0] == "step 5%" and lines[1].split()[:5] == [
        "check",
        "canary",
        "stable",
        "threshold",
        "result",
    ]
    error_row = next(line for line in lines if line.startswith("error_rate "))
    assert "0.1" in error_row and "<= 0.01" in error_row and "FAIL" in error_row
    assert lines[-1].startswith("verdict: FAIL")


def test_a_partial_window_fails_on_errors_at_once_but_waits_to_judge_scores_and_latency():
    stable = Service("stable").answer(400).scrape()
    shifted = a.analyse(
        CFG,
        canary=Service("canary").answer(100, seconds=0.3).scrape(),
        stable=stable,
        canary_scores=scores(0.6),
        stable_scores=scores(0.3),
        min_requests=200,
    )
    assert shifted.verdict == a.INCONCLUSIVE  # the stage keeps baking; at max_wait_s it fails closed
    assert "judged once the stage has its 200 requests" in shifted.reason()
    erroring = a.analyse(
        CFG,
        canary=Service("canary").answer(60).answer(40, status=500).scrape(),
        stable=stable,
        canary_scores=scores(0.3),
        stable_scores=scores(0.3),
        min_requests=200,
    )
    assert erroring.verdict == a.FAIL and erroring.failed[0].name == "error_rate"


def test_small_windows_use_fewer_bins_so_noise_is_not_a_shift():
    assert (a.score_bins(100, 5000), a.score_bins(320, 400), a.score_bins(5000, 9000)) == (4, 6, 10)


def test_one_stray_5xx_in_a_small_window_is_not_yet_evidence_but_a_steady_share_is():
    stable = Service("stable").answer(400).scrape()
    stray = a.analyse(
        CFG,
        canary=Service("canary").answer(54).answer(1, status=503).scrape(),
        stable=stable,
        canary_scores=scores(0.3),
        stable_scores=scores(0.3),
    )
    steady = a.analyse(
        CFG,
        canary=Service("canary").answer(33).answer(3, status=500).scrape(),
        stable=stable,
        canary_scores=scores(0.3),
        stable_scores=scores(0.3),
    )
    assert [c.outcome for c in stray.checks[:2]] == [a.INCONCLUSIVE, a.INCONCLUSIVE]  # more traffic decides
    assert [c.outcome for c in steady.checks[:2]] == [a.FAIL, a.FAIL]
    assert a.wilson_lower_bound(0, 100) == 0.0 and 0.85 < a.wilson_lower_bound(20, 20) < 1


def logged(
    n_requests: int, scores_of_rows: np.ndarray, rows_per_request: int = 4, prefix: str = "r"
) -> pd.DataFrame:
    """Inference-log rows of n requests (binary classification), scores in row order."""
    n = n_requests * rows_per_request
    s = np.asarray(scores_of_rows[:n], dtype=float)
    return pd.DataFrame(
        {
            "request_id": [f"{prefix}{i // rows_per_request}" for i in range(n)],
            "row_index": [i % rows_per_request for i in range(n)],
            "score": s,
            "label": (s >= 0.5).astype(int),
        }
    )


def test_a_shadow_candidate_that_answers_like_stable_passes_on_its_pairs():
    stable = logged(60, scores(0.3, seed=1))
    result = a.analyse_shadow(
        "binary_classification",
        CFG,
        stable=stable,
        shadow=stable.copy(),
        replayed=50,
        not_answered=0,
        min_requests=50,
        max_disagreement_rate=0.05,
    )
    assert result.verdict == a.PASS, a.render_table(result)
    assert (result.canary_requests, result.stable_requests) == (60, 60)
    assert [c.name for c in result.checks] == [
        "paired_requests",
        "error_rate",
        "paired_disagreement_rate",
        "score_jensen_shannon",
    ]


def test_a_shifted_shadow_candidate_fails_on_disagreement_and_score_distance():
    stable = logged(60, scores(0.2, seed=1))
    shifted = stable.assign(score=np.clip(stable["score"] + 0.5, 0, 1))
    shifted["label"] = (shifted["score"] >= 0.5).astype(int)
    result = a.analyse_shadow(
        "binary_classification",
        CFG,
        stable=stable,
        shadow=shifted,
        replayed=60,
        not_answered=0,
        min_requests=50,
        max_disagreement_rate=0.05,
    )
    assert result.verdict == a.FAIL
    assert {c.name for c in result.failed} == {"paired_disagreement_rate", "score_jensen_shannon"}
    assert "paired_disagreement_rate fail: the versions disagree on" in result.reason()


def test_shadow_pairs_short_of_the_stage_requests_are_not_judged_yet():
    stable = logged(60, scores(0.2, seed=1))
    shifted = stable.assign(label=1 - stable["label"])
    # Only the first 10 requests were copied so far: the stage waits for its 50 pairs.
    result = a.analyse_shadow(
        "binary_classification",
        CFG,
        stable=stable,
        shadow=shifted.head(40),
        replayed=10,
        not_answered=0,
        min_requests=50,
        max_disagreement_rate=0.05,
    )
    assert result.verdict == a.INCONCLUSIVE and not result.failed
    assert result.canary_requests == 10
    assert "judged once 50 requests are paired" in next(
        c.reason for c in result.checks if c.name == "paired_disagreement_rate"
    )


def test_copies_the_candidate_does_not_answer_fail_the_shadow_stage_at_once():
    stable = logged(60, scores(0.2, seed=1))
    result = a.analyse_shadow(
        "binary_classification",
        CFG,
        stable=stable,
        shadow=stable.head(0),
        replayed=30,
        not_answered=30,
        min_requests=50,
        max_disagreement_rate=0.05,
    )
    assert result.verdict == a.FAIL and [c.name for c in result.failed] == ["error_rate"]
    assert "30 of 30 copies of requests stable answered got no 200" in result.reason()


def test_a_request_copied_twice_is_paired_once():
    stable = logged(3, scores(0.2, seed=1), rows_per_request=2)
    shadow = pd.concat([stable, stable.assign(label=1 - stable["label"])])  # the second copy's answers win
    rate, pairs = a.paired_disagreement_rate("binary_classification", stable, shadow)
    assert (rate, pairs) == (1.0, 6)
