"""The canary analysis: is the candidate as healthy as the stable version over the same window?

Pure functions over two inputs a backend collects for each variant (``stable``, ``canary``):

* the service's Prometheus ``/metrics`` text at the start and end of the window
  (``modelops_requests_total`` by status, ``modelops_request_latency_seconds``), turned into a
  :class:`MetricsWindow` by :func:`metrics_window`; counter resets (a restarted process) are handled;
* the scores the service logged in the inference log for that window and variant
  (:func:`scores_of` picks the score column for the task).

A shadow stage is judged by :func:`analyse_shadow` on pairs instead: the rows stable answered
and the candidate's answers to copies of the same requests (:func:`paired_rows`, joined on
request id and row index).

:func:`analyse` returns one :class:`Check` per rule of the spec's ``rollout.analysis`` and a
verdict. A check that lacks data is *inconclusive*; a stage that is still inconclusive when its
``max_wait_s`` runs out fails closed (the rollout rolls back). :func:`render_table` writes the
table that goes to the task log, the MLflow run and the audit trail.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

if TYPE_CHECKING:
    import pandas as pd

    from include.modelops.spec import RolloutAnalysis

Outcome = Literal["pass", "fail", "inconclusive"]
PASS: Outcome = "pass"
FAIL: Outcome = "fail"
INCONCLUSIVE: Outcome = "inconclusive"

# Fewer answered requests than this on a side leaves the error and latency checks inconclusive:
# one 5xx among three requests is not yet evidence of a 33% error rate.
MIN_REQUESTS_PER_CHECK = 20
SCORE_BINS = 10
WILSON_Z = 1.645  # one-sided 95%
_PSI_FLOOR = 1e-4  # an empty bin would make PSI infinite


@dataclass(frozen=True)
class MetricsWindow:
    """What one variant answered in a window: requests by status and the latency histogram."""

    requests_by_status: dict[str, float] = field(default_factory=dict)
    latency_buckets: dict[float, float] = field(default_factory=dict)  # cumulative count per upper bound (le)

    @property
    def requests(self) -> int:
        return int(sum(self.requests_by_status.values()))

    @property
    def errors(self) -> int:
        """Answers with a 5xx status."""
        return int(sum(v for k, v in self.requests_by_status.items() if k.startswith("5")))

    @property
    def error_rate(self) -> float | None:
        return self.errors / self.requests if self.requests else None

    @property
    def latency_count(self) -> int:
        return int(self.latency_buckets.get(math.inf, 0))

    def latency_quantile(self, q: float) -> float | None:
        """The q-quantile of latency in seconds, interpolated in its bucket as Prometheus'
        ``histogram_quantile`` does; None without observations."""
        return histogram_quantile(q, self.latency_buckets)


@dataclass(frozen=True)
class Check:
    """One row of the analysis table."""

    name: str
    canary: float | None
    stable: float | None
    threshold: str
    outcome: Outcome
    reason: str

    @property
    def passed(self) -> bool:
        return self.outcome == PASS


@dataclass(frozen=True)
class Analysis:
    """The checks of one analysis and the verdict: any fail fails; else any inconclusive is inconclusive."""

    checks: list[Check]
    canary_requests: int
    stable_requests: int

    @property
    def verdict(self) -> Outcome:
        outcomes = {c.outcome for c in self.checks}
        return FAIL if FAIL in outcomes else INCONCLUSIVE if INCONCLUSIVE in outcomes else PASS

    @property
    def failed(self) -> list[Check]:
        return [c for c in self.checks if c.outcome == FAIL]

    @property
    def inconclusive(self) -> list[Check]:
        return [c for c in self.checks if c.outcome == INCONCLUSIVE]

    def reason(self) -> str:
        """One sentence naming what failed (or was inconclusive), for tags and audit events."""
        bad = self.failed or self.inconclusive
        if not bad:
            return "every check passed"
        return "; ".join(f"{c.name} {c.outcome}: {c.reason}" for c in bad)

    def to_dict(self) -> dict[str, Any]:
        return {
            "verdict": self.verdict,
            "canary_requests": self.canary_requests,
            "stable_requests": self.stable_requests,
            "reason": self.reason(),
            "checks": [asdict(c) for c in self.checks],
        }


# --- Prometheus text ------------------------------------------------------------------------


def parse_service_metrics(
    text: str, *, variant: str | None = None, version: str | None = None
) -> MetricsWindow:
    """The cumulative ``/predict`` counters of one service's ``/metrics`` text (optionally one variant/version)."""
    from prometheus_client.parser import text_string_to_metric_families

    by_status: dict[str, float] = {}
    buckets: dict[float, float] = {}
    for family in text_string_to_metric_families(text):
        if family.name not in ("modelops_requests", "modelops_request_latency_seconds"):
            continue
        for sample in family.samples:
            labels = sample.labels
            if variant is not None and labels.get("variant") != variant:
                continue
            if version is not None and labels.get("version") != str(version):
                continue
            if sample.name == "modelops_requests_total":
                status = labels.get("status", "")
                by_status[status] = by_status.get(status, 0.0) + sample.value
            elif sample.name == "modelops_request_latency_seconds_bucket":
                le = float(labels["le"])
                buckets[le] = buckets.get(le, 0.0) + sample.value
    return MetricsWindow(by_status, buckets)


