"""The BentoML service that serves one packaged model version (any model spec).

It is generic: ``include.modelops.serving.bento.build_bento`` copies this file into a build
context next to ``bento_model.json`` (the BentoML model tag, the MLflow version and the
model's whole spec). The request schema is built from the spec's features, so a bad
request gets HTTP 400 naming the field before the model sees it. The model is the MLflow
pyfunc model, loaded with BentoML's MLflow integration; its output is mapped to scores
with the same ``scoring.to_scores`` that offline evaluation uses.

Every scored row is written to the inference log (``include.modelops.serving.inference_log``:
a background writer, so a request never waits for it) with the request's ``X-Request-ID``
and the variant (``shadow`` for a copy a rollout's shadow stage replays with ``X-ModelOps-Shadow``),
and counted in Prometheus metrics (``include.modelops.serving.metrics``) labelled by model,
version and variant. ``RequestGuard`` (``include.modelops.serving.request_guard``) sits in
front of ``/predict``: request ids, body and content-type limits, one 4xx format.

Environment: ``MODELOPS_SERVE_VARIANT`` (``stable``), ``MODELOPS_INFERENCE_LOG`` (``on``),
``MODELOPS_INFERENCE_LOG_URL`` (``<state>/inference_log``); see ``include/modelops/settings.py``.

Endpoints: ``POST /predict`` and ``POST /model_info`` (below); ``/readyz``, ``/livez``
and Prometheus ``/metrics`` come from BentoML.

Not for running from this folder: ``bento_model.json`` exists only in a build context.
"""

import functools
import json
import logging
import numbers
import threading
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import bentoml
from pydantic import BeforeValidator, Field, ValidationError
from pydantic_core import PydanticCustomError

from include.modelops.scoring import conform_to_model, to_scores
from include.modelops.serving.bento import BENTO_MODEL_FILE
from include.modelops.serving.contract import (
    MAX_ROWS,
    REQUEST_ID_HEADER,
    SHADOW_HEADER,
    example_row,
    predictions_from_scores,
    request_row_model,
    rows_to_frame,
    served_threshold,
)
from include.modelops.serving.request_guard import STARTED_AT_KEY, RequestGuard, is_shadow
from include.modelops.settings import get_settings, shadow_token
from include.modelops.spec import ModelSpec, TaskType

if TYPE_CHECKING:
    import numpy as np

# A request waiting longer than this for its batch is answered 503 (overloaded) by the batcher.
MAX_BATCH_WAIT_MS = 2_000

_BENTO_MODEL_PATH = Path(__file__).with_name(BENTO_MODEL_FILE)
if not _BENTO_MODEL_PATH.exists():
    raise RuntimeError(
        f"{_BENTO_MODEL_PATH} not found: this service is built per model version by "
        "include.modelops.serving.bento.build_bento, which writes it into the build context."
    )
BENTO_MODEL: dict[str, Any] = json.loads(_BENTO_MODEL_PATH.read_text())
SPEC = ModelSpec.model_validate(BENTO_MODEL["spec"])
MODEL_VERSION = str(BENTO_MODEL["model_version"])
# Binary: the version's own decision threshold (chosen when it was trained), not the spec's constant.
THRESHOLD = served_threshold(SPEC, BENTO_MODEL) if SPEC.task == TaskType.binary_classification else None

# One request row, typed from the spec (see serving.contract.request_row_model).
Row = request_row_model(SPEC)

# A valid request, shown in the OpenAPI docs; smoke tests may post it as is.
EXAMPLE_INPUT: list[dict[str, Any]] = [example_row(SPEC)]


def _entity_id(value: Any) -> Any:
    """An entity id: a JSON string, or a whole number (``7`` or ``7.0``, read as 7); never true/false."""
    if isinstance(value, str):
        return value
    if (
        isinstance(value, bool)
        or not isinstance(value, numbers.Real)
        or (isinstance(value, float) and not value.is_integer())
    ):
        raise PydanticCustomError("entity_id_type", "Input should be a string or a whole number")
    return int(value)


# The OpenAPI schema says what is accepted: {"anyOf": [{"type": "string"}, {"type": "integer"}]}.
EntityId = Annotated[str | int, BeforeValidator(_entity_id)]


def _no_default(schema: dict[str, Any]) -> None:
    schema.pop("default", None)  # "leave it out", not null: a null default would contradict "type": "array"


@functools.cache
def _metrics() -> Any:
    """This process's metrics; created on first use, after BentoML set up multi-process metrics.

    Cached: it is called for every request (``RequestGuard``), and reading the settings resolves paths.
    """
    from include.modelops.serving.metrics import service_metrics

    return service_metrics(
        SPEC.name, MODEL_VERSION, get_settings().serve_variant, regression=SPEC.task == TaskType.regression
    )


