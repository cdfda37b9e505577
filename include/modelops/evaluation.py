"""Compare a candidate model with the champion and a naive baseline, and decide the gate.

Everything here works on *scores*, not models (see ``include.modelops.scoring`` for the
contract), so it is cheap to test and the same numbers come out wherever it runs:

* :func:`compute_metrics` – the task's metrics (names from ``metrics_catalog.METRICS``);
  a metric that is undefined on the rows (e.g. ROC AUC with one class) is ``None``.
* :func:`paired_bootstrap` – the candidate-minus-champion difference of one metric with
  a 95% confidence interval, both models scored on the same resampled rows.
* :func:`slice_metrics` – the primary metric per value of each ``segment_columns`` column.
* :func:`evaluate` – the evaluation report (a JSON-serialisable dict).
* :func:`decide` – the promotion gate from ``spec.evaluation.gate``: every check with a
  one-line reason a reviewer can act on.
* :func:`render_html` – the report and decision as one self-contained HTML page.

Every metric is written once, as a *weighted* function of the rows: a ``(B, n)`` matrix of
row weights gives ``B`` values at once. Plain metrics use one row of ones; the bootstrap
uses the resample counts of each row, so 200 resamples cost a few matrix operations
rather than 200 Python-level metric calls, and the point estimate and the bootstrap can
never disagree on what a metric means.

Only numpy and the standard library are imported at module level: DAG files may import
this module (indirectly) at parse time.
"""

from __future__ import annotations

import html
import math
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from include.modelops.metrics_catalog import METRICS, higher_is_better

if TYPE_CHECKING:
    import pandas as pd

    from include.modelops.spec import ModelSpec

CONFIDENCE = 0.95
CALIBRATION_BINS = 10
# Numeric segment columns with more distinct values than this are cut into quantile bins,
# so that slicing by e.g. an amount column gives a handful of slices, not thousands
# (an hour-of-day column, 24 values, is still sliced per hour).
MAX_SLICE_VALUES = 30
NUMERIC_SLICE_BINS = 5
# Bootstrap weights are processed in chunks of at most this many cells (resamples x rows),
# which bounds memory (8 bytes a cell, under ten copies: ~150 MB) on large holdouts.
_BOOTSTRAP_CHUNK_CELLS = 2_000_000
_DECIMALS = 6
# Tolerance for gate comparisons, so that a value equal to its limit up to float noise passes.
_TOL = 1e-9

BASELINE_DESCRIPTION: dict[str, str] = {
    "binary_classification": (
        "Naive baseline: predicts the training prevalence of the positive class for every row "
        "(uses no features)."
    ),
    "multiclass_classification": (
        "Naive baseline: predicts the training class frequencies for every row "
        "(uses no features; its label is always the most frequent class)."
    ),
    "regression": (
        "Naive baseline: predicts the training mean of the target for every row (uses no features)."
    ),
}

FIRST_MODEL_REASON = "no champion yet: first model, compared against thresholds and baseline only"

# Chance: a model's primary metric with its own scores shuffled over the holdout rows (the labels
# permuted), i.e. what the same predictions score when they carry no information about the rows.
# The gate requires the candidate at least CHANCE_MIN_SIGMAS standard deviations of that
# shuffled distribution better than its mean (one-sided p ~ 0.001), whatever the spec's
# thresholds: a model trained on shuffled labels scores at chance and is always rejected.
CHANCE_PERMUTATIONS = 200
CHANCE_MIN_SIGMAS = 3.0
# The champion is re-scored on each new holdout. Losing more than this share of its recorded edge
# over the no-skill level (the better of the naive baseline and chance, both on the new holdout)
# means the data changed or broke, not the model: the gate fails closed (check champion_consistent).
CHAMPION_COLLAPSE_SHARE = 0.5
CHAMPION_CONSISTENT = "champion_consistent"


# --------------------------------------------------------------------------------------
# Labels and scores
# --------------------------------------------------------------------------------------


def _task(spec: ModelSpec) -> str:
    return spec.task.value


def _binary_classes(spec: ModelSpec) -> list[Any]:
    return list(spec.target.classes) if spec.target.classes is not None else [0, 1]


def _encode_labels(spec: ModelSpec, y_true: Any, n_classes: int | None = None) -> np.ndarray:
    """Labels as numbers: binary -> 0/1 floats, multiclass -> class index, regression -> floats.

    Raises:
        ValueError: a label is missing or not one of ``target.classes``.
    """
    y = np.asarray(getattr(y_true, "values", y_true))
    y = y.reshape(-1)
    task = _task(spec)
    target = spec.target.name
    if task == "regression":
        out = y.astype(float)
        if np.isnan(out).any():
            raise ValueError(
                f"target column {target!r} has {int(np.isnan(out).sum())} missing value(s); "
                "drop or fill them before evaluation"
            )
        return out
    if task == "binary_classification":
        classes = _binary_classes(spec)
    else:
        classes = list(spec.target.classes) if spec.target.classes is not None else None
        if classes is None:
            present = sorted(np.unique(y).tolist())
            if n_classes is not None and len(present) != n_classes:
                raise ValueError(
                    f"target.classes is not set in the spec and the labels present ({present}) do not match "
                    f"the {n_classes} score columns; set target.classes (in score-column order)"
                )
            classes = present
    codes = np.full(len(y), -1, dtype=np.int64)
    for i, c in enumerate(classes):
        codes[_equals(y, c)] = i
    unknown = codes < 0
    if unknown.any():
        examples = sorted({str(v) for v in y[unknown][:1000]})[:5]
        raise ValueError(
            f"target column {target!r} has {int(unknown.sum())} value(s) that are missing or not in "
            f"target.classes "
            f"{classes}, e.g. {examples}; fix the labels or target.classes in the spec"
        )
    if task == "binary_classification":
        return codes.astype(float)
    return codes


def _equals(y: np.ndarray, value: Any) -> np.ndarray:
    """Element-wise ``y == value`` that tolerates mixed types and missing values (never equal)."""
    if y.dtype != object:
        try:
            eq = np.asarray(y == value)
            if eq.shape == y.shape and eq.dtype == bool:
                return eq
        except (TypeError, ValueError):
            pass

    def same(v: Any) -> bool:
        try:
            return bool(v == value)
        except (TypeError, ValueError):  # e.g. pd.NA == 1 is NA, whose truth value is ambiguous
            return False

    return np.fromiter((same(v) for v in y.tolist()), dtype=bool, count=len(y))


def _as_scores(spec: ModelSpec, scores: Any, n_rows: int, who: str = "scores") -> np.ndarray:
    """Check ``scores`` against the scoring contract and the number of rows."""
    s = np.asarray(getattr(scores, "values", scores), dtype=float)
    task = _task(spec)
    if task == "multiclass_classification":
        if s.ndim != 2:
            raise ValueError(
                f"{who}: multiclass scores must be a 2-D array of class probabilities (rows x classes), "
                f"got shape {s.shape}"
            )
        k = len(spec.target.classes) if spec.target.classes is not None else s.shape[1]
        if s.shape[1] != k:
            raise ValueError(
                f"{who}: {s.shape[1]} probability columns but target.classes has {k} classes "
                f"({spec.target.classes})"
            )
    else:
        if s.ndim == 2 and s.shape[1] == 1:
            s = s[:, 0]
        if s.ndim != 1:
            raise ValueError(f"{who}: expected a 1-D array of scores, got shape {s.shape}")
    if len(s) != n_rows:
        raise ValueError(f"{who}: {len(s)} scores for {n_rows} rows; score exactly the evaluated rows")
    bad = ~np.isfinite(s)
    if bad.any():
        raise ValueError(
            f"{who}: {int(bad.any(axis=-1).sum() if s.ndim == 2 else bad.sum())} row(s) have NaN or "
            "infinite scores; the model must score every row"
        )
    return s


# --------------------------------------------------------------------------------------
# Weighted metrics: f(y, s, W) -> (B,) with NaN where undefined
# --------------------------------------------------------------------------------------


