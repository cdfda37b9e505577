"""The BentoML service that serves one packaged model version (any model spec).

It is generic: ``include.modelops.packaging.build_bento`` copies this file into a build
context next to ``bento_model.json`` (the BentoML model tag, the MLflow version and the
model's whole spec). The request schema is built from the spec's features, so a bad
request gets HTTP 400 naming the field before the model sees it. The model is the MLflow
pyfunc model, loaded with BentoML's MLflow integration; its output is mapped to scores
with the same ``scoring.to_scores`` that offline evaluation uses.

Endpoints: ``POST /predict`` and ``POST /model_info`` (below); ``/readyz``, ``/livez``
and Prometheus ``/metrics`` come from BentoML.

Not for running from this folder: ``bento_model.json`` exists only in a build context.
"""

import json
from pathlib import Path
from typing import Any

import bentoml
from pydantic import Field

from include.modelops.packaging import (
    BENTO_MODEL_FILE,
    example_row,
    predictions_from_scores,
    request_row_model,
    rows_to_frame,
)
from include.modelops.scoring import to_scores
from include.modelops.spec import ModelSpec

_BENTO_MODEL_PATH = Path(__file__).with_name(BENTO_MODEL_FILE)
if not _BENTO_MODEL_PATH.exists():
    raise RuntimeError(
        f"{_BENTO_MODEL_PATH} not found: this service is built per model version by "
        "include.modelops.packaging.build_bento, which writes it into the build context."
    )
BENTO_MODEL: dict[str, Any] = json.loads(_BENTO_MODEL_PATH.read_text())
SPEC = ModelSpec.model_validate(BENTO_MODEL["spec"])

# One request row, typed from the spec (see packaging.request_row_model).
Row = request_row_model(SPEC)

# A valid request, shown in the OpenAPI docs; smoke tests may post it as is.
EXAMPLE_INPUT: list[dict[str, Any]] = [example_row(SPEC)]


@bentoml.service(
    name=f"{SPEC.name}_service",
    labels={"model": SPEC.name, "model_version": BENTO_MODEL["model_version"]},
    workers=1,
    traffic={"timeout": 60},
)
class ModelService:
    """Scores rows of features with one MLflow model version."""

    bento_model = bentoml.models.BentoModel(BENTO_MODEL["bentoml_model_tag"])

    def __init__(self) -> None:
        self.model = bentoml.mlflow.load_model(self.bento_model)

    @bentoml.api
    def predict(
        self,
        rows: list[Row] = Field(  # type: ignore[valid-type]
            min_length=1,
            max_length=10_000,
            description="Rows of features; every field is checked against the model spec.",
            examples=[EXAMPLE_INPUT],
        ),
    ) -> list[dict[str, Any]]:
        """Score rows: binary ``{"score", "label"}``, regression ``{"prediction"}``."""
        scores = to_scores(SPEC, self.model.predict(rows_to_frame(SPEC, rows)))
        return predictions_from_scores(SPEC, scores)

    @bentoml.api
    def model_info(self) -> dict[str, Any]:
        """Which model version this service serves, and the spec it was built from."""
        return {
            "model_name": BENTO_MODEL["model_name"],
            "model_version": BENTO_MODEL["model_version"],
            "bentoml_model_tag": BENTO_MODEL["bentoml_model_tag"],
            "mlflow_model_uri": BENTO_MODEL.get("mlflow_model_uri"),
            "spec_hash": BENTO_MODEL.get("spec_hash"),
            "task": SPEC.task.value,
            "features": SPEC.feature_names,
            "decision_threshold": SPEC.evaluation.decision_threshold,
        }
