"""Where serving records live: the inference log and the label feed, as Parquet files
partitioned by model and hour, under one location (``MODELOPS_INFERENCE_LOG_URL``).

Layout (a local folder by default, any fsspec URL at scale, e.g. ``s3://bucket/modelops``
with ``s3fs`` installed and the usual AWS credentials in the environment)::

    <root>/<kind>/model=<model>/hour=YYYY-MM-DDTHH/part-<UTC stamp>-<uuid>.parquet

``kind`` is ``predictions`` (one row per scored row, written by the service) or ``labels``
(the delayed ground truth, keyed by ``request_id`` and ``row_index``). A file appears
whole or not at all (written under a temporary name, then renamed), and readers skip and
count a file they cannot read instead of failing: one torn write never hides a window.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from include.modelops.settings import get_settings

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa

log = logging.getLogger(__name__)

KINDS = ("predictions", "labels")
HOUR_FORMAT = "%Y-%m-%dT%H"


@dataclass
class ReadStats:
    """What a read found: files read, files skipped as unreadable (with the reason)."""

    files: int = 0
    skipped: list[str] = field(default_factory=list)


def _fs(root: str | None = None) -> tuple[Any, str]:
    from fsspec.core import url_to_fs

    return url_to_fs(root or get_settings().inference_log_url)


def _check_kind(kind: str) -> None:
    if kind not in KINDS:
        raise ValueError(f"unknown record kind {kind!r}; use one of {KINDS}")


def hour_of(ts: datetime) -> str:
    """The partition name of the hour that holds ``ts`` (UTC)."""
    if ts.tzinfo is None:
        ts = ts.replace(tzinfo=UTC)
    return ts.astimezone(UTC).strftime(HOUR_FORMAT)


def partition_dir(kind: str, model: str, hour: str, root: str | None = None) -> str:
    """The folder (or object prefix) of one model's records for one hour."""
    _check_kind(kind)
    fs, base = _fs(root)
    return fs.sep.join([base.rstrip(fs.sep), kind, f"model={model}", f"hour={hour}"])


def write_batch(
    kind: str, model: str, table: pa.Table, *, at: datetime | None = None, root: str | None = None
) -> str:
    """Write one batch of records as a new Parquet file in the hour of ``at`` (default: now).

    Returns the file's path or URL. Never overwrites: every batch gets a new name.
    """
    import pyarrow.parquet as pq

    fs, _ = _fs(root)
    at = at or datetime.now(UTC)
    folder = partition_dir(kind, model, hour_of(at), root)
    fs.makedirs(folder, exist_ok=True)
    name = f"part-{at.astimezone(UTC).strftime('%Y%m%dT%H%M%S%f')}-{uuid.uuid4().hex[:12]}.parquet"
    final = f"{folder}{fs.sep}{name}"
    tmp = f"{folder}{fs.sep}.{name}.tmp"
    with fs.open(tmp, "wb") as fh:
        pq.write_table(table, fh)
    fs.mv(tmp, final)
    return final


def _hours(start: datetime | None, end: datetime | None, available: Iterable[str]) -> list[str]:
    lo = hour_of(start) if start else None
    hi = hour_of(end - timedelta(microseconds=1)) if end else None
    return sorted(h for h in available if (lo is None or h >= lo) and (hi is None or h <= hi))


def read_records(
    kind: str,
    model: str,
    *,
    start: datetime | None = None,
    end: datetime | None = None,
    root: str | None = None,
    stats: ReadStats | None = None,
    empty_schema: pa.Schema | None = None,
) -> pd.DataFrame:
    """Records of one kind for ``model`` in the hours that overlap ``[start, end)``.

    Row-level filtering on the exact time is the caller's (each kind has its own time
    column). Unreadable files are skipped with a warning and listed in ``stats.skipped``.
    When no file is read (nothing logged yet, or the first seconds of a new hour before the
    first flush), the frame is empty with ``empty_schema``'s columns, so callers can still
    select them; without one it has no columns.
    """
    import pandas as pd
    import pyarrow as pa
    import pyarrow.parquet as pq

    stats = stats if stats is not None else ReadStats()
    fs, _ = _fs(root)
    model_dir = partition_dir(kind, model, "x", root).rsplit(fs.sep, 1)[0]
    empty = empty_schema.empty_table().to_pandas() if empty_schema is not None else pd.DataFrame()
    if not fs.exists(model_dir):
        return empty
    available = {
        p.rstrip(fs.sep).rsplit(fs.sep, 1)[-1].removeprefix("hour="): p
        for p in fs.ls(model_dir, detail=False)
        if p.rstrip(fs.sep).rsplit(fs.sep, 1)[-1].startswith("hour=")
    }
    tables = []
    for hour in _hours(start, end, available):
        for path in sorted(fs.ls(available[hour], detail=False)):
            if not path.endswith(".parquet") or path.rsplit(fs.sep, 1)[-1].startswith("."):
                continue
            try:
                with fs.open(path, "rb") as fh:
                    tables.append(pq.read_table(fh))
                stats.files += 1
            except Exception as exc:  # a torn or corrupt file must never hide the rest of the window
                log.warning("Skipping unreadable %s file %s: %s", kind, path, exc)
                stats.skipped.append(f"{path}: {exc}")
    if not tables:
        return empty
    return pa.concat_tables(tables, promote_options="permissive").to_pandas()
