"""The label feed: delayed ground truth for served predictions, and its join with the inference log.

A label record says what the true target of one scored row turned out to be, keyed like the
inference log's ``predictions`` records by (``request_id``, ``row_index``)::

    request_id (string), row_index (int32), model (string),
    label (int64, float64 or string: the target's type in the data), labelled_at (timestamp[us, UTC])

Labels are written by whoever learns the truth (here, the traffic generator, after a delay) with
``write_labels``, stored through ``log_store`` next to the predictions, and read back with
``read_labels``. ``join_labels`` pairs each prediction with its label::

    preds = log_store.read_records("predictions", "fraud_detection")
    labels = read_labels("fraud_detection")
    joined = join_labels(preds, labels)      # prediction columns + true_label, labelled_at
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from include.modelops.serving import log_store

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa

KEY = ["request_id", "row_index"]


def label_type(values: Sequence[Any]) -> pa.DataType:
    """The Arrow type of a target's values: int64 for integers and booleans, float64, else string."""
    import numpy as np
    import pyarrow as pa

    present = [v for v in values if v is not None]
    if present and all(isinstance(v, bool | np.bool_ | int | np.integer) for v in present):
        return pa.int64()
    if present and all(
        isinstance(v, bool | np.bool_ | int | np.integer | float | np.floating) for v in present
    ):
        return pa.float64()
    return pa.string()


def labels_table(
    model: str,
    records: Sequence[tuple[str, int, Any]],
    *,
    labelled_at: datetime | None = None,
    dtype: pa.DataType | None = None,
) -> pa.Table:
    """Label records ``(request_id, row_index, label)`` as a table with the feed's schema."""
    import pyarrow as pa

    labelled_at = labelled_at or datetime.now(UTC)
    labels = [r[2] for r in records]
    dtype = dtype or label_type(labels)
    if pa.types.is_string(dtype):
        labels = [None if v is None else str(v) for v in labels]
    elif pa.types.is_integer(dtype):
        labels = [None if v is None else int(v) for v in labels]
    else:
        labels = [None if v is None else float(v) for v in labels]
    n = len(records)
    return pa.table(
        {
            "request_id": [r[0] for r in records],
            "row_index": [r[1] for r in records],
            "model": [model] * n,
            "label": labels,
            "labelled_at": [labelled_at] * n,
        },
        schema=label_schema(dtype),
    )


def label_schema(dtype: pa.DataType | None = None) -> pa.Schema:
    """The feed's schema (see the module docstring); ``dtype`` is the label's type (string when unknown)."""
    import pyarrow as pa

    return pa.schema(
        [
            pa.field("request_id", pa.string()),
            pa.field("row_index", pa.int32()),
            pa.field("model", pa.string()),
            pa.field("label", dtype or pa.string()),
            pa.field("labelled_at", pa.timestamp("us", tz="UTC")),
        ]
    )


def write_labels(
    model: str,
    records: Sequence[tuple[str, int, Any]],
    *,
    labelled_at: datetime | None = None,
    dtype: pa.DataType | None = None,
    root: str | None = None,
) -> str | None:
    """Write label records ``(request_id, row_index, label)`` as one file of the feed; None when empty."""
    if not records:
        return None
    labelled_at = labelled_at or datetime.now(UTC)
    table = labels_table(model, records, labelled_at=labelled_at, dtype=dtype)
    return log_store.write_batch("labels", model, table, at=labelled_at, root=root)


def read_labels(
    model: str,
    start: datetime | None = None,
    end: datetime | None = None,
    *,
    root: str | None = None,
    stats: log_store.ReadStats | None = None,
) -> pd.DataFrame:
    """Labels of ``model`` whose ``labelled_at`` lies in ``[start, end)`` (either bound optional).

    Always has the feed's columns, even when empty. Unreadable files are skipped and counted
    in ``stats`` (see ``log_store.read_records``).
    """
    frame = log_store.read_records(
        "labels", model, start=start, end=end, root=root, stats=stats, empty_schema=label_schema()
    )
    if start is not None:
        frame = frame[frame["labelled_at"] >= _utc(start)]
    if end is not None:
        frame = frame[frame["labelled_at"] < _utc(end)]
    return frame.sort_values(["labelled_at", *KEY], kind="stable").reset_index(drop=True)


def _utc(ts: datetime) -> pd.Timestamp:
    import pandas as pd

    t = pd.Timestamp(ts)
    return t.tz_localize("UTC") if t.tzinfo is None else t.tz_convert("UTC")


def join_labels(predictions: pd.DataFrame, labels: pd.DataFrame, *, how: str = "inner") -> pd.DataFrame:
    """Each prediction with its true label, joined on (``request_id``, ``row_index``).

    The result has the prediction columns plus ``true_label`` and ``labelled_at``. ``how`` is
    pandas' merge mode: ``inner`` (default: labelled predictions only) or ``left`` (every
    prediction; ``true_label`` is missing where no label arrived yet). A label sent twice for
    the same row counts once (the latest).
    """
    import pandas as pd

    if how not in ("inner", "left"):
        raise ValueError(f"how must be 'inner' or 'left', not {how!r}")
    if predictions.empty:
        return predictions.assign(true_label=pd.Series(dtype="object"), labelled_at=pd.Series(dtype="object"))
    missing = [c for c in KEY if c not in predictions.columns]
    if missing:
        raise ValueError(f"predictions have no {missing} column(s); expected inference-log records")
    truth = (
        labels[[*KEY, "label", "labelled_at"]]
        if not labels.empty
        else pd.DataFrame(
            {
                "request_id": pd.Series(dtype="object"),
                "row_index": pd.Series(dtype="int32"),
                "label": pd.Series(dtype="object"),
                "labelled_at": pd.Series(dtype="datetime64[us, UTC]"),
            }
        )
    )
    truth = (
        truth.sort_values("labelled_at", kind="stable")
        .drop_duplicates(KEY, keep="last")
        .rename(columns={"label": "true_label"})
    )
    left = predictions.astype({"row_index": "int64"})
    truth = truth.astype({"row_index": "int64"})
    return left.merge(truth, on=KEY, how=how, validate="many_to_one")