def _safe_div(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    out = np.full(np.shape(num), np.nan)
    np.divide(num, den, out=out, where=den > 0)
    return out


def _tie_groups(s: np.ndarray, descending: bool) -> tuple[np.ndarray, np.ndarray]:
    """Sort order of ``s`` and the start index of each run of equal scores."""
    order = np.argsort(-s if descending else s, kind="mergesort")
    ss = s[order]
    starts = np.flatnonzero(np.r_[True, ss[1:] != ss[:-1]])
    return order, starts


_Groups = tuple[np.ndarray, np.ndarray]


def _roc_auc(y: np.ndarray, s: np.ndarray, w: np.ndarray, groups: _Groups | None = None) -> np.ndarray:
    # Mann-Whitney: for each positive, the weight of negatives scored below it, plus half of
    # the tied ones. Grouping equal scores handles ties exactly like sklearn.
    order, starts = groups or _tie_groups(s, descending=False)
    wo, yo = w[:, order], y[order]
    pos_g = np.add.reduceat(wo * yo, starts, axis=1)
    neg_g = np.add.reduceat(wo * (1.0 - yo), starts, axis=1)
    neg_below = np.cumsum(neg_g, axis=1) - neg_g
    num = (pos_g * (neg_below + 0.5 * neg_g)).sum(axis=1)
    return _safe_div(num, pos_g.sum(axis=1) * neg_g.sum(axis=1))


def _pr_auc(y: np.ndarray, s: np.ndarray, w: np.ndarray, groups: _Groups | None = None) -> np.ndarray:
    # Average precision as sklearn defines it: sum over score thresholds (descending) of
    # (recall gained) x (precision at that threshold).
    order, starts = groups or _tie_groups(s, descending=True)
    wo, yo = w[:, order], y[order]
    tp_g = np.add.reduceat(wo * yo, starts, axis=1)
    fp_g = np.add.reduceat(wo * (1.0 - yo), starts, axis=1)
    tp, fp = np.cumsum(tp_g, axis=1), np.cumsum(fp_g, axis=1)
    precision = np.divide(tp, tp + fp, out=np.zeros_like(tp), where=(tp + fp) > 0)
    return _safe_div((tp_g * precision).sum(axis=1), tp_g.sum(axis=1))


def _confusion(y: np.ndarray, s: np.ndarray, w: np.ndarray, threshold: float) -> tuple[np.ndarray, ...]:
    pred = (s >= threshold).astype(float)
    tp = w @ (y * pred)
    fp = w @ ((1.0 - y) * pred)
    fn = w @ (y * (1.0 - pred))
    return tp, fp, fn


def _f1(threshold: float) -> Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]:
    def f(y: np.ndarray, s: np.ndarray, w: np.ndarray) -> np.ndarray:
        tp, fp, fn = _confusion(y, s, w, threshold)
        return _safe_div(2 * tp, 2 * tp + fp + fn)

    return f


def _precision(threshold: float) -> Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]:
    def f(y: np.ndarray, s: np.ndarray, w: np.ndarray) -> np.ndarray:
        tp, fp, _ = _confusion(y, s, w, threshold)
        return _safe_div(tp, tp + fp)

    return f


def _recall(threshold: float) -> Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]:
    def f(y: np.ndarray, s: np.ndarray, w: np.ndarray) -> np.ndarray:
        tp, _, fn = _confusion(y, s, w, threshold)
        return _safe_div(tp, tp + fn)

    return f


def _brier(y: np.ndarray, s: np.ndarray, w: np.ndarray) -> np.ndarray:
    return _safe_div(w @ (s - y) ** 2, w.sum(axis=1))


def _calibration_error(y: np.ndarray, s: np.ndarray, w: np.ndarray) -> np.ndarray:
    # Expected calibration error over equal-width bins of the score:
    # sum_b (n_b / n) |mean(y)_b - mean(s)_b| = sum_b |sum(y)_b - sum(s)_b| / n.
    bins = np.clip((s * CALIBRATION_BINS).astype(np.int64), 0, CALIBRATION_BINS - 1)
    onehot = np.zeros((len(s), CALIBRATION_BINS))
    onehot[np.arange(len(s)), bins] = 1.0
    gap = np.abs(w @ (onehot * (y - s)[:, None])).sum(axis=1)
    return _safe_div(gap, w.sum(axis=1))


def _normalised_probabilities(s: np.ndarray) -> np.ndarray:
    sums = s.sum(axis=1, keepdims=True)
    return np.divide(s, sums, out=np.full_like(s, 1.0 / s.shape[1]), where=sums > 0)


def _accuracy(y: np.ndarray, s: np.ndarray, w: np.ndarray) -> np.ndarray:
    return _safe_div(w @ (s.argmax(axis=1) == y).astype(float), w.sum(axis=1))


def _macro_f1(y: np.ndarray, s: np.ndarray, w: np.ndarray) -> np.ndarray:
    # Averaged over the classes present in the labels or the predictions (as sklearn does).
    k = s.shape[1]
    truth = np.zeros((len(y), k))
    truth[np.arange(len(y)), y] = 1.0
    pred = np.zeros_like(truth)
    pred[np.arange(len(y)), s.argmax(axis=1)] = 1.0
    tp = w @ (truth * pred)
    fp = w @ ((1.0 - truth) * pred)
    fn = w @ (truth * (1.0 - pred))
    den = 2 * tp + fp + fn
    present = den > 0
    f1 = np.divide(2 * tp, den, out=np.zeros_like(tp), where=present)
    return _safe_div(f1.sum(axis=1), present.sum(axis=1).astype(float))


def _log_loss(y: np.ndarray, s: np.ndarray, w: np.ndarray) -> np.ndarray:
    p = _normalised_probabilities(s)[np.arange(len(y)), y]
    eps = np.finfo(float).eps
    return _safe_div(w @ -np.log(np.clip(p, eps, 1.0)), w.sum(axis=1))


def _rmse(y: np.ndarray, s: np.ndarray, w: np.ndarray) -> np.ndarray:
    return np.sqrt(_safe_div(w @ (s - y) ** 2, w.sum(axis=1)))


def _mae(y: np.ndarray, s: np.ndarray, w: np.ndarray) -> np.ndarray:
    return _safe_div(w @ np.abs(s - y), w.sum(axis=1))


def _r2(y: np.ndarray, s: np.ndarray, w: np.ndarray) -> np.ndarray:
    yc = y - y.mean() if len(y) else y  # centring first keeps the variance formula stable
    n = w.sum(axis=1)
    sum_sq = w @ yc**2
    ss_tot = sum_sq - _safe_div((w @ yc) ** 2, n)
    ss_res = w @ (s - y) ** 2
    # A constant target (within float noise) has no variance to explain: R^2 is undefined.
    defined = (n > 1) & (ss_tot > 1e-10 * np.maximum(sum_sq, 1e-300))
    out = np.full(len(n), np.nan)
    np.divide(ss_res, ss_tot, out=out, where=defined)
    return np.where(defined, 1.0 - out, np.nan)


def _metric_fn(
    spec: ModelSpec, metric: str, threshold: float | None = None
) -> Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]:
    """``threshold``: the model's decision threshold (binary f1/precision/recall); None: the spec's."""
    task = _task(spec)
    if metric not in METRICS[task]:
        raise ValueError(f"metric {metric!r} is not known for {task}; use one of {sorted(METRICS[task])}")
    if threshold is None:
        from include.modelops.decision_threshold import spec_threshold

        threshold = float(spec_threshold(spec)["value"])
    table: dict[str, Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]] = {
        "roc_auc": _roc_auc,
        "pr_auc": _pr_auc,
        "f1": _f1(threshold),
        "precision": _precision(threshold),
        "recall": _recall(threshold),
        "brier": _brier,
        "calibration_error": _calibration_error,
        "macro_f1": _macro_f1,
        "accuracy": _accuracy,
        "log_loss": _log_loss,
        "rmse": _rmse,
        "mae": _mae,
        "r2": _r2,
    }
    return table[metric]


def _bound_metric(
    spec: ModelSpec, metric: str, y: np.ndarray, s: np.ndarray, threshold: float | None = None
) -> Callable[[np.ndarray], np.ndarray]:
    """The metric of these rows and scores as a function of the row weights alone.

    Rank metrics sort the scores once here, not once per chunk of bootstrap weights.
    """
    fn = _metric_fn(spec, metric, threshold)
    if fn is _roc_auc or fn is _pr_auc:
        groups = _tie_groups(s, descending=fn is _pr_auc)
        return lambda w: fn(y, s, w, groups)
    return lambda w: fn(y, s, w)


def _to_float(x: Any) -> float | None:
    """A finite Python float, or None (never NaN or inf, never a numpy type)."""
    if x is None:
        return None
    x = float(x)
    return x if math.isfinite(x) else None


def _round(x: Any, digits: int = _DECIMALS) -> float | None:
    x = _to_float(x)
    return None if x is None else round(x, digits)


def _point_metric(
    spec: ModelSpec, metric: str, y: np.ndarray, s: np.ndarray, threshold: float | None = None
) -> float | None:
    if len(y) == 0:
        return None
    return _to_float(_metric_fn(spec, metric, threshold)(y, s, np.ones((1, len(y))))[0])


