"""Names of the evaluation metrics per task type and which direction is better.

Kept free of heavy imports: the spec schema uses it at DAG parse time. The metric
functions themselves live in ``include.modelops.evaluation``.
"""

from __future__ import annotations

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