_THREAD = threading.local()

# Worker processes: one per CPU core by default (MODELOPS_SERVE_WORKERS), each scoring with one
# thread (see __init__), so workers do not fight over cores.
_SETTINGS = get_settings()


def _freeze_startup_heap() -> None:
    """Keep what the worker loaded at startup out of the garbage collector's full passes.

    The model, MLflow, pandas and BentoML leave a few hundred thousand objects that live as long
    as the worker. Each full collection walked them all and stopped the worker for 150-190 ms,
    with requests in flight: about once a minute at 20 requests/s, every 15-30 s at 100/s (the
    inference log's queued rows, which live up to a second, make them come sooner). Frozen
    (``gc.freeze``, CPython's tool for long-lived servers), a full pass walks only what was
    allocated since: 9-23 ms at 100/s (docs/benchmarks.md, "Serving").
    """
    import gc

    gc.collect()
    gc.freeze()


@bentoml.service(
    name=f"{SPEC.name}_service",
    labels={"model": SPEC.name, "model_version": MODEL_VERSION},
    workers=_SETTINGS.serve_workers,
    traffic={"timeout": 60},
)
class ModelService:
    """Scores rows of features with one MLflow model version, and logs what it scored."""

    bento_model = bentoml.models.BentoModel(BENTO_MODEL["bentoml_model_tag"])

    def __init__(self) -> None:
        from threadpoolctl import threadpool_limits

        from include.modelops.serving.inference_log import InferenceLogWriter

        # One BLAS/OpenMP thread per worker: a tabular model's predict is dominated by fixed
        # per-call overhead, and extra threads only contend with the other workers' cores.
        threadpool_limits(1)
        _library_logs_to_the_server_log()
        self.model = bentoml.mlflow.load_model(self.bento_model)
        settings = get_settings()
        self.max_batch_rows = settings.serve_max_batch_rows
        self._batcher = _batcher(self._score_rows, self.max_batch_rows)
        self.variant = settings.serve_variant
        try:  # only the rollout's replayer knows it; a client's X-ModelOps-Shadow is normal traffic
            self.shadow_token = shadow_token()
        except OSError:  # no writable state folder and no MODELOPS_SHADOW_TOKEN: nothing is shadow
            self.shadow_token = ""
        self.metrics = _metrics()
        self.log_writer = (
            InferenceLogWriter(SPEC, on_drop=self.metrics.log_dropped.inc, on_write=self.metrics.log_rows.inc)
            if settings.inference_log_enabled
            else None
        )
        _freeze_startup_heap()

    @bentoml.on_shutdown
    def close_inference_log(self) -> None:
        """Write what the inference log still holds (a clean shutdown, e.g. SIGTERM, loses nothing)."""
        if self.log_writer is not None:
            self.log_writer.close()

    def _score_rows(self, batches: "Sequence[list[dict[str, Any]]]") -> "list[np.ndarray]":
        """Score several requests' rows with one frame and one model call (the batcher's callback)."""
        if not getattr(_THREAD, "limited", False):
            # OpenMP's thread count is per calling thread: limit each scoring thread once, or
            # every predict starts (and spin-waits on) a team of one thread per core.
            from threadpoolctl import threadpool_limits

            threadpool_limits(1)
            _THREAD.limited = True
        records = batches[0] if len(batches) == 1 else [row for rows in batches for row in rows]
        scores = to_scores(
            SPEC, self.model.predict(conform_to_model(rows_to_frame(SPEC, records), self.model))
        )
        out, start = [], 0
        for rows in batches:
            out.append(scores[start : start + len(rows)])
            start += len(rows)
        return out

    async def _scores(self, records: list[dict[str, Any]]) -> "np.ndarray":
        if self._batcher is None or len(records) > self.max_batch_rows:
            from starlette.concurrency import run_in_threadpool

            return (await run_in_threadpool(self._score_rows, [records]))[0]
        return await self._batcher(records)

    @bentoml.api
    async def predict(
        self,
        ctx: bentoml.Context,
        rows: list[Row] = Field(  # type: ignore[valid-type]
            min_length=1,
            max_length=MAX_ROWS,
            description=f"Rows of features (1 to {MAX_ROWS}); every field is checked against the model spec.",
            examples=[EXAMPLE_INPUT],
        ),
        # Not ``| None``: BentoML publishes only the first branch of a top-level anyOf, so a null the
        # service took was documented as refused. Left out means no ids; an explicit null is a 400.
        entity_ids: list[EntityId] = Field(  # type: ignore[assignment]
            default=None,
            max_length=MAX_ROWS,
            description="Optional (leave it out for none): one id per row, a string or a whole number "
            "(e.g. the card or customer), logged with the row, never scored.",
            json_schema_extra=_no_default,
        ),
    ) -> list[dict[str, Any]]:
        """Score rows: binary ``{"score", "label"}``, regression ``{"prediction"}``,
        multiclass ``{"probabilities", "label"}``. The response carries ``X-Request-ID``."""
        if entity_ids is not None and len(entity_ids) != len(rows):
            raise ValidationError.from_exception_data(
                "predict input",
                [
                    {
                        "type": PydanticCustomError(
                            "entity_ids_mismatch",
                            "{ids} ids for {rows} rows; send one id per row",
                            {"ids": len(entity_ids), "rows": len(rows)},
                        ),
                        "loc": ("entity_ids",),
                        "input": None,
                    }
                ],
            )
        records = [row.model_dump() for row in rows]
        scores = await self._scores(records)
        predictions = predictions_from_scores(SPEC, scores, threshold=THRESHOLD)
        request = ctx.request
        self.metrics.predictions.inc(len(predictions))
        _observe_scores(self.metrics.score, scores)
        if self.log_writer is not None:
            from include.modelops.serving.inference_log import request_records

            started = request.scope.get(STARTED_AT_KEY)
            latency_ms = (time.perf_counter() - started) * 1000 if started else None
            self.log_writer.submit(
                request_records(
                    SPEC,
                    request_id=request.headers.get(REQUEST_ID_HEADER, ""),
                    model_version=MODEL_VERSION,
                    variant="shadow"
                    if is_shadow(request.headers.get(SHADOW_HEADER), self.shadow_token)
                    else self.variant,
                    rows=records,
                    predictions=predictions,
                    latency_ms=latency_ms,
                    entity_ids=entity_ids,
                    answered_at=datetime.now(UTC),
                )
            )
        return predictions

    @bentoml.api
    def model_info(self) -> dict[str, Any]:
        """Which model version this service serves, the spec it was built from, and (binary) the
        decision threshold it labels with and how that was chosen."""
        return {
            "model_name": BENTO_MODEL["model_name"],
            "model_version": MODEL_VERSION,
            "variant": self.variant,
            "bentoml_model_tag": BENTO_MODEL["bentoml_model_tag"],
            "mlflow_model_uri": BENTO_MODEL.get("mlflow_model_uri"),
            "spec_hash": BENTO_MODEL.get("spec_hash"),
            "task": SPEC.task.value,
            "features": SPEC.feature_names,
            "decision_threshold": THRESHOLD,
            "threshold": BENTO_MODEL.get("threshold"),
            "inference_log": get_settings().inference_log_url if self.log_writer is not None else None,
        }