def compute_metrics(
    spec: ModelSpec, y_true: Any, scores: Any, *, threshold: float | None = None
) -> dict[str, float | None]:
    """Every metric of the spec's task type, named as in ``metrics_catalog.METRICS``.

    Binary classification: roc_auc, pr_auc (average precision), f1/precision/recall with a
    row predicted positive when its score is >= ``threshold`` (the model's own decision
    threshold; None: the spec's fixed ``evaluation.threshold.value``), brier,
    calibration_error (expected calibration error, 10 equal-width bins). Multiclass:
    macro_f1, accuracy, log_loss. Regression: rmse, mae, r2.

    Args:
        spec: the model spec (task type, classes, decision threshold).
        y_true: labels as they appear in the target column.
        scores: scores following ``include.modelops.scoring``'s contract.

    Returns:
        ``{metric: value}``; a metric undefined on these rows (e.g. roc_auc with one class,
        precision with no predicted positive) is ``None``.

    Raises:
        ValueError: labels outside ``target.classes``, or scores of the wrong shape or length.
    """
    task = _task(spec)
    n = len(np.asarray(getattr(y_true, "values", y_true)).reshape(-1))
    s = _as_scores(spec, scores, n)
    y = _encode_labels(spec, y_true, n_classes=s.shape[1] if s.ndim == 2 else None)
    return {metric: _point_metric(spec, metric, y, s, threshold) for metric in METRICS[task]}


def baseline_scores(spec: ModelSpec, y_train: Any, n_rows: int) -> np.ndarray:
    """Scores of the naive baseline (see ``BASELINE_DESCRIPTION``) for ``n_rows`` rows.

    Binary: the training prevalence of the positive class; multiclass: the training class
    frequencies (columns in ``target.classes`` order); regression: the training mean.

    Raises:
        ValueError: ``y_train`` is empty or has labels outside ``target.classes``.
    """
    task = _task(spec)
    n_classes = len(spec.target.classes) if spec.target.classes is not None else None
    y = _encode_labels(spec, y_train, n_classes=n_classes)
    if len(y) == 0:
        raise ValueError("the training labels are empty; the baseline needs at least one training row")
    if task == "multiclass_classification":
        k = n_classes if n_classes is not None else int(y.max()) + 1
        freq = np.bincount(y, minlength=k) / len(y)
        return np.tile(freq, (n_rows, 1))
    return np.full(n_rows, float(y.mean()))


# --------------------------------------------------------------------------------------
# Paired bootstrap
# --------------------------------------------------------------------------------------


