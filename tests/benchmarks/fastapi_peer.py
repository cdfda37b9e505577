"""The peer of the serving benchmark: the plain FastAPI + uvicorn app a user would write instead of a bento.

It loads the same MLflow model version (``scoring.load_pyfunc``) and does the same work per
request as the bento: rows validated against the spec's pydantic row model
(``contract.request_row_model``, 422 naming the field on a bad row), the model frame built by
``rows_to_frame``, scores by ``to_scores``, response rows by ``predictions_from_scores``,
one OpenMP/BLAS thread per scoring thread (without it a 100-row request cost it 75 ms of CPU).

    MODELOPS_PEER_MODEL_URI=models:/fraud_detection/1 MODELOPS_PEER_MODEL=fraud_detection \\
        uvicorn tests.benchmarks.fastapi_peer:app --host 127.0.0.1 --port 8000
"""

from __future__ import annotations

import os
import threading
import uuid
from typing import Any

from fastapi import FastAPI, Request, Response
from pydantic import BaseModel, Field
from threadpoolctl import threadpool_limits

from include.modelops.scoring import load_pyfunc, to_scores
from include.modelops.serving.contract import predictions_from_scores, request_row_model, rows_to_frame
from include.modelops.spec import load_spec_by_name

SPEC = load_spec_by_name(os.environ.get("MODELOPS_PEER_MODEL", "fraud_detection"))
Row = request_row_model(SPEC)
MODEL = load_pyfunc(os.environ["MODELOPS_PEER_MODEL_URI"])


class PredictRequest(BaseModel):
    rows: list[Row] = Field(min_length=1, max_length=10_000)  # type: ignore[valid-type]
    entity_ids: list[str] | None = None


app = FastAPI(title=f"{SPEC.name} (plain FastAPI)")


@app.get("/readyz")
def readyz() -> dict[str, str]:
    return {"status": "ok"}


_THREAD = threading.local()


@app.post("/predict")
def predict(body: PredictRequest, request: Request, response: Response) -> list[dict[str, Any]]:
    response.headers["X-Request-ID"] = request.headers.get("X-Request-ID") or str(uuid.uuid4())
    if not getattr(_THREAD, "limited", False):  # one OpenMP/BLAS thread per scoring thread, as the bento does
        threadpool_limits(1)
        _THREAD.limited = True
    scores = to_scores(SPEC, MODEL.predict(rows_to_frame(SPEC, body.rows)))
    return predictions_from_scores(SPEC, scores)
