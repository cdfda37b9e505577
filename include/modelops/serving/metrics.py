"""The service's own Prometheus metrics, next to BentoML's on ``/metrics``.

Every series is labelled ``model``, ``version`` and ``variant`` (stable, canary, shadow,
smoke), so a rollout analysis can compare a canary with the stable service and
monitoring can follow one version. The metrics are created on first use, inside the
worker: BentoML sets ``PROMETHEUS_MULTIPROC_DIR`` in the worker before the service is
instantiated, and ``prometheus_client`` must be imported after that to write the
multi-process files that ``/metrics`` aggregates across workers.

| metric | type | extra labels | what |
| --- | --- | --- | --- |
| ``modelops_predictions_total`` | counter | | rows scored |
| ``modelops_requests_total`` | counter | ``status`` | ``/predict`` requests answered, by HTTP status |
| ``modelops_request_rejections_total`` | counter | ``status``, ``reason`` | 4xx answers by reason (``REJECTION_REASONS``) |
| ``modelops_request_errors_total`` | counter | | 5xx answers |
| ``modelops_request_latency_seconds`` | histogram | | latency of answered (200) ``/predict`` requests |
| ``modelops_prediction_score`` | histogram | | binary: P(positive) per row; regression: the prediction; multiclass: the top class's probability |
| ``modelops_inference_log_rows_total`` | counter | | rows written to the inference log |
| ``modelops_inference_log_dropped_rows_total`` | counter | | rows not logged (queue full or a failed write) |
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Any

LABELS = ("model", "version", "variant")
LATENCY_BUCKETS = (
    0.001,
    0.0025,
    0.005,
    0.0075,
    0.01,
    0.015,
    0.025,
    0.05,
    0.075,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
)
PROBABILITY_BUCKETS = tuple(round(0.05 * i, 2) for i in range(1, 20)) + (1.0,)
# The reasons a /predict request is rejected with a 4xx (the ``reason`` label).
REJECTION_REASONS = (
    "invalid_json",
    "wrong_content_type",
    "body_too_large",
    "bad_request_id",
    "missing_field",
    "unknown_field",
    "wrong_type",
    "not_finite",
    "out_of_range",
    "unknown_category",
    "too_few_rows",
    "too_many_rows",
    "entity_ids_mismatch",
    "invalid_value",
    "method_not_allowed",
    "not_found",
    "other",
)


@dataclass(frozen=True)
class ServiceMetrics:
    """The metric children of one served model version and variant."""

    predictions: Any
    requests: Any
    rejections: Any
    errors: Any
    latency: Any
    score: Any
    log_rows: Any
    log_dropped: Any
    labels: tuple[str, str, str]

    def answered(self, status: int, seconds: float | None, reason: str | None = None) -> None:
        """Count one ``/predict`` answer (and its latency when it was a 200)."""
        self.requests.labels(*self.labels, str(status)).inc()
        if status >= 500:
            self.errors.inc()
        elif status >= 400:
            self.rejections.labels(*self.labels, str(status), reason or "other").inc()
        elif seconds is not None:
            self.latency.observe(seconds)


@lru_cache(maxsize=None)
def _families() -> dict[str, Any]:
    from prometheus_client import Counter, Histogram

    return {
        "predictions": Counter("modelops_predictions", "Rows scored by the service.", LABELS),
        "requests": Counter(
            "modelops_requests", "Requests to /predict answered, by HTTP status.", (*LABELS, "status")
        ),
        "rejections": Counter(
            "modelops_request_rejections",
            "Requests to /predict answered with a 4xx, by reason.",
            (*LABELS, "status", "reason"),
        ),
        "errors": Counter("modelops_request_errors", "Requests to /predict answered with a 5xx.", LABELS),
        "latency": Histogram(
            "modelops_request_latency_seconds",
            "Latency of answered /predict requests.",
            LABELS,
            buckets=LATENCY_BUCKETS,
        ),
        "log_rows": Counter("modelops_inference_log_rows", "Rows written to the inference log.", LABELS),
        "log_dropped": Counter(
            "modelops_inference_log_dropped_rows",
            "Rows not written to the inference log (queue full or a failed write).",
            LABELS,
        ),
    }


@lru_cache(maxsize=None)
def _score_family(regression: bool) -> Any:
    from prometheus_client import Histogram

    if regression:
        buckets = (-1000.0, -100.0, -10.0, -1.0, 0.0, 1.0, 10.0, 100.0, 1000.0, 10_000.0, 100_000.0)
        return Histogram(
            "modelops_prediction_score", "Predicted value per row (regression).", LABELS, buckets=buckets
        )
    return Histogram(
        "modelops_prediction_score",
        "Score per row: P(positive) for binary, the top class's probability for multiclass.",
        LABELS,
        buckets=PROBABILITY_BUCKETS,
    )


def service_metrics(model: str, version: str, variant: str, *, regression: bool = False) -> ServiceMetrics:
    """The metrics of one served model version and variant (created once per process)."""
    f = _families()
    labels = (model, str(version), variant)
    return ServiceMetrics(
        predictions=f["predictions"].labels(*labels),
        requests=f["requests"],
        rejections=f["rejections"],
        errors=f["errors"].labels(*labels),
        latency=f["latency"].labels(*labels),
        score=_score_family(regression).labels(*labels),
        log_rows=f["log_rows"].labels(*labels),
        log_dropped=f["log_dropped"].labels(*labels),
        labels=labels,
    )