def paired_bootstrap(
    spec: ModelSpec,
    y_true: Any,
    candidate: Any,
    champion: Any,
    *,
    metric: str,
    samples: int,
    seed: int = 0,
    candidate_threshold: float | None = None,
    champion_threshold: float | None = None,
) -> dict[str, Any]:
    """Bootstrap the difference metric(candidate) - metric(champion) on the same resampled rows.

    Both models are scored on each resample, so the interval reflects the difference between
    the models rather than the noise of the holdout. Resamples on which the metric is undefined
    for either model (e.g. a resample without positives) are skipped and counted.

    Args:
        spec: the model spec.
        y_true: holdout labels.
        candidate: the candidate's scores on the holdout.
        champion: the champion's scores on the same rows.
        metric: a metric name of the spec's task.
        samples: number of resamples (0 gives the point difference only).
        seed: seed of the resampling, for reproducible reports.
        candidate_threshold, champion_threshold: each model's own decision threshold (binary
            f1/precision/recall); None: the spec's.

    Returns:
        ``{"metric", "higher_is_better", "diff", "ci_low", "ci_high", "samples", "valid_samples",
        "skipped", "confidence", "prob_candidate_better"}``. ``diff`` is the difference on all
        rows; ``ci_low``/``ci_high`` the 2.5/97.5 percentiles of the resampled differences;
        ``prob_candidate_better`` the share of resamples in which the candidate is better
        (ties count half), in the metric's own direction. Values that cannot be computed are None.
    """
    _metric_fn(spec, metric)  # an unknown metric fails before any work
    better_high = higher_is_better(_task(spec), metric)
    n = len(np.asarray(getattr(y_true, "values", y_true)).reshape(-1))
    cand = _as_scores(spec, candidate, n, "candidate")
    champ = _as_scores(spec, champion, n, "champion")
    y = _encode_labels(spec, y_true, n_classes=cand.shape[1] if cand.ndim == 2 else None)
    samples = int(samples)
    result: dict[str, Any] = {
        "metric": metric,
        "higher_is_better": better_high,
        "diff": None,
        "ci_low": None,
        "ci_high": None,
        "samples": samples,
        "valid_samples": 0,
        "skipped": 0,
        "confidence": CONFIDENCE,
        "prob_candidate_better": None,
    }
    if n == 0:
        result["skipped"] = samples
        return result
    cand_fn = _bound_metric(spec, metric, y, cand, candidate_threshold)
    champ_fn = _bound_metric(spec, metric, y, champ, champion_threshold)
    ones = np.ones((1, n))
    result["diff"] = _round(cand_fn(ones)[0] - champ_fn(ones)[0])
    if samples <= 0:
        return result

    rng = np.random.default_rng(seed)
    chunk = max(1, min(samples, _BOOTSTRAP_CHUNK_CELLS // n))
    diffs = []
    done = 0
    while done < samples:
        b = min(chunk, samples - done)
        rows = rng.integers(0, n, size=(b, n))
        # Row counts of each resample: resampling rows == weighting each row by its count.
        offsets = (np.arange(b) * n)[:, None]
        weights = np.bincount((rows + offsets).ravel(), minlength=b * n).reshape(b, n).astype(float)
        del rows
        diffs.append(cand_fn(weights) - champ_fn(weights))
        done += b
    d = np.concatenate(diffs)
    valid = d[np.isfinite(d)]
    result["valid_samples"] = len(valid)
    result["skipped"] = int(samples - len(valid))
    if len(valid):
        alpha = (1.0 - CONFIDENCE) / 2
        low, high = np.quantile(valid, [alpha, 1.0 - alpha])
        result["ci_low"], result["ci_high"] = _round(low), _round(high)
        wins = (valid > 0) if better_high else (valid < 0)
        result["prob_candidate_better"] = _round((wins.sum() + 0.5 * (valid == 0).sum()) / len(valid), 4)
    return result


def chance_level(
    spec: ModelSpec,
    y_true: Any,
    scores: Any,
    *,
    metric: str,
    permutations: int = CHANCE_PERMUTATIONS,
    seed: int = 0,
    threshold: float | None = None,
) -> dict[str, Any]:
    """The metric of ``scores`` against the labels shuffled over the rows: the model's chance level.

    ``threshold``: the model's own decision threshold (binary f1/precision/recall); None: the spec's.

    The shuffled scores have the same distribution as the model's (the same predicted classes,
    the same spread) and no relation to the rows, so this is what the model would score had it
    learned nothing, for any metric (roc_auc ~0.5, macro_f1 ~1/k with balanced classes, r2 below 0).

    Returns:
        ``{"metric", "value", "mean", "sd", "permutations", "valid"}``: the metric on the rows as
        they are, and the mean and standard deviation over ``valid`` shuffles (None if undefined).
    """
    n = len(np.asarray(getattr(y_true, "values", y_true)).reshape(-1))
    s = _as_scores(spec, scores, n)
    y = _encode_labels(spec, y_true, n_classes=s.shape[1] if s.ndim == 2 else None)
    result: dict[str, Any] = {
        "metric": metric,
        "value": None,
        "mean": None,
        "sd": None,
        "permutations": int(permutations),
        "valid": 0,
    }
    if n == 0:
        return result
    fn = _metric_fn(spec, metric, threshold)
    groups = _tie_groups(s, descending=fn is _pr_auc) if fn is _roc_auc or fn is _pr_auc else None
    ones = np.ones((1, n))

    def score(labels: np.ndarray) -> float:
        return float((fn(labels, s, ones, groups) if groups is not None else fn(labels, s, ones))[0])

    result["value"] = _round(score(y))
    rng = np.random.default_rng(seed)
    values = np.array([score(y[rng.permutation(n)]) for _ in range(int(permutations))])
    values = values[np.isfinite(values)]
    result["valid"] = len(values)
    if len(values):
        result["mean"] = _round(values.mean())
        result["sd"] = _round(values.std(ddof=1) if len(values) > 1 else 0.0)
    return result


# --------------------------------------------------------------------------------------
# Slices
# --------------------------------------------------------------------------------------


def _python_value(v: Any) -> Any:
    """A JSON-friendly scalar for a slice value."""
    if v is None:
        return None
    if isinstance(v, np.generic):
        v = v.item()
    if isinstance(v, float) and not math.isfinite(v):
        return None
    if isinstance(v, (str, int, float, bool)):
        return v
    return str(v)


def _slice_keys(column: Any) -> tuple[Any, list[Any]]:
    """Slice key per row (a Series) and the ordered distinct keys (None = missing)."""
    import pandas as pd

    col = column
    if pd.api.types.is_datetime64_any_dtype(col):
        keys = col.dt.strftime("%Y-%m")  # one slice per month, not per timestamp
    elif (
        pd.api.types.is_numeric_dtype(col)
        and not pd.api.types.is_bool_dtype(col)
        and col.nunique(dropna=True) > MAX_SLICE_VALUES
    ):
        binned = pd.qcut(col, q=NUMERIC_SLICE_BINS, duplicates="drop")
        keys = binned.astype(str).where(binned.notna(), None)
        cats = [str(c) for c in binned.cat.categories]
        present = set(keys.dropna().unique())
        ordered = [c for c in cats if c in present]
        if keys.isna().any():
            ordered.append(None)
        return keys, ordered
    else:
        keys = col
    values = [v for v in pd.unique(keys.dropna())]
    try:
        values = sorted(values)
    except TypeError:
        values = sorted(values, key=str)
    if keys.isna().any():
        values.append(None)
    return keys, values


def slice_metrics(
    spec: ModelSpec,
    df: pd.DataFrame,
    y_true: Any,
    scores: Mapping[str, Any],
    thresholds: Mapping[str, float] | None = None,
) -> list[dict[str, Any]]:
    """The primary metric of each model per value of each column in ``spec.segment_columns``.

    Numeric columns with more than ``MAX_SLICE_VALUES`` distinct values are cut into
    ``NUMERIC_SLICE_BINS`` quantile bins and datetime columns into months; missing values
    form their own slice (value ``None``).

    Args:
        spec: the model spec.
        df: the evaluated rows (holds the segment columns), aligned with ``y_true``.
        y_true: labels.
        scores: ``{model name: scores}``, e.g. candidate, champion and baseline.
        thresholds: ``{model name: its decision threshold}`` (binary f1/precision/recall); a model
            not named uses the spec's.

    Returns:
        One dict per slice: ``{"column", "value", "rows", "positives" (binary only),
        "metrics": {model name: primary metric or None}}``.
    """
    task = _task(spec)
    metric = spec.evaluation.primary_metric
    n = len(df)
    arrays = {name: _as_scores(spec, s, n, name) for name, s in scores.items()}
    n_classes = next((a.shape[1] for a in arrays.values() if a.ndim == 2), None)
    y = _encode_labels(spec, y_true, n_classes=n_classes)
    if len(y) != n:
        raise ValueError(f"{len(y)} labels for {n} rows; pass the labels of the evaluated rows")
    out: list[dict[str, Any]] = []
    for column in spec.segment_columns:
        if column not in df.columns:
            raise ValueError(
                f"segment column {column!r} (spec.segment_columns) is missing from the evaluated data"
            )
        keys, values = _slice_keys(df[column].reset_index(drop=True))
        for value in values:
            mask = (keys.isna() if value is None else keys == value).to_numpy(dtype=bool)
            entry: dict[str, Any] = {"column": column, "value": _python_value(value), "rows": int(mask.sum())}
            if task == "binary_classification":
                entry["positives"] = int(y[mask].sum())
            entry["metrics"] = {
                name: _round(_point_metric(spec, metric, y[mask], a[mask], (thresholds or {}).get(name)))
                for name, a in arrays.items()
            }
            out.append(entry)
    return out


# --------------------------------------------------------------------------------------
# Latency
# --------------------------------------------------------------------------------------


def latency_profile(
    predict_one: Callable[[pd.DataFrame], Any], rows: pd.DataFrame, *, n: int = 100, warmup: int = 5
) -> dict[str, Any]:
    """Single-row prediction latency: ``n`` timed calls, each on one row, after a warm-up.

    Args:
        predict_one: called with a one-row DataFrame (e.g. a pyfunc model's ``predict``).
        rows: rows to cycle through.
        n: timed calls.
        warmup: untimed calls first (lazy initialisation, caches).

    Returns:
        ``{"p50_ms", "p95_ms", "n"}``.
    """
    if len(rows) == 0:
        raise ValueError("latency_profile needs at least one row to predict")
    if n < 1:
        raise ValueError(f"latency_profile needs n >= 1 timed calls, got {n}")
    singles = [rows.iloc[[i % len(rows)]] for i in range(max(n, warmup))]
    for i in range(warmup):
        predict_one(singles[i])
    timings = np.empty(n)
    for i in range(n):
        start = time.perf_counter()
        predict_one(singles[i])
        timings[i] = time.perf_counter() - start
    p50, p95 = np.percentile(timings * 1000.0, [50, 95])
    return {"p50_ms": round(float(p50), 4), "p95_ms": round(float(p95), 4), "n": int(n)}


def _p95(entry: Any) -> float | None:
    if isinstance(entry, Mapping):
        return _to_float(entry.get("p95_ms"))
    return _to_float(entry)


def _latency_summary(latency: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """Accepts ``{"candidate": profile, "champion": profile}`` or ``{"candidate_p95", "champion_p95"}``."""
    if not latency:
        return None
    cand = _p95(latency["candidate"]) if "candidate" in latency else _to_float(latency.get("candidate_p95"))
    champ = _p95(latency["champion"]) if "champion" in latency else _to_float(latency.get("champion_p95"))
    ratio = cand / champ if cand is not None and champ is not None and champ > 0 else None
    return {"candidate_p95": _round(cand, 4), "champion_p95": _round(champ, 4), "ratio": _round(ratio, 4)}


# --------------------------------------------------------------------------------------
# The evaluation report
# --------------------------------------------------------------------------------------


def _rounded(metrics: Mapping[str, float | None]) -> dict[str, float | None]:
    return {k: _round(v) for k, v in metrics.items()}


def evaluate(
    spec: ModelSpec,
    holdout: pd.DataFrame,
    *,
    candidate_scores: Any,
    baseline_scores: Any,
    champion_scores: Any | None = None,
    champion_version: str | int | None = None,
    candidate_version: str | int | None = None,
    latency: Mapping[str, Any] | None = None,
    champion_recorded_metrics: Mapping[str, Any] | None = None,
    candidate_threshold: Mapping[str, Any] | None = None,
    champion_threshold: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The evaluation report of a candidate against the champion and the naive baseline.

    Args:
        spec: the model spec.
        holdout: the holdout rows, with the target column ``spec.target.name`` and the
            segment columns.
        candidate_scores: the candidate's scores on ``holdout``.
        baseline_scores: the naive baseline's scores (see :func:`baseline_scores`).
        champion_scores: the champion re-scored on the same rows, or None for a first model.
        champion_version: the champion's registry version.
        candidate_version: the candidate's registry version.
        latency: ``{"candidate": latency_profile(...), "champion": latency_profile(...)}``
            (either may be missing), or ``{"candidate_p95": ms, "champion_p95": ms}``.
        champion_recorded_metrics: the champion's holdout metrics recorded when it was evaluated
            (its run's ``holdout_<metric>``), for the gate's ``champion_consistent`` check.
        candidate_threshold, champion_threshold: binary: each model's own decision threshold as
            its training recorded it (``decision_threshold.threshold_info``); None: the spec's.
            Threshold metrics (f1, precision, recall) are each model's at its own threshold; the
            baseline's at the candidate's.

    Returns:
        A JSON-serialisable dict: ``task``, ``primary_metric``, ``higher_is_better``, ``rows``,
        ``decision_threshold`` (the candidate's), ``operating_point`` (binary: per model, the
        threshold, how it was chosen, and precision, recall and share flagged on the holdout at
        it; else None), ``models`` (candidate, champion or None, baseline), ``comparison``
        (paired bootstrap of the primary metric, or None), ``chance`` (:func:`chance_level` of the
        candidate and the champion), ``slices`` and ``latency_ms``.
    """
    task = _task(spec)
    primary = spec.evaluation.primary_metric
    target = spec.target.name
    if target not in holdout.columns:
        raise ValueError(f"the holdout has no target column {target!r} (spec.target.name)")
    y = holdout[target].to_numpy()
    n = len(y)
    cand = _as_scores(spec, candidate_scores, n, "candidate")
    base = _as_scores(spec, baseline_scores, n, "baseline")
    champ = None if champion_scores is None else _as_scores(spec, champion_scores, n, "champion")

    binary = task == "binary_classification"
    from include.modelops.decision_threshold import operating_point, spec_threshold

    cand_info = dict(candidate_threshold or spec_threshold(spec)) if binary else None
    champ_info = dict(champion_threshold or spec_threshold(spec)) if binary and champ is not None else None
    t_cand = float(cand_info["value"]) if cand_info else None
    t_champ = float(champ_info["value"]) if champ_info else None
    cand_metrics = _rounded(compute_metrics(spec, y, cand, threshold=t_cand))
    report: dict[str, Any] = {
        "task": task,
        "primary_metric": primary,
        "higher_is_better": higher_is_better(task, primary),
        "rows": int(n),
    }
    if task == "binary_classification":
        report["positives"] = int(_encode_labels(spec, y).sum())
    report["decision_threshold"] = t_cand
    report["operating_point"] = None
    if binary:
        y01 = _encode_labels(spec, y)
        report["operating_point"] = {
            role: None
            if info is None
            else {**operating_point(y01, scores, float(info["value"])), "choice": info}
            for role, info, scores in (("candidate", cand_info, cand), ("champion", champ_info, champ))
        }
    report["models"] = {
        "candidate": {
            "metrics": cand_metrics,
            "version": None if candidate_version is None else str(candidate_version),
        },
        "champion": None
        if champ is None
        else {
            "metrics": _rounded(compute_metrics(spec, y, champ, threshold=t_champ)),
            "version": None if champion_version is None else str(champion_version),
            "recorded_metrics": None
            if champion_recorded_metrics is None
            else {k: _round(v) for k, v in champion_recorded_metrics.items()},
        },
        "baseline": {
            "metrics": _rounded(compute_metrics(spec, y, base, threshold=t_cand)),
            "description": BASELINE_DESCRIPTION[task],
        },
    }
    comparison = None
    if champ is not None:
        comparison = paired_bootstrap(
            spec,
            y,
            cand,
            champ,
            metric=primary,
            samples=spec.evaluation.bootstrap_samples,
            seed=spec.split.seed,
            candidate_threshold=t_cand,
            champion_threshold=t_champ,
        )
        comparison["candidate"] = cand_metrics[primary]
        comparison["champion"] = report["models"]["champion"]["metrics"][primary]
    report["comparison"] = comparison
    report["chance"] = {
        "candidate": chance_level(spec, y, cand, metric=primary, seed=spec.split.seed, threshold=t_cand),
        "champion": None
        if champ is None
        else chance_level(spec, y, champ, metric=primary, seed=spec.split.seed, threshold=t_champ),
    }
    slice_scores = {"candidate": cand, **({"champion": champ} if champ is not None else {}), "baseline": base}
    slice_thresholds = {"candidate": t_cand, "champion": t_champ, "baseline": t_cand}
    report["slices"] = slice_metrics(
        spec,
        holdout.reset_index(drop=True),
        y,
        slice_scores,
        {k: v for k, v in slice_thresholds.items() if v is not None},
    )
    report["latency_ms"] = _latency_summary(latency)
    return report


# --------------------------------------------------------------------------------------
# The gate
# --------------------------------------------------------------------------------------


def _fmt(x: float | None, digits: int = 3) -> str:
    return "undefined" if x is None else f"{x:.{digits}f}"


def _fmt_pair(a: float, b: float) -> tuple[str, str]:
    """Format two numbers with enough decimals that unequal values read as unequal."""
    for digits in (3, 4, 5, 6):
        sa, sb = f"{a:.{digits}f}", f"{b:.{digits}f}"
        if sa != sb or abs(a - b) <= _TOL:
            return sa, sb
    return sa, sb


def _signed(x: float | None, digits: int = 3) -> str:
    return "undefined" if x is None else f"{x:+.{digits}f}"


def _check(name: str, value: Any, threshold: Any, passed: bool, reason: str) -> dict[str, Any]:
    return {
        "name": name,
        "value": _round(value),
        "threshold": _round(threshold),
        "passed": bool(passed),
        "reason": reason,
    }


def _slice_label(entry: Mapping[str, Any]) -> str:
    value = "(missing)" if entry["value"] is None else entry["value"]
    return f"{entry['column']}={value}"


def _drop(candidate: float, reference: float, high_better: bool) -> float:
    """How much worse the candidate is than the reference (positive = worse)."""
    return reference - candidate if high_better else candidate - reference


def _threshold_checks(
    spec: ModelSpec, metrics: Mapping[str, Any], decision_threshold: float | None = None
) -> list[dict[str, Any]]:
    checks = []
    for metric, bound in spec.evaluation.gate.thresholds.items():
        value = metrics.get(metric)
        # f1, precision and recall are the candidate's at its own operating threshold: say which.
        at = (
            f" at threshold {decision_threshold:.4g}"
            if decision_threshold is not None and metric in ("f1", "precision", "recall")
            else ""
        )
        for kind, limit, ok_sym, bad_sym in (("min", bound.min, "≥", "<"), ("max", bound.max, "≤", ">")):
            if limit is None:
                continue
            name = f"{metric} {kind}"
            if value is None:
                checks.append(
                    _check(
                        name, None, limit, False, f"{metric}{at} is undefined on the holdout, {kind} {limit}"
                    )
                )
                continue
            passed = value >= limit - _TOL if kind == "min" else value <= limit + _TOL
            sv, sl = _fmt_pair(value, limit)
            reason = (
                f"{metric}{at} {sv} {ok_sym} {sl}" if passed else f"{metric}{at} {sv} {bad_sym} {kind} {sl}"
            )
            checks.append(_check(name, value, limit, passed, reason))
    return checks


def _not_comparable(
    name: str, limit: Any, metric: str, first: bool, cand: float | None, champ: float | None
) -> dict[str, Any] | None:
    """The check's result when candidate and champion cannot be compared, else None."""
    if first:
        return _check(name, None, limit, True, FIRST_MODEL_REASON)
    if cand is None:
        return _check(name, None, limit, False, f"candidate {metric} is undefined on the holdout")
    if champ is None:
        return _check(name, None, limit, True, f"champion {metric} is undefined on the holdout; not compared")
    return None


def _champion_checks(
    spec: ModelSpec, evaluation: Mapping[str, Any], metric: str, high_better: bool
) -> list[dict[str, Any]]:
    gate = spec.evaluation.gate
    first = evaluation["models"].get("champion") is None
    cand = evaluation["models"]["candidate"]["metrics"].get(metric)
    champ = None if first else evaluation["models"]["champion"]["metrics"].get(metric)
    comparison = evaluation.get("comparison") or {}
    checks = []

    if gate.max_drop_vs_champion is not None:
        name, limit = f"{metric} drop vs champion", gate.max_drop_vs_champion
        if skip := _not_comparable(name, limit, metric, first, cand, champ):
            checks.append(skip)
        else:
            drop = _drop(cand, champ, high_better)
            passed = drop <= limit + _TOL
            sd, sl = _fmt_pair(drop, limit)
            if drop <= 0:
                reason = f"{metric} {_fmt(cand)} vs champion {_fmt(champ)}: no drop (limit {sl})"
            elif passed:
                reason = (
                    f"{metric} dropped {sd} vs champion ({_fmt(champ)} → {_fmt(cand)}), within limit {sl}"
                )
            else:
                reason = f"{metric} dropped {sd} vs champion ({_fmt(champ)} → {_fmt(cand)}), limit {sl}"
            checks.append(_check(name, drop, limit, passed, reason))

    if gate.max_relative_drop_vs_champion is not None:
        name, limit = f"{metric} relative drop vs champion", gate.max_relative_drop_vs_champion
        if skip := _not_comparable(name, limit, metric, first, cand, champ):
            checks.append(skip)
        else:
            drop = _drop(cand, champ, high_better)
            if champ != 0:
                rel = drop / abs(champ)
            else:
                rel = 0.0 if drop <= 0 else math.inf
            passed = rel <= limit + _TOL
            rel_txt = "∞" if math.isinf(rel) else f"{rel:.2%}"
            if rel <= 0:
                reason = f"{metric} {_fmt(cand)} vs champion {_fmt(champ)}: no drop (limit {limit:.2%})"
            else:
                verb = "within limit" if passed else "limit"
                reason = (
                    f"{metric} dropped {rel_txt} relative to champion ({_fmt(champ)} → {_fmt(cand)}), "
                    f"{verb} {limit:.2%}"
                )
            checks.append(_check(name, None if math.isinf(rel) else rel, limit, passed, reason))

    if gate.require_significant_improvement:
        name = f"{metric} significantly better than champion"
        if first:
            checks.append(_check(name, None, 0.0, True, FIRST_MODEL_REASON))
        else:
            low, high = comparison.get("ci_low"), comparison.get("ci_high")
            if low is None or high is None:
                why = (
                    "evaluation.bootstrap_samples is 0"
                    if not comparison.get("samples")
                    else "the metric was undefined on every resample"
                )
                checks.append(_check(name, None, 0.0, False, f"no confidence interval for {metric} ({why})"))
            else:
                # The CI is of candidate - champion; for lower-is-better metrics "better" is below 0.
                bound = low if high_better else -high
                passed = bound > 0
                ci = f"95% CI [{_signed(low)}, {_signed(high)}]"
                side = "above" if high_better else "below"
                if passed:
                    reason = f"{metric} difference {ci} is entirely {side} 0: significantly better"
                else:
                    reason = (
                        f"{metric} difference {ci} is not entirely {side} 0: "
                        "not significantly better than champion"
                    )
                checks.append(_check(name, bound, 0.0, passed, reason))
    return checks


def _baseline_check(spec: ModelSpec, evaluation: Mapping[str, Any], metric: str, high_better: bool) -> list:
    limit = spec.evaluation.gate.min_margin_over_baseline
    if limit is None:
        return []
    name = f"{metric} margin over baseline"
    cand = evaluation["models"]["candidate"]["metrics"].get(metric)
    base = evaluation["models"]["baseline"]["metrics"].get(metric)
    if cand is None:
        return [_check(name, None, limit, False, f"candidate {metric} is undefined on the holdout")]
    if base is None:
        return [
            _check(name, None, limit, True, f"baseline {metric} is undefined on the holdout; not compared")
        ]
    margin = -_drop(cand, base, high_better)
    passed = margin >= limit - _TOL
    sm, sl = _fmt_pair(margin, limit)
    if passed:
        reason = f"{metric} {_fmt(cand)} beats baseline {_fmt(base)} by {sm} ≥ {sl}"
    else:
        reason = f"{metric} {_fmt(cand)} beats baseline {_fmt(base)} by only {sm}, needs ≥ {sl}"
    return [_check(name, margin, limit, passed, reason)]


def _chance_check(evaluation: Mapping[str, Any], metric: str, high_better: bool) -> list[dict[str, Any]]:
    name = f"{metric} better than chance"
    cand = evaluation["models"]["candidate"]["metrics"].get(metric)
    chance = (evaluation.get("chance") or {}).get("candidate") or {}
    mean, sd = chance.get("mean"), chance.get("sd")
    if cand is None:
        return [
            _check(name, None, CHANCE_MIN_SIGMAS, False, f"candidate {metric} is undefined on the holdout")
        ]
    if mean is None or sd is None:
        return [
            _check(
                name,
                None,
                CHANCE_MIN_SIGMAS,
                False,
                f"the chance level of {metric} was not computed (undefined on every shuffle, or an "
                "evaluation report from an older version): evaluate again",
            )
        ]
    edge = -_drop(cand, mean, high_better)  # > 0: better than chance
    sigmas = edge / sd if sd > 0 else (math.inf if edge > _TOL else 0.0)
    passed = sigmas >= CHANCE_MIN_SIGMAS - _TOL
    level = f"{_fmt(mean)} ± {_fmt(sd)} with its scores shuffled over the holdout rows ({chance.get('valid')} shuffles)"
    better, worse = ("above", "below") if high_better else ("below", "above")
    how_far = "∞" if math.isinf(sigmas) else f"{abs(sigmas):.1f}"
    if passed:
        reason = f"{metric} {_fmt(cand)} is {how_far} sd {better} chance ({level})"
    else:
        where = f"only {how_far} sd {better}" if sigmas > 0 else f"{how_far} sd {worse}"
        reason = (
            f"{metric} {_fmt(cand)} is not better than chance: {level}; {where}, needs "
            f"≥ {CHANCE_MIN_SIGMAS:g} sd {better}; the candidate learned nothing usable (check the labels and "
            "features)"
        )
    return [_check(name, None if math.isinf(sigmas) else sigmas, CHANCE_MIN_SIGMAS, passed, reason)]


def _champion_consistency_check(
    evaluation: Mapping[str, Any], metric: str, high_better: bool
) -> list[dict[str, Any]]:
    """Is the champion about as good on this holdout as when it was evaluated? If not, the data moved."""
    champion = evaluation["models"].get("champion")
    name, limit = CHAMPION_CONSISTENT, CHAMPION_COLLAPSE_SHARE
    if champion is None:
        return [_check(name, None, limit, True, FIRST_MODEL_REASON)]
    who = f"champion v{champion.get('version')}" if champion.get("version") else "the champion"
    now = champion["metrics"].get(metric)
    recorded = (champion.get("recorded_metrics") or {}).get(metric)
    if recorded is None:
        return [_check(name, None, limit, True, f"{who} has no recorded holdout {metric}; not compared")]
    if now is None:
        return [
            _check(
                name,
                None,
                limit,
                False,
                f"{who} scored {_fmt(recorded)} {metric} when it was evaluated but its {metric} is "
                "undefined on this holdout: the data changed or broke; the candidate is not promoted",
            )
        ]
    # No skill on this holdout: the better of the naive baseline and the champion's own chance level.
    levels = [
        v
        for v in (
            evaluation["models"]["baseline"]["metrics"].get(metric),
            ((evaluation.get("chance") or {}).get("champion") or {}).get("mean"),
        )
        if v is not None
    ]
    if not levels:
        return [
            _check(name, None, limit, True, f"no no-skill level of {metric} on this holdout; not compared")
        ]
    no_skill = max(levels) if high_better else min(levels)
    edge_recorded = -_drop(recorded, no_skill, high_better)
    edge_now = -_drop(now, no_skill, high_better)
    if edge_recorded <= _TOL:
        return [
            _check(
                name,
                None,
                limit,
                True,
                f"{who}'s recorded {metric} {_fmt(recorded)} is not above the no-skill level "
                f"{_fmt(no_skill)} of this holdout; not compared",
            )
        ]
    lost = (edge_recorded - edge_now) / edge_recorded
    passed = lost <= limit + _TOL
    facts = (
        f"{who} scored {_fmt(now)} {metric} on this holdout but {_fmt(recorded)} when it was evaluated "
        f"(no skill: {_fmt(no_skill)})"
    )
    if passed:
        reason = f"{facts}: {max(lost, 0.0):.0%} of its edge lost, within {limit:.0%}"
    else:
        reason = (
            f"{facts}: it lost {lost:.0%} of its edge over no skill, more than {limit:.0%}; the data changed or "
            "broke, so the candidate is not promoted (check this run's validation report, the labels and the "
            "data fingerprint against the champion's; retrain once the data is right)"
        )
    return [_check(name, lost, limit, passed, reason)]


def _slice_checks(
    spec: ModelSpec, evaluation: Mapping[str, Any], metric: str, high_better: bool
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[str]]:
    """Slice checks, the flagged slices (for the report) and notes about ungated slices."""
    rules = spec.evaluation.gate.slices
    slices = evaluation.get("slices") or []
    first = evaluation["models"].get("champion") is None
    checks: list[dict[str, Any]] = []
    flagged: list[dict[str, Any]] = []
    notes: list[str] = []
    if not slices or (rules.max_drop_vs_champion is None and rules.max_gap is None):
        return checks, flagged, notes

    gated = []
    for entry in slices:
        label = _slice_label(entry)
        if entry["rows"] < rules.min_rows:
            notes.append(f"slice {label} has {entry['rows']} rows (< {rules.min_rows}): reported, not gated")
        elif all(v is None for v in entry["metrics"].values()):
            notes.append(f"slice {label}: {metric} is undefined on its rows (e.g. one class only): not gated")
        else:
            gated.append(entry)

    if rules.max_drop_vs_champion is not None:
        limit = rules.max_drop_vs_champion
        if first:
            checks.append(_check("slices vs champion", None, limit, True, FIRST_MODEL_REASON))
        elif not gated:
            checks.append(
                _check(
                    "slices vs champion",
                    None,
                    limit,
                    True,
                    f"no slice has ≥ {rules.min_rows} rows; not gated",
                )
            )
        for entry in [] if first else gated:
            label = _slice_label(entry)
            name = f"slice {label} vs champion"
            cand, champ = entry["metrics"].get("candidate"), entry["metrics"].get("champion")
            if cand is None:
                reason = f"slice {label} candidate {metric} is undefined"
                checks.append(_check(name, None, limit, False, reason))
                flagged.append({"column": entry["column"], "value": entry["value"], "reason": reason})
                continue
            if champ is None:
                checks.append(
                    _check(
                        name, None, limit, True, f"slice {label} champion {metric} is undefined; not compared"
                    )
                )
                continue
            drop = _drop(cand, champ, high_better)
            passed = drop <= limit + _TOL
            sd, sl = _fmt_pair(drop, limit)
            if drop <= 0:
                reason = f"slice {label} {metric} {_fmt(cand)} vs champion {_fmt(champ)}: no drop"
            elif passed:
                reason = f"slice {label} {metric} dropped {sd} vs champion, within limit {sl}"
            else:
                reason = f"slice {label} {metric} dropped {sd} vs champion, limit {sl}"
                flagged.append({"column": entry["column"], "value": entry["value"], "reason": reason})
            checks.append(_check(name, drop, limit, passed, reason))

    if rules.max_gap is not None:
        limit = rules.max_gap
        for column in spec.segment_columns:
            name = f"slice gap {column}"
            scored = [(e, e["metrics"].get("candidate")) for e in gated if e["column"] == column]
            undefined = [e for e, v in scored if v is None]
            scored = [(e, v) for e, v in scored if v is not None]
            if len(scored) < 2:
                checks.append(
                    _check(
                        name,
                        None,
                        limit,
                        True,
                        f"{column}: fewer than 2 slices with ≥ {rules.min_rows} rows; not gated",
                    )
                )
                continue
            best = max(scored, key=lambda t: t[1] if high_better else -t[1])
            worst = min(scored, key=lambda t: t[1] if high_better else -t[1])
            gap = abs(best[1] - worst[1])
            passed = gap <= limit + _TOL and not undefined
            sg, sl = _fmt_pair(gap, limit)
            reason = (
                f"{column}: candidate {metric} gap {sg} between {_slice_label(best[0])} ({_fmt(best[1])}) "
                f"and {_slice_label(worst[0])} ({_fmt(worst[1])}), limit {sl}"
            )
            if undefined:
                reason += f"; undefined on {', '.join(_slice_label(e) for e in undefined)}"
            if not passed:
                flagged.append({"column": column, "value": worst[0]["value"], "reason": reason})
            checks.append(_check(name, gap, limit, passed, reason))
    return checks, flagged, notes


def _latency_check(spec: ModelSpec, evaluation: Mapping[str, Any]) -> list[dict[str, Any]]:
    limit = spec.evaluation.gate.max_latency_ratio_vs_champion
    if limit is None:
        return []
    name = "latency p95 vs champion"
    if evaluation["models"].get("champion") is None:
        return [_check(name, None, limit, True, FIRST_MODEL_REASON)]
    lat = evaluation.get("latency_ms") or {}
    cand, champ, ratio = lat.get("candidate_p95"), lat.get("champion_p95"), lat.get("ratio")
    if ratio is None:
        missing = [who for who, v in (("candidate", cand), ("champion", champ)) if v is None] or [
            "champion (0 ms)"
        ]
        return [
            _check(name, None, limit, True, f"latency not measured for {' and '.join(missing)}; not gated")
        ]
    passed = ratio <= limit + _TOL
    reason = (
        f"p95 latency {cand:.2f} ms is {ratio:.2f}× the champion's {champ:.2f} ms, "
        f"{'within limit' if passed else 'limit'} {limit:.2f}×"
    )
    return [_check(name, ratio, limit, passed, reason)]


def decide(spec: ModelSpec, evaluation: Mapping[str, Any]) -> dict[str, Any]:
    """The promotion gate: every rule of ``spec.evaluation.gate`` as a check on the report.

    Checks (each ``{"name", "value", "threshold", "passed", "reason"}``), in order: absolute
    thresholds per metric; the primary metric's absolute and relative drop vs the champion and,
    if required, a confidence interval of the difference entirely on the better side of 0;
    ``champion_consistent`` (the champion re-scored on this holdout kept more than half of its
    recorded edge over no skill, see ``CHAMPION_COLLAPSE_SHARE``; else the data changed or broke
    and the gate fails closed, leading the summary with why); the margin over the naive baseline;
    ``<metric> better than chance`` (always on: at least ``CHANCE_MIN_SIGMAS`` standard
    deviations better than the candidate's own scores shuffled over the rows); per slice (rows >= ``slices.min_rows``) the drop vs the
    champion; per segment column the gap between the candidate's best and worst slice; the p95
    latency ratio vs the champion when both were measured. Rules set to null are not checked.
    Without a champion the champion checks pass with the reason ``FIRST_MODEL_REASON``. An
    undefined candidate metric fails its check.

    Returns:
        ``{"passed", "first_model", "primary_metric", "candidate_version", "champion_version",
        "checks", "failed_checks", "flagged_slices", "notes", "operating_point", "summary"}``;
        binary: ``operating_point`` is the candidate's (its threshold, how it was chosen, holdout
        precision, recall and share flagged at it), also in the summary, and ``notes`` say how
        each model's threshold was set.
    """
    task = _task(spec)
    metric = evaluation.get("primary_metric") or spec.evaluation.primary_metric
    high_better = higher_is_better(task, metric)
    models = evaluation["models"]
    first = models.get("champion") is None

    checks = _threshold_checks(spec, models["candidate"]["metrics"], evaluation.get("decision_threshold"))
    checks += _champion_checks(spec, evaluation, metric, high_better)
    checks += _champion_consistency_check(evaluation, metric, high_better)
    checks += _baseline_check(spec, evaluation, metric, high_better)
    checks += _chance_check(evaluation, metric, high_better)
    slice_checks, flagged, notes = _slice_checks(spec, evaluation, metric, high_better)
    checks += slice_checks
    checks += _latency_check(spec, evaluation)

    failed = [c for c in checks if not c["passed"]]
    passed = not failed
    cand = models["candidate"]["metrics"].get(metric)
    if first:
        base = models["baseline"]["metrics"].get(metric)
        headline = f"first model, candidate {metric} {_fmt(cand)} (baseline {_fmt(base)})"
    else:
        champ = models["champion"]["metrics"].get(metric)
        comp = evaluation.get("comparison") or {}
        headline = f"candidate {metric} {_fmt(cand)} vs champion {_fmt(champ)}"
        if comp.get("diff") is not None:
            ci = ""
            if comp.get("ci_low") is not None:
                ci = f", 95% CI [{_signed(comp['ci_low'])}, {_signed(comp['ci_high'])}]"
            headline += f" ({_signed(comp['diff'])}{ci})"
    point = (evaluation.get("operating_point") or {}).get("candidate")
    notes = [*notes, *_operating_point_notes(evaluation)]
    if point:
        headline += f"; {_operating_point_text(point)}"
    if passed:
        summary = f"PASSED: {headline}; {len(checks)}/{len(checks)} checks passed"
    else:
        # A collapsed champion says the data is at fault, not the candidate: lead with it.
        failed_first = sorted(failed, key=lambda c: c["name"] != CHAMPION_CONSISTENT)
        lead = f"{failed_first[0]['reason']}; " if failed_first[0]["name"] == CHAMPION_CONSISTENT else ""
        summary = f"REJECTED: {lead}{headline}; {len(failed)} of {len(checks)} checks failed: " + "; ".join(
            c["reason"] for c in failed_first[1 if lead else 0 :]
        )
    return {
        "passed": passed,
        "first_model": first,
        "primary_metric": metric,
        "candidate_version": models["candidate"].get("version"),
        "champion_version": None if first else models["champion"].get("version"),
        "checks": checks,
        "failed_checks": [c["name"] for c in failed],
        "flagged_slices": flagged,
        "notes": notes,
        "operating_point": point,
        "summary": summary,
    }


def _operating_point_text(point: Mapping[str, Any]) -> str:
    """E.g. "at threshold 0.031 (target_recall 0.6): holdout precision 21.0%, recall 58.0%, 3.9% flagged"."""
    info = point.get("choice") or {}
    how = "fixed" if info.get("policy") in (None, "fixed") else f"{info['policy']} {info.get('target'):g}"

    def pct(x: Any) -> str:
        return "undefined" if x is None else f"{x:.1%}"

    return (
        f"at threshold {point.get('threshold'):.4g} ({how}): holdout precision "
        f"{pct(point.get('precision'))}, recall {pct(point.get('recall'))}, {pct(point.get('flagged_share'))} "
        "flagged"
    )


def _operating_point_notes(evaluation: Mapping[str, Any]) -> list[str]:
    """How each model's threshold was set; a target missed on the training slice is said plainly."""
    from include.modelops.decision_threshold import describe

    notes = []
    for role, point in (evaluation.get("operating_point") or {}).items():
        if not point:
            continue
        info = point.get("choice") or {}
        notes.append(
            f"{role} decision threshold {describe(info)}; on the holdout: "
            f"{_operating_point_text(point).split(': ', 1)[1]}"
        )
    return notes


# --------------------------------------------------------------------------------------
# HTML
# --------------------------------------------------------------------------------------

_CSS = """
body{font-family:-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:2rem auto;max-width:1100px;
color:#1f2328;padding:0 1rem;line-height:1.45}
h1{font-size:1.5rem;margin-bottom:.3rem}h2{font-size:1.15rem;margin-top:2rem;border-bottom:1px solid #d0d7de;
padding-bottom:.3rem}
.badge{display:inline-block;padding:.35rem .9rem;border-radius:6px;font-weight:700;color:#fff;
letter-spacing:.04em}
.badge.pass{background:#1a7f37}.badge.fail{background:#cf222e}
.summary{margin:.8rem 0;font-size:1.02rem}.muted{color:#656d76;font-size:.9rem}
table{border-collapse:collapse;width:100%;margin:.6rem 0;font-size:.92rem}
th,td{border:1px solid #d0d7de;padding:.35rem .6rem;text-align:left;vertical-align:top}
th{background:#f6f8fa}td.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
tr.pass td.status{color:#1a7f37;font-weight:700}tr.fail td{background:#ffebe9}
tr.fail td.status{color:#cf222e;font-weight:700}tr.flag td{background:#ffebe9}tr.small td{color:#656d76}
.better{color:#1a7f37}.worse{color:#cf222e}
ul.notes{font-size:.9rem;color:#656d76}
"""


def _h(x: Any) -> str:
    return html.escape("" if x is None else str(x))


def _num(x: Any, digits: int = 4) -> str:
    if x is None:
        return "—"
    if isinstance(x, bool) or not isinstance(x, (int, float)):
        return _h(x)
    return f"{x:.{digits}f}"


def _delta_cell(cand: float | None, other: float | None, high_better: bool) -> str:
    if cand is None or other is None:
        return '<td class="num">—</td>'
    d = cand - other
    cls = "" if abs(d) < 1e-12 else ("better" if (d > 0) == high_better else "worse")
    return f'<td class="num {cls}">{d:+.4f}</td>'


def _operating_point_html(evaluation: Mapping[str, Any]) -> list[str]:
    points = {k: v for k, v in (evaluation.get("operating_point") or {}).items() if v}
    if not points:
        return []
    from include.modelops.decision_threshold import describe

    out = [
        "<h2>Operating threshold (rows scored at or above it are labelled positive)</h2>"
        "<table><tr><th>model</th><th>threshold</th><th>precision</th><th>recall</th><th>share flagged</th>"
        "<th>flagged / positives</th><th>how the threshold was set</th></tr>"
    ]
    for role, p in points.items():
        out.append(
            f'<tr><td>{_h(role)}</td><td class="num">{_num(p.get("threshold"))}</td>'
            f'<td class="num">{_num(p.get("precision"))}</td><td class="num">{_num(p.get("recall"))}</td>'
            f'<td class="num">{_num(p.get("flagged_share"))}</td>'
            f'<td class="num">{_h(p.get("flagged"))} / {_h(p.get("positives"))}</td>'
            f"<td>{_h(describe(p.get('choice')))}</td></tr>"
        )
    out.append("</table>")
    return out


def render_html(evaluation: Mapping[str, Any], decision: Mapping[str, Any], *, title: str = "") -> str:
    """The evaluation report and gate decision as one self-contained HTML page (inline CSS)."""
    task = evaluation.get("task", "")
    primary = evaluation.get("primary_metric", "")
    models = evaluation.get("models", {})
    cand_m = models.get("candidate", {}).get("metrics", {})
    champ = models.get("champion")
    champ_m = champ["metrics"] if champ else {}
    base = models.get("baseline", {})
    base_m = base.get("metrics", {})
    title = title or f"Model evaluation: candidate {decision.get('candidate_version') or ''}".strip()
    passed = bool(decision.get("passed"))
    direction = "higher" if evaluation.get("higher_is_better", True) else "lower"
    facts = [
        f"task {task}",
        f"primary metric {primary} ({direction} is better)",
        f"{evaluation.get('rows')} holdout rows",
    ]
    if evaluation.get("positives") is not None:
        facts.append(f"{evaluation['positives']} positives")
    if evaluation.get("decision_threshold") is not None:
        facts.append(f"decision threshold {evaluation['decision_threshold']}")
    facts.append(f"candidate version {decision.get('candidate_version') or '—'}")
    first = "none (first model)" if decision.get("first_model") else "—"
    facts.append(f"champion version {decision.get('champion_version') or first}")
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{_h(title)}</title><style>{_CSS}</style></head><body>",
        f"<h1>{_h(title)}</h1>",
        f'<span class="badge {"pass" if passed else "fail"}">{"PASSED" if passed else "REJECTED"}</span>',
        f'<p class="summary">{_h(decision.get("summary"))}</p>',
        f'<p class="muted">{_h(" · ".join(facts))}</p>',
    ]

    failed = decision.get("failed_checks") or []
    if failed:
        parts.append("<p><strong>Failed checks:</strong> " + ", ".join(_h(n) for n in failed) + "</p>")

    parts.append(
        "<h2>Gate checks</h2><table><tr><th>check</th><th>value</th><th>threshold</th>"
        "<th>result</th><th>reason</th></tr>"
    )
    for c in decision.get("checks", []):
        ok = c.get("passed")
        parts.append(
            f'<tr class="{"pass" if ok else "fail"}"><td>{_h(c.get("name"))}</td>'
            f'<td class="num">{_num(c.get("value"))}</td><td class="num">{_num(c.get("threshold"))}</td>'
            f'<td class="status">{"pass" if ok else "FAIL"}</td><td>{_h(c.get("reason"))}</td></tr>'
        )
    parts.append("</table>")
    if decision.get("notes"):
        parts.append('<ul class="notes">' + "".join(f"<li>{_h(n)}</li>" for n in decision["notes"]) + "</ul>")

    parts.append(
        "<h2>Metrics</h2><table><tr><th>metric</th><th>candidate</th><th>champion</th>"
        "<th>Δ vs champion</th><th>baseline</th><th>Δ vs baseline</th></tr>"
    )
    for metric, value in cand_m.items():
        hb = METRICS.get(task, {}).get(metric, True)
        label = f"<strong>{_h(metric)}</strong>" if metric == primary else _h(metric)
        arrow = "↑" if hb else "↓"
        parts.append(
            f'<tr><td>{label} {arrow}</td><td class="num">{_num(value)}</td>'
            f'<td class="num">{_num(champ_m.get(metric)) if champ else "—"}</td>'
            f"{_delta_cell(value, champ_m.get(metric), hb)}"
            f'<td class="num">{_num(base_m.get(metric))}</td>'
            f"{_delta_cell(value, base_m.get(metric), hb)}</tr>"
        )
    parts.append("</table>")
    parts.append(f'<p class="muted">{_h(base.get("description"))}</p>')
    parts += _operating_point_html(evaluation)

    comp = evaluation.get("comparison")
    if comp:
        ci = (
            f"95% CI [{_num(comp.get('ci_low'))}, {_num(comp.get('ci_high'))}]"
            if comp.get("ci_low") is not None
            else "no confidence interval"
        )
        prob = comp.get("prob_candidate_better")
        parts.append(
            f"<h2>Candidate vs champion ({_h(comp.get('metric'))})</h2>"
            f"<p>Difference (candidate − champion): <strong>{_num(comp.get('diff'))}</strong>, {ci}; "
            f"paired bootstrap of {_h(comp.get('valid_samples'))} resamples"
            + (f" ({_h(comp.get('skipped'))} skipped: metric undefined)" if comp.get("skipped") else "")
            + (f"; candidate better in {prob:.0%} of resamples" if prob is not None else "")
            + ".</p>"
        )
    elif not champ:
        parts.append(f"<h2>Candidate vs champion</h2><p>{_h(FIRST_MODEL_REASON)}.</p>")

    slices = evaluation.get("slices") or []
    if slices:
        flagged = {(f["column"], f["value"]) for f in decision.get("flagged_slices", [])}
        failed_names = set(failed)
        names = list(slices[0]["metrics"].keys())
        has_pos = any("positives" in s for s in slices)
        parts.append(
            f"<h2>Slices ({_h(primary)})</h2><table><tr><th>slice</th><th>rows</th>"
            + ("<th>positives</th>" if has_pos else "")
            + "".join(f"<th>{_h(n)}</th>" for n in names)
            + ("<th>Δ vs champion</th>" if "champion" in names else "")
            + "</tr>"
        )
        hb = bool(evaluation.get("higher_is_better", True))
        for s in slices:
            label = _slice_label(s)
            is_flagged = (s["column"], s["value"]) in flagged or f"slice {label} vs champion" in failed_names
            ungated = any(note.startswith(f"slice {label} ") for note in decision.get("notes", []))
            cls = "flag" if is_flagged else ("small" if ungated else "")
            mark = " ⚑" if is_flagged else (" (not gated)" if ungated else "")
            parts.append(
                f'<tr class="{cls}"><td>{_h(label)}{mark}</td>'
                f'<td class="num">{s["rows"]}</td>'
                + (f'<td class="num">{_h(s.get("positives", "—"))}</td>' if has_pos else "")
                + "".join(f'<td class="num">{_num(s["metrics"].get(n))}</td>' for n in names)
                + (
                    _delta_cell(s["metrics"].get("candidate"), s["metrics"].get("champion"), hb)
                    if "champion" in names
                    else ""
                )
                + "</tr>"
            )
        parts.append("</table>")

    lat = evaluation.get("latency_ms")
    parts.append("<h2>Latency (single-row predict, p95)</h2>")
    if lat:
        parts.append(
            f"<p>candidate {_num(lat.get('candidate_p95'), 2)} ms · "
            f"champion {_num(lat.get('champion_p95'), 2)} ms"
            + (f" · ratio {lat['ratio']:.2f}×" if lat.get("ratio") is not None else "")
            + "</p>"
        )
    else:
        parts.append('<p class="muted">not measured</p>')
    parts.append("</body></html>")
    return "\n".join(parts)