def _delta(after: Mapping[Any, float], before: Mapping[Any, float]) -> dict[Any, float]:
    # A counter that went down was reset (the process restarted): the new value is all that happened since.
    reset = any(after.get(k, 0.0) < v for k, v in before.items())
    return dict(after) if reset else {k: v - before.get(k, 0.0) for k, v in after.items()}


def metrics_window(before: MetricsWindow | None, after: MetricsWindow) -> MetricsWindow:
    """What happened between two scrapes of the same service."""
    if before is None:
        return after
    return MetricsWindow(
        _delta(after.requests_by_status, before.requests_by_status),
        _delta(after.latency_buckets, before.latency_buckets),
    )


def histogram_quantile(q: float, buckets: Mapping[float, float]) -> float | None:
    """Prometheus' ``histogram_quantile`` over cumulative buckets {upper bound: count}."""
    if not buckets:
        return None
    bounds = sorted(buckets)
    total = buckets[bounds[-1]]
    if total <= 0:
        return None
    rank = q * total
    lower_bound, lower_count = 0.0, 0.0
    for bound in bounds:
        count = buckets[bound]
        if count >= rank:
            if math.isinf(bound):
                return lower_bound  # beyond the largest finite bucket: its bound is all we know
            if count == lower_count:
                return bound
            return lower_bound + (bound - lower_bound) * (rank - lower_count) / (count - lower_count)
        lower_bound, lower_count = bound, count
    return bounds[-1]


# --- scores ---------------------------------------------------------------------------------


def scores_of(task: str, frame: pd.DataFrame) -> np.ndarray:
    """The per-row score the distance is computed on: P(positive) for binary classification,
    the prediction for regression, the top class probability for multiclass."""
    if frame.empty:
        return np.asarray([], dtype=float)
    if task == "binary_classification":
        return frame["score"].to_numpy(dtype=float)
    if task == "regression":
        return frame["prediction"].to_numpy(dtype=float)
    return np.asarray([max(json.loads(p).values()) for p in frame["probabilities"]], dtype=float)


def _bin_shares(reference: np.ndarray, other: np.ndarray, bins: int) -> tuple[np.ndarray, np.ndarray]:
    """Shares of both samples over quantile bins of ``reference`` (ties merge bins)."""
    edges = np.unique(np.quantile(reference, np.linspace(0, 1, bins + 1)[1:-1]))
    ref_counts = np.bincount(np.searchsorted(edges, reference, side="right"), minlength=len(edges) + 1)
    oth_counts = np.bincount(np.searchsorted(edges, other, side="right"), minlength=len(edges) + 1)
    return ref_counts / ref_counts.sum(), oth_counts / oth_counts.sum()


