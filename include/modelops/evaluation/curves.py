"""The curves a reviewer reads next to the metrics: ROC, precision-recall, calibration, predicted vs actual.

Computed once at evaluation from the holdout scores (each curve thinned to at most ``POINTS``
points, so the report stays small) and stored in the evaluation report; the HTML report draws them
(``platform/reports.py``'s inline SVG charts, no scripts, no internet). Unweighted: they show the
rows as scored, whatever the spec's sample weights.
"""

from __future__ import annotations

from typing import Any

import numpy as np

POINTS = 101  # most points kept of one curve
CALIBRATION_BINS = 10
SCATTER_ROWS = 400  # regression: rows drawn in the predicted-vs-actual chart


def _thin(xs: np.ndarray, ys: np.ndarray, points: int = POINTS) -> list[list[float]]:
    idx = np.unique(np.linspace(0, len(xs) - 1, min(points, len(xs))).round().astype(int))
    return [[round(float(xs[i]), 4), round(float(ys[i]), 4)] for i in idx]


def roc(y01: np.ndarray, scores: np.ndarray) -> list[list[float]]:
    """``[[fpr, tpr], ...]`` from (0, 0) to (1, 1), one point per distinct score (thinned)."""
    order = np.argsort(-scores, kind="mergesort")
    s, y = scores[order], y01[order].astype(float)
    last = np.r_[np.flatnonzero(np.diff(s)), len(s) - 1]  # the last row of each distinct score
    tp, fp = np.cumsum(y)[last], np.cumsum(1 - y)[last]
    pos, neg = max(tp[-1], 1.0), max(fp[-1], 1.0)
    return _thin(np.r_[0.0, fp / neg], np.r_[0.0, tp / pos])


def precision_recall(y01: np.ndarray, scores: np.ndarray) -> list[list[float]]:
    """``[[recall, precision], ...]`` from the highest score down (thinned)."""
    order = np.argsort(-scores, kind="mergesort")
    s, y = scores[order], y01[order].astype(float)
    last = np.r_[np.flatnonzero(np.diff(s)), len(s) - 1]
    tp = np.cumsum(y)[last]
    flagged = last + 1.0
    return _thin(tp / max(tp[-1], 1.0), tp / flagged)


def calibration(y01: np.ndarray, scores: np.ndarray, bins: int = CALIBRATION_BINS) -> list[list[float]]:
    """``[[mean score, share positive], ...]`` per score decile that holds rows (a reliability curve)."""
    edges = np.quantile(scores, np.linspace(0, 1, bins + 1))
    which = np.clip(np.searchsorted(edges, scores, side="right") - 1, 0, bins - 1)
    out = []
    for b in range(bins):
        mask = which == b
        if mask.any():
            out.append([round(float(scores[mask].mean()), 4), round(float(y01[mask].mean()), 4)])
    return out


def binary_curves(y01: np.ndarray, scores_by_model: dict[str, np.ndarray]) -> dict[str, Any]:
    return {
        "roc": {m: roc(y01, s) for m, s in scores_by_model.items()},
        "precision_recall": {m: precision_recall(y01, s) for m, s in scores_by_model.items()},
        "calibration": {m: calibration(y01, s) for m, s in scores_by_model.items() if m != "baseline"},
    }


def regression_curves(y: np.ndarray, predictions: dict[str, np.ndarray], seed: int = 0) -> dict[str, Any]:
    """Predicted vs actual on a sample of rows (the same rows for every model)."""
    rows = np.random.default_rng(seed).choice(len(y), size=min(SCATTER_ROWS, len(y)), replace=False)
    return {
        "predicted_vs_actual": {
            m: [[round(float(y[i]), 4), round(float(p[i]), 4)] for i in rows]
            for m, p in predictions.items()
            if m != "baseline"
        }
    }
