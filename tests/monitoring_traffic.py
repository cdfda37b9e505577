"""Inference-log windows for monitoring tests, written through the real log store in the
serving contract's schema (``predictions`` and ``labels`` records)."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

import numpy as np
import pandas as pd
import pyarrow as pa

from include.modelops.serving import label_feed, log_store

CATEGORIES = [
    "grocery",
    "fuel",
    "electronics",
    "travel",
    "restaurants",
    "online_retail",
    "gaming",
    "cash_advance",
]


def fraud_rows(n: int, seed: int, *, drift: bool = False) -> pd.DataFrame:
    """Rows shaped like the fraud_detection spec's features (and its target); ``drift`` shifts
    amount, distance, card age and the channel mix (one segment: online cards abroad)."""
    rng = np.random.default_rng(seed)
    df = pd.DataFrame(
        {
            "amount": rng.lognormal(np.log(60), 0.8, n) * (3.0 if drift else 1.0),
            "merchant_category": rng.choice(CATEGORIES, n),
            "channel": rng.choice(
                ["pos", "online", "atm"], n, p=[0.2, 0.75, 0.05] if drift else [0.6, 0.3, 0.1]
            ),
            "region": rng.choice(["north", "south", "east", "west", "central"], n),
            "hour_of_day": rng.integers(0, 24, n),
            "distance_from_home_km": rng.gamma(1.5, 400 if drift else 20, n),
            "card_age_days": rng.integers(0, 300 if drift else 3000, n),
            "txn_count_24h": rng.poisson(3, n),
            "customer_age": rng.integers(18, 90, n),
            "is_international": rng.random(n) < (0.4 if drift else 0.05),
        }
    )
    df["is_fraud"] = (rng.random(n) < 0.03).astype("int64")
    return df


def write_predictions(
    model: str,
    rows: pd.DataFrame,
    at: datetime,
    *,
    version: str = "1",
    scores: np.ndarray | None = None,
    variant: str = "stable",
    batch: int = 500,
) -> list[tuple[str, int]]:
    """Log ``rows`` as answered requests of ``batch`` rows at ``at``; returns (request_id, row_index) keys."""
    scores = np.random.default_rng(7).random(len(rows)) if scores is None else scores
    keys = []
    for lo in range(0, len(rows), batch):
        part = rows.iloc[lo : lo + batch]
        rid = uuid.uuid4().hex
        n = len(part)
        cols = {
            "request_id": pa.array([rid] * n, pa.string()),
            "row_index": pa.array(range(n), pa.int32()),
            "timestamp": pa.array([at] * n, pa.timestamp("us", tz="UTC")),
            "model": pa.array([model] * n, pa.string()),
            "model_version": pa.array([version] * n, pa.string()),
            "variant": pa.array([variant] * n, pa.string()),
            "entity_id": pa.array([None] * n, pa.string()),
            "latency_ms": pa.array([4.2] * n, pa.float64()),
            "score": pa.array(scores[lo : lo + batch], pa.float64()),
            "label": pa.array((scores[lo : lo + batch] >= 0.5).astype("int64"), pa.int64()),
        }
        for c in part.columns:
            if c != "is_fraud":
                cols[f"feature.{c}"] = pa.array(part[c].tolist())
        log_store.write_batch("predictions", model, pa.table(cols), at=at)
        keys += [(rid, i) for i in range(n)]
    return keys


def write_labels(model: str, keys: list[tuple[str, int]], labels: np.ndarray, at: datetime) -> None:
    """The delayed ground truth of logged rows, an hour after ``at``, through the label feed."""
    label_feed.write_labels(
        model,
        [(k[0], k[1], int(v)) for k, v in zip(keys, labels, strict=True)],
        labelled_at=at + timedelta(hours=1),
    )


def log_scored_traffic(
    model: str,
    version: str,
    at: datetime,
    *,
    drift: str = "",
    rows: int = 2000,
    seed: int = 0,
    labels: bool = True,
) -> None:
    """Score the model's latest holdout rows with ``version`` (as its bento does; ``drift`` knobs as
    ``make traffic`` takes them) and log them at ``at`` in the inference log, their labels an hour later."""
    import numpy as np
    import pyarrow as pa

    from include.modelops import scoring
    from include.modelops.serving import inference_log, label_feed, log_store, traffic
    from include.modelops.serving.contract import predictions_from_scores
    from include.modelops.spec import load_spec_by_name

    spec = load_spec_by_name(model)
    frame, _ = traffic.load_rows(spec, "holdout")
    rng = np.random.default_rng(seed)
    frame = frame.sample(n=rows, replace=len(frame) < rows, random_state=seed).reset_index(drop=True)
    frame = traffic.apply_drift(spec, frame, traffic.parse_drift(drift, spec), rng)
    scorer = scoring.load_pyfunc(f"models:/{model}/{version}")
    preds = predictions_from_scores(spec, scoring.score(spec, scorer, frame))
    truth = []
    for lo in range(0, rows, 200):
        rid = uuid.uuid4().hex
        part = frame.iloc[lo : lo + 200]
        cols = inference_log.request_records(
            spec,
            request_id=rid,
            model_version=version,
            variant="stable",
            rows=part[spec.feature_names].to_dict("records"),
            predictions=preds[lo : lo + 200],
            latency_ms=5.0,
            answered_at=at + timedelta(seconds=lo),
        )
        log_store.write_batch(
            "predictions", model, pa.table(cols, schema=inference_log.record_schema(spec)), at=at
        )
        truth += [(rid, i, int(y)) for i, y in enumerate(part[spec.target.name])]
    if labels:
        label_feed.write_labels(model, truth, labelled_at=at + timedelta(hours=1))
