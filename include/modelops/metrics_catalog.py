"""Names of the evaluation metrics per task type and which direction is better.

Kept free of heavy imports: the spec schema uses it at DAG parse time. The metric
functions themselves live in ``include.modelops.evaluation.metrics``.
"""

from __future__ import annotations

import math

METRICS: dict[str, dict[str, bool]] = {
    # metric -> higher_is_better
    "binary_classification": {
        "roc_auc": True,
        "pr_auc": True,
        "f1": True,
        "precision": True,
        "recall": True,
        "brier": False,
        "calibration_error": False,
    },
    "multiclass_classification": {"macro_f1": True, "accuracy": True, "log_loss": False},
    "regression": {"rmse": False, "mae": False, "r2": True},
}


def metric_names_for(task: str) -> set[str]:
    """Metric names available for a task type."""
    return set(METRICS[task])


def describe_metrics(task: str) -> str:
    """The task's metric names for a message, e.g. "accuracy, log_loss (lower is better), macro_f1"."""
    return ", ".join(m if up else f"{m} (lower is better)" for m, up in sorted(METRICS[task].items()))


def higher_is_better(task: str, metric: str) -> bool:
    """Whether a larger value of ``metric`` is better."""
    return METRICS[task][metric]


# The values each metric can take: (lowest, highest); None = unbounded on that side.
NATURAL_RANGE: dict[str, tuple[float | None, float | None]] = {
    "roc_auc": (0.0, 1.0),
    "pr_auc": (0.0, 1.0),
    "f1": (0.0, 1.0),
    "precision": (0.0, 1.0),
    "recall": (0.0, 1.0),
    "brier": (0.0, 1.0),
    "calibration_error": (0.0, 1.0),
    "macro_f1": (0.0, 1.0),
    "accuracy": (0.0, 1.0),
    "log_loss": (0.0, None),
    "rmse": (0.0, None),
    "mae": (0.0, None),
    "r2": (None, 1.0),
}


def natural_range(metric: str) -> tuple[float | None, float | None]:
    """The lowest and highest value ``metric`` can take (None: unbounded on that side)."""
    return NATURAL_RANGE[metric]


def chance_level(metric: str, n_classes: int | None = None) -> float | None:
    """What a model that learned nothing scores on ``metric``, when the spec alone tells it.

    roc_auc 0.5 (any constant or random score); brier 0.25 (a constant 0.5); r2 0 (the mean);
    with ``n_classes`` known: accuracy and macro_f1 1/k (uniform guesses), log_loss ln(k)
    (uniform probabilities). None where it depends on the data (pr_auc, f1, precision, recall
    follow the prevalence; rmse and mae the target's spread; calibration_error is 0 for a
    constant prevalence score): the gate's chance check measures those on the holdout.
    """
    fixed = {"roc_auc": 0.5, "brier": 0.25, "r2": 0.0}
    if metric in fixed:
        return fixed[metric]
    if n_classes and n_classes >= 2:
        if metric in ("accuracy", "macro_f1"):
            return 1.0 / n_classes
        if metric == "log_loss":
            return math.log(n_classes)
    return None