def score_bins(n_stable: int, n_canary: int) -> int:
    """Bins for the distance: one per 50 rows of the smaller side, 4 to 10, so that small windows
    are not judged on sampling noise in near-empty bins."""
    return max(4, min(SCORE_BINS, min(n_stable, n_canary) // 50))


def jensen_shannon_distance(
    stable: Sequence[float], canary: Sequence[float], bins: int = SCORE_BINS
) -> float:
    """Jensen-Shannon distance (base 2: 0 identical, 1 disjoint) over quantile bins of stable's scores."""
    from scipy.spatial.distance import jensenshannon

    p, q = _bin_shares(np.asarray(stable, dtype=float), np.asarray(canary, dtype=float), bins)
    return float(jensenshannon(p, q, base=2))


def population_stability_index(
    stable: Sequence[float], canary: Sequence[float], bins: int = SCORE_BINS
) -> float:
    """PSI over quantile bins of stable's scores (< 0.1 stable, 0.1-0.25 slight, > 0.25 major shift)."""
    p, q = _bin_shares(np.asarray(stable, dtype=float), np.asarray(canary, dtype=float), bins)
    p, q = np.clip(p, _PSI_FLOOR, None), np.clip(q, _PSI_FLOOR, None)
    return float(np.sum((q - p) * np.log(q / p)))


PAIR_KEYS = ["request_id", "row_index"]


def paired_rows(stable: pd.DataFrame, shadow: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The rows both versions answered (same request id and row index), aligned row for row.

    A request replayed twice (a retried poke) counts once: the last answer of each side is kept.
    """
    if stable.empty or shadow.empty:
        return stable.iloc[0:0], shadow.iloc[0:0]
    s = stable.drop_duplicates(PAIR_KEYS, keep="last")
    c = shadow.drop_duplicates(PAIR_KEYS, keep="last")
    keys = s[PAIR_KEYS].merge(c[PAIR_KEYS], on=PAIR_KEYS)
    return (
        keys.merge(s, on=PAIR_KEYS, how="left").reset_index(drop=True),
        keys.merge(c, on=PAIR_KEYS, how="left").reset_index(drop=True),
    )


def paired_disagreement_rate(
    task: str, stable: pd.DataFrame, shadow: pd.DataFrame
) -> tuple[float | None, int]:
    """Share of rows (joined on request id and row index) where the two versions disagree, and the pairs.

    Classification: the labels differ. Regression: the predictions differ by more than 10% of the
    spread (standard deviation) of the stable predictions.
    """
    a, b = paired_rows(stable, shadow)
    if a.empty:
        return None, 0
    value = "prediction" if task == "regression" else "label"
    if task == "regression":
        x, y = a[value].to_numpy(dtype=float), b[value].to_numpy(dtype=float)
        spread = float(np.std(x)) or 1.0
        differs = np.abs(x - y) > 0.1 * spread
    else:
        differs = (a[value].astype(str) != b[value].astype(str)).to_numpy()
    return float(np.mean(differs)), len(a)


# --- the checks -----------------------------------------------------------------------------


def wilson_lower_bound(errors: int, n: int, z: float = WILSON_Z) -> float:
    """The one-sided 95% lower confidence bound of a rate (Wilson score interval)."""
    if n == 0:
        return 0.0
    p = errors / n
    centre = p + z * z / (2 * n)
    spread = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return max(0.0, (centre - spread) / (1 + z * z / n))


def _judge_rate(observed: float, lower: float, limit: float) -> Outcome:
    # Over the limit only when even the lower confidence bound is: one 503 among 55 answers is not
    # yet evidence of a 1.8% error rate. Over it by chance so far: keep collecting (fail closed at max wait).
    if observed <= limit:
        return PASS
    return FAIL if lower > limit else INCONCLUSIVE


def _error_checks(canary: MetricsWindow, stable: MetricsWindow, cfg: RolloutAnalysis) -> list[Check]:
    c_rate, s_rate = canary.error_rate, stable.error_rate
    if canary.requests < MIN_REQUESTS_PER_CHECK:
        why = f"canary answered {canary.requests} requests, fewer than {MIN_REQUESTS_PER_CHECK}"
        return [
            Check("error_rate", c_rate, s_rate, f"<= {cfg.max_error_rate:g}", INCONCLUSIVE, why),
            Check(
                "error_rate_vs_stable",
                c_rate,
                s_rate,
                f"<= stable + {cfg.max_error_rate_increase:g}",
                INCONCLUSIVE,
                why,
            ),
        ]
    assert c_rate is not None
    lower = wilson_lower_bound(canary.errors, canary.requests)
    absolute = Check(
        "error_rate",
        c_rate,
        s_rate,
        f"<= {cfg.max_error_rate:g}",
        _judge_rate(c_rate, lower, cfg.max_error_rate),
        f"{canary.errors} of {canary.requests} canary answers were 5xx ({c_rate:.2%}, 95% lower bound "
        f"{lower:.2%})",
    )
    if stable.requests < MIN_REQUESTS_PER_CHECK or s_rate is None:
        relative = Check(
            "error_rate_vs_stable",
            c_rate,
            s_rate,
            f"<= stable + {cfg.max_error_rate_increase:g}",
            INCONCLUSIVE,
            f"stable answered {stable.requests} requests, fewer than {MIN_REQUESTS_PER_CHECK}",
        )
    else:
        increase = c_rate - s_rate
        relative = Check(
            "error_rate_vs_stable",
            c_rate,
            s_rate,
            f"<= stable + {cfg.max_error_rate_increase:g}",
            _judge_rate(increase, lower - s_rate, cfg.max_error_rate_increase),
            f"canary 5xx share {c_rate:.2%} vs stable {s_rate:.2%} ({increase:+.2%})",
        )
    return [absolute, relative]


def _latency_check(canary: MetricsWindow, stable: MetricsWindow, cfg: RolloutAnalysis) -> Check:
    threshold = f"ratio <= {cfg.max_latency_p95_ratio:g} or within {cfg.latency_tolerance_ms:g} ms"
    if min(canary.latency_count, stable.latency_count) < MIN_REQUESTS_PER_CHECK:
        return Check(
            "latency_p95_ratio",
            None,
            None,
            threshold,
            INCONCLUSIVE,
            f"latency of {canary.latency_count} canary and {stable.latency_count} stable answers, "
            f"fewer than {MIN_REQUESTS_PER_CHECK} on a side",
        )
    c_p95, s_p95 = canary.latency_quantile(0.95), stable.latency_quantile(0.95)
    assert c_p95 is not None and s_p95 is not None
    c_ms, s_ms = c_p95 * 1000, s_p95 * 1000
    ratio = c_ms / s_ms if s_ms > 0 else math.inf
    ok = ratio <= cfg.max_latency_p95_ratio or c_ms - s_ms <= cfg.latency_tolerance_ms
    return Check(
        "latency_p95_ratio",
        round(c_ms, 3),
        round(s_ms, 3),
        threshold,
        PASS if ok else FAIL,
        f"p95 {c_ms:.1f} ms vs stable {s_ms:.1f} ms (ratio {ratio:.2f})",
    )


def _distance_check(canary_scores: np.ndarray, stable_scores: np.ndarray, cfg: RolloutAnalysis) -> Check:
    name = f"score_{cfg.score_distance}"
    threshold = f"<= {cfg.max_score_distance:g}"
    if min(len(canary_scores), len(stable_scores)) < cfg.min_rows_for_distance:
        return Check(
            name,
            None,
            None,
            threshold,
            INCONCLUSIVE,
            f"{len(canary_scores)} canary and {len(stable_scores)} stable scored rows, fewer than "
            f"{cfg.min_rows_for_distance} on a side",
        )
    measure = (
        jensen_shannon_distance if cfg.score_distance == "jensen_shannon" else population_stability_index
    )
    distance = measure(stable_scores, canary_scores, score_bins(len(stable_scores), len(canary_scores)))
    return Check(
        name,
        round(distance, 4),
        0.0,
        threshold,
        PASS if distance <= cfg.max_score_distance else FAIL,
        f"mean score {np.mean(canary_scores):.4f} vs stable {np.mean(stable_scores):.4f}, "
        f"distance {distance:.4f}",
    )


def analyse(
    cfg: RolloutAnalysis,
    *,
    canary: MetricsWindow,
    stable: MetricsWindow,
    canary_scores: Iterable[float],
    stable_scores: Iterable[float],
    min_requests: int | None = None,
) -> Analysis:
    """Judge the canary against stable over one window with the spec's thresholds.

    Args:
        cfg: The spec's ``rollout.analysis``.
        canary: The canary's requests and latency in the window (:func:`metrics_window`).
        stable: The stable version's, over the same window (at 100% canary: the previous step's).
        canary_scores: Scores the canary logged in the window (:func:`scores_of`).
        stable_scores: Scores stable logged in the same window.
        min_requests: The stage's ``min_requests``; fewer canary requests adds an inconclusive
            ``min_requests`` check (the stage keeps baking, and fails closed at its ``max_wait_s``).
    """
    c_scores = np.asarray(list(canary_scores), dtype=float)
    s_scores = np.asarray(list(stable_scores), dtype=float)
    checks = []
    if min_requests is not None:
        enough = canary.requests >= min_requests
        checks.append(
            Check(
                "min_requests",
                float(canary.requests),
                float(stable.requests),
                f">= {min_requests}",
                PASS if enough else INCONCLUSIVE,
                f"canary answered {canary.requests} of the {min_requests} requests the stage needs",
            )
        )
    checks += _error_checks(canary, stable, cfg)
    soft = [_latency_check(canary, stable, cfg), _distance_check(c_scores, s_scores, cfg)]
    if min_requests is not None and canary.requests < min_requests:
        # Errors fail at once (a broken canary goes out fast); latency and score distributions are
        # noisy on a partial window, so they are judged only on the stage's whole window.
        soft = [
            Check(
                c.name,
                c.canary,
                c.stable,
                c.threshold,
                INCONCLUSIVE,
                f"{c.reason} (judged once the stage has its {min_requests} requests)",
            )
            if c.outcome == FAIL
            else c
            for c in soft
        ]
    checks += soft
    return Analysis(checks, canary_requests=canary.requests, stable_requests=stable.requests)


def shadow_check(
    task: str, stable: pd.DataFrame, shadow: pd.DataFrame, *, max_disagreement_rate: float, min_pairs: int
) -> Check:
    """The shadow stage's paired check: same requests, both versions, how often do they disagree?"""
    rate, pairs = paired_disagreement_rate(task, stable, shadow)
    threshold = f"<= {max_disagreement_rate:g}"
    if rate is None or pairs < min_pairs:
        return Check(
            "paired_disagreement_rate",
            rate,
            None,
            threshold,
            INCONCLUSIVE,
            f"{pairs} paired rows, fewer than {min_pairs}",
        )
    return Check(
        "paired_disagreement_rate",
        round(rate, 4),
        0.0,
        threshold,
        PASS if rate <= max_disagreement_rate else FAIL,
        f"the versions disagree on {rate:.2%} of {pairs} paired rows",
    )


def analyse_shadow(
    task: str,
    cfg: RolloutAnalysis,
    *,
    stable: pd.DataFrame,
    shadow: pd.DataFrame,
    replayed: int,
    not_answered: int,
    min_requests: int,
    max_disagreement_rate: float,
) -> Analysis:
    """Judge a shadow stage: the candidate's answers to copies of requests stable answered.

    Args:
        task: The spec's task (which prediction column is compared).
        cfg: The spec's ``rollout.analysis`` (error rate and score distance thresholds).
        stable: Stable's inference-log rows of the stage's window.
        shadow: The candidate's rows for the copies (variant ``shadow``).
        replayed: Copies sent to the candidate so far.
        not_answered: Copies the candidate did not answer with 200 (5xx, 4xx or no answer), though
            stable answered each of them.
        min_requests: The shadow stage's ``requests``: paired requests needed before the
            disagreement and the score distance are judged (until then they can only be inconclusive).
        max_disagreement_rate: The shadow stage's ``max_disagreement_rate``.

    Returns:
        An :class:`Analysis` whose ``canary_requests`` counts paired requests and
        ``stable_requests`` the requests stable answered in the window.
    """
    s_pairs, c_pairs = paired_rows(stable, shadow)
    paired_requests = int(s_pairs["request_id"].nunique()) if not s_pairs.empty else 0
    stable_requests = int(stable["request_id"].nunique()) if not stable.empty else 0
    enough = paired_requests >= min_requests
    checks = [
        Check(
            "paired_requests",
            float(paired_requests),
            float(stable_requests),
            f">= {min_requests}",
            PASS if enough else INCONCLUSIVE,
            f"{paired_requests} requests answered by both versions, of {stable_requests} stable answered "
            f"in the window ({replayed} copies sent to the candidate)",
        )
    ]
    threshold = f"<= {cfg.max_error_rate:g}"
    if replayed < MIN_REQUESTS_PER_CHECK:
        checks.append(
            Check(
                "error_rate",
                not_answered / replayed if replayed else None,
                0.0,
                threshold,
                INCONCLUSIVE,
                f"{replayed} copies sent, fewer than {MIN_REQUESTS_PER_CHECK}",
            )
        )
    else:
        rate, lower = not_answered / replayed, wilson_lower_bound(not_answered, replayed)
        checks.append(
            Check(
                "error_rate",
                rate,
                0.0,
                threshold,
                _judge_rate(rate, lower, cfg.max_error_rate),
                f"{not_answered} of {replayed} copies of requests stable answered got no 200 from "
                f"the candidate ({rate:.2%}, 95% lower bound {lower:.2%})",
            )
        )
    soft = [
        shadow_check(
            task,
            s_pairs,
            c_pairs,
            max_disagreement_rate=max_disagreement_rate,
            min_pairs=MIN_REQUESTS_PER_CHECK,
        ),
        _distance_check(scores_of(task, c_pairs), scores_of(task, s_pairs), cfg),
    ]
    if not enough:
        # As in a canary stage: a partial window is noise; judged once the stage has its pairs.
        soft = [
            Check(
                c.name,
                c.canary,
                c.stable,
                c.threshold,
                INCONCLUSIVE,
                f"{c.reason} (judged once {min_requests} requests are paired)",
            )
            if c.outcome == FAIL
            else c
            for c in soft
        ]
    checks += soft
    return Analysis(checks, canary_requests=paired_requests, stable_requests=stable_requests)


def _fmt(value: float | None) -> str:
    if value is None:
        return "-"
    if float(value).is_integer() and abs(value) >= 1:
        return str(int(value))
    return f"{value:.4g}"


def render_table(analysis: Analysis, *, title: str = "") -> str:
    """The analysis as a fixed-width text table (task log, audit trail)."""
    header = ("check", "canary", "stable", "threshold", "result", "reason")
    rows = [
        (c.name, _fmt(c.canary), _fmt(c.stable), c.threshold, c.outcome.upper(), c.reason)
        for c in analysis.checks
    ]
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(5)]
    lines = [title] if title else []
    lines.append("  ".join(h.ljust(w) for h, w in zip(header[:5], widths, strict=True)) + "  " + header[5])
    lines.append("  ".join("-" * w for w in widths) + "  " + "-" * 6)
    lines += ["  ".join(v.ljust(w) for v, w in zip(r[:5], widths, strict=True)) + "  " + r[5] for r in rows]
    lines.append(f"verdict: {analysis.verdict.upper()} ({analysis.reason()})")
    return "\n".join(lines)