def _library_logs_to_the_server_log() -> None:
    """Send ``include.modelops`` warnings and info (e.g. the inference log's recovered or dropped rows) to
    the handlers BentoML gives its own logger, so they appear in the server's output."""
    library = logging.getLogger("include.modelops")
    if not library.handlers:
        for handler in logging.getLogger("bentoml").handlers:
            library.addHandler(handler)
        library.setLevel(logging.INFO)
        library.propagate = False


def _batcher(score_rows: Any, max_batch_rows: int) -> Any:
    """Micro-batching across concurrent requests (``include.modelops.serving.batcher.GreedyBatcher``).

    A request is scored at once when no model call runs; requests arriving during a call go
    together in the next one, up to ``max_batch_rows`` rows. It runs inside the API (not as a
    batchable API of its own) so each request keeps its id, entity ids and log records. None (no
    batching) when ``max_batch_rows`` < 2.
    """
    if max_batch_rows < 2:
        return None
    from bentoml.exceptions import ServiceUnavailable

    from include.modelops.serving.batcher import GreedyBatcher

    return GreedyBatcher(
        score_rows,
        max_batch_rows,
        max_wait_s=MAX_BATCH_WAIT_MS / 1000,
        overloaded=lambda: (
            ServiceUnavailable(
                "the service is overloaded (requests waited too long for a batch); retry later"
            )
        ),
    )


def _observe_scores(histogram: Any, scores: Any) -> None:
    import numpy as np

    values = np.asarray(scores, dtype=float)
    if values.ndim == 2:  # multiclass: the top class's probability
        values = values.max(axis=1)
    for value in values.reshape(-1):
        histogram.observe(float(value))


ModelService.add_asgi_middleware(RequestGuard, metrics=_metrics, path="/predict")

# BentoML works out a list output's content type from its JSON schema, which pydantic rebuilds on
# every call (about 0.3 ms of each /predict answer): state it once.
ModelService.apis["predict"].output_spec.media_type = "application/json"
