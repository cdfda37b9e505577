"""The task's metrics, the naive baseline, the paired bootstrap, chance, slices and latency.

* :func:`compute_metrics` – the task's metrics (names from ``metrics_catalog.METRICS``);
  a metric that is undefined on the rows (e.g. ROC AUC with one class) is ``None``.
* :func:`paired_bootstrap` – the candidate-minus-champion difference of one metric with
  a 95% confidence interval, both models scored on the same resampled rows.
* :func:`slice_metrics` – the primary metric per value of each ``segment_columns`` column.

Every metric is written once, as a *weighted* function of the rows: a ``(B, n)`` matrix of
row weights gives ``B`` values at once. Plain metrics use one row of ones; the bootstrap
uses the resample counts of each row, so 200 resamples cost a few matrix operations
rather than 200 Python-level metric calls, and the point estimate and the bootstrap can
never disagree on what a metric means.
"""

from __future__ import annotations

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


def task_name(spec: ModelSpec) -> str:
    return spec.task.value


def _binary_classes(spec: ModelSpec) -> list[Any]:
    return list(spec.target.classes) if spec.target.classes is not None else [0, 1]


def encode_labels(spec: ModelSpec, y_true: Any, n_classes: int | None = None) -> np.ndarray:
    """Labels as numbers: binary -> 0/1 floats, multiclass -> class index, regression -> floats.

    Raises:
        ValueError: a label is missing or not one of ``target.classes``.
    """
    y = np.asarray(getattr(y_true, "values", y_true))
    y = y.reshape(-1)
    task = task_name(spec)
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


def as_scores(spec: ModelSpec, scores: Any, n_rows: int, who: str = "scores") -> np.ndarray:
    """Check ``scores`` against the scoring contract and the number of rows."""
    s = np.asarray(getattr(scores, "values", scores), dtype=float)
    task = task_name(spec)
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
    task = task_name(spec)
    if metric not in METRICS[task]:
        raise ValueError(f"metric {metric!r} is not known for {task}; use one of {sorted(METRICS[task])}")
    if threshold is None:
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


def round_metric(x: Any, digits: int = _DECIMALS) -> float | None:
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
    task = task_name(spec)
    n = len(np.asarray(getattr(y_true, "values", y_true)).reshape(-1))
    s = as_scores(spec, scores, n)
    y = encode_labels(spec, y_true, n_classes=s.shape[1] if s.ndim == 2 else None)
    return {metric: _point_metric(spec, metric, y, s, threshold) for metric in METRICS[task]}


def baseline_scores(spec: ModelSpec, y_train: Any, n_rows: int) -> np.ndarray:
    """Scores of the naive baseline (see ``BASELINE_DESCRIPTION``) for ``n_rows`` rows.

    Binary: the training prevalence of the positive class; multiclass: the training class
    frequencies (columns in ``target.classes`` order); regression: the training mean.

    Raises:
        ValueError: ``y_train`` is empty or has labels outside ``target.classes``.
    """
    task = task_name(spec)
    n_classes = len(spec.target.classes) if spec.target.classes is not None else None
    y = encode_labels(spec, y_train, n_classes=n_classes)
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
    better_high = higher_is_better(task_name(spec), metric)
    n = len(np.asarray(getattr(y_true, "values", y_true)).reshape(-1))
    cand = as_scores(spec, candidate, n, "candidate")
    champ = as_scores(spec, champion, n, "champion")
    y = encode_labels(spec, y_true, n_classes=cand.shape[1] if cand.ndim == 2 else None)
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
    result["diff"] = round_metric(cand_fn(ones)[0] - champ_fn(ones)[0])
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
        result["ci_low"], result["ci_high"] = round_metric(low), round_metric(high)
        wins = (valid > 0) if better_high else (valid < 0)
        result["prob_candidate_better"] = round_metric(
            (wins.sum() + 0.5 * (valid == 0).sum()) / len(valid), 4
        )
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
    s = as_scores(spec, scores, n)
    y = encode_labels(spec, y_true, n_classes=s.shape[1] if s.ndim == 2 else None)
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

    result["value"] = round_metric(score(y))
    rng = np.random.default_rng(seed)
    values = np.array([score(y[rng.permutation(n)]) for _ in range(int(permutations))])
    values = values[np.isfinite(values)]
    result["valid"] = len(values)
    if len(values):
        result["mean"] = round_metric(values.mean())
        result["sd"] = round_metric(values.std(ddof=1) if len(values) > 1 else 0.0)
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
    task = task_name(spec)
    metric = spec.evaluation.primary_metric
    n = len(df)
    arrays = {name: as_scores(spec, s, n, name) for name, s in scores.items()}
    n_classes = next((a.shape[1] for a in arrays.values() if a.ndim == 2), None)
    y = encode_labels(spec, y_true, n_classes=n_classes)
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
                name: round_metric(
                    _point_metric(spec, metric, y[mask], a[mask], (thresholds or {}).get(name))
                )
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


def latency_summary(latency: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """Accepts ``{"candidate": profile, "champion": profile}`` or ``{"candidate_p95", "champion_p95"}``."""
    if not latency:
        return None
    cand = _p95(latency["candidate"]) if "candidate" in latency else _to_float(latency.get("candidate_p95"))
    champ = _p95(latency["champion"]) if "champion" in latency else _to_float(latency.get("champion_p95"))
    ratio = cand / champ if cand is not None and champ is not None and champ > 0 else None
    return {
        "candidate_p95": round_metric(cand, 4),
        "champion_p95": round_metric(champ, 4),
        "ratio": round_metric(ratio, 4),
    }


def spec_threshold(spec: ModelSpec) -> dict[str, Any]:
    """The threshold the spec fixes (``policy: fixed``), or, for a target policy, the 0.5 a model
    without a recorded threshold (trained before threshold policies) was always served with."""
    t = spec.evaluation.threshold
    value = t.value if t.policy == "fixed" and t.value is not None else 0.5
    return {
        "value": round_metric(value),
        "policy": "fixed",
        "target": None,
        "target_met": None,
        "slice": None,
        "source": "spec" if t.policy == "fixed" else "default (no threshold recorded on the version)",
    }
