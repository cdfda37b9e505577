"""The inference log: what the service scored, written in the background, read back as a frame.

The service hands each answered request to an :class:`InferenceLogWriter`; a background
thread turns queued requests into one Arrow table per hour and writes it with
``log_store.write_batch("predictions", ...)`` when enough rows are waiting or every
``flush_interval_s``. The queue is bounded: when it is full the request's rows are
dropped and counted (``dropped_rows`` and the ``on_drop`` callback, which the service
wires to a Prometheus counter), so a request never waits or fails because of logging.
:meth:`InferenceLogWriter.close` flushes what is queued (the service calls it on
shutdown, e.g. after SIGTERM).

What an answered request is guaranteed (the write-ahead spool): before :meth:`submit`
returns, and so before the service answers, the request's records are appended with one
``os.write`` to the worker's spool segment on local disk (``MODELOPS_INFERENCE_LOG_SPOOL``,
default ``<state>/inference_log_spool``; ``O_APPEND``, no fsync). Each batch the thread writes
to the log drains one segment, which is then deleted. A worker killed without a shutdown
(``kill -9``, the OOM killer, a crash) leaves its segment behind, and the next writer of the
same model and log to start on that machine (the restarted worker, or the next ``bentoml
serve``) writes those rows to the log and says so in its log (``recovered N rows``). So a row
whose request was answered is in the log, written late, unless the machine itself went down
before the page cache reached the disk, or the spool was on a disk the restarted process does
not see (on Kubernetes: a deleted pod's own filesystem). Rows are written at least once: a
worker killed between writing a batch and deleting its segment has them written again on
recovery. A spool record cut off by the kill (the request was not answered) is dropped and
counted. ``MODELOPS_INFERENCE_LOG_SPOOL=off`` turns the spool off: rows still queued when a
worker dies are then lost, and not counted.

:func:`read_window` returns one model's records in a time window as a DataFrame; files
it cannot read are skipped with a warning and counted in ``frame.attrs``.

The record schema (one row per scored row) is the contract shared with the traffic
generator and monitoring; see :func:`record_schema`.
"""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import glob
import hashlib
import logging
import os
import pickle
import struct
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from include.modelops.serving import log_store
from include.modelops.spec import FeatureType, ModelSpec, TaskType

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa

log = logging.getLogger(__name__)

KIND = "predictions"
FEATURE_PREFIX = "feature."
VARIANTS = ("stable", "canary", "shadow", "smoke")
_FRAME = struct.Struct(">II")  # a spool record: payload bytes, rows; then the pickled columns
_DEFAULT = object()


def record_schema(spec: ModelSpec) -> pa.Schema:
    """The Arrow schema of ``predictions`` records for a model's spec.

    ``request_id``, ``row_index`` (position in the request), ``timestamp`` (when the
    request was answered, UTC), ``model``, ``model_version``, ``variant``, ``entity_id``
    (null when the client sent none), ``latency_ms`` (the request's), the prediction
    columns (binary: ``score``, ``label``; regression: ``prediction``; multiclass:
    ``label`` and ``probabilities`` as a JSON object), then ``feature.<name>`` per feature.
    """
    import pyarrow as pa

    fields = _base_fields()
    if spec.task == TaskType.binary_classification:
        fields += [pa.field("score", pa.float64()), pa.field("label", pa.int64())]
    elif spec.task == TaskType.regression:
        fields += [pa.field("prediction", pa.float64())]
    else:
        fields += [pa.field("label", pa.string()), pa.field("probabilities", pa.string())]
    arrow_type = {
        FeatureType.numeric: pa.float64(),
        FeatureType.integer: pa.int64(),
        FeatureType.categorical: pa.string(),
        FeatureType.boolean: pa.bool_(),
    }
    fields += [pa.field(FEATURE_PREFIX + f.name, arrow_type[f.type]) for f in spec.features]
    return pa.schema(fields)


def _base_fields() -> list[pa.Field]:
    """The fields every model's records have, whatever its task and features."""
    import pyarrow as pa

    return [
        pa.field("request_id", pa.string(), nullable=False),
        pa.field("row_index", pa.int32(), nullable=False),
        pa.field("timestamp", pa.timestamp("us", tz="UTC"), nullable=False),
        pa.field("model", pa.string(), nullable=False),
        pa.field("model_version", pa.string(), nullable=False),
        pa.field("variant", pa.string(), nullable=False),
        pa.field("entity_id", pa.string()),
        pa.field("latency_ms", pa.float64()),
    ]


def request_records(
    spec: ModelSpec,
    *,
    request_id: str,
    model_version: str,
    variant: str,
    rows: Sequence[Mapping[str, Any]],
    predictions: Sequence[Mapping[str, Any]],
    latency_ms: float | None,
    entity_ids: Sequence[Any] | None = None,
    answered_at: datetime | None = None,
) -> dict[str, list[Any]]:
    """One request's log records as columns (the schema of :func:`record_schema`).

    ``rows`` are the validated request rows (plain dicts), ``predictions`` the response
    rows of ``contract.predictions_from_scores``.
    """
    import json

    n = len(rows)
    at = answered_at or datetime.now(UTC)
    columns: dict[str, list[Any]] = {
        "request_id": [request_id] * n,
        "row_index": list(range(n)),
        "timestamp": [at] * n,
        "model": [spec.name] * n,
        "model_version": [str(model_version)] * n,
        "variant": [variant] * n,
        "entity_id": [None if e is None else str(e) for e in entity_ids]
        if entity_ids is not None
        else [None] * n,
        "latency_ms": [None if latency_ms is None else float(latency_ms)] * n,
    }
    if spec.task == TaskType.binary_classification:
        columns["score"] = [p["score"] for p in predictions]
        columns["label"] = [p["label"] for p in predictions]
    elif spec.task == TaskType.regression:
        columns["prediction"] = [p["prediction"] for p in predictions]
    else:
        columns["label"] = [str(p["label"]) for p in predictions]
        columns["probabilities"] = [json.dumps(p["probabilities"]) for p in predictions]
    for name in spec.feature_names:
        columns[FEATURE_PREFIX + name] = [row.get(name) for row in rows]
    return columns


class InferenceLogWriter:
    """A bounded queue of log records and the thread that writes them in batches.

    Args:
        spec: The served model's spec (names the partition and fixes the schema).
        max_queue_rows: Rows that may wait to be written; a request that does not fit is
            dropped whole and counted.
        batch_rows: Write as soon as this many rows wait.
        flush_interval_s: Write what waits at least this often.
        root: The log's location; default the setting ``MODELOPS_INFERENCE_LOG_URL``.
        write_batch: The function that writes one table (``log_store.write_batch``'s
            signature); a parameter so a test can make the store slow or failing.
        on_drop: Called with the number of rows dropped (queue full or a failed write).
        on_write: Called with the number of rows written (recovered rows included).
        spool_dir: The write-ahead spool's folder on local disk (see the module docstring);
            default the setting ``MODELOPS_INFERENCE_LOG_SPOOL``; None: no spool.
    """

    def __init__(
        self,
        spec: ModelSpec,
        *,
        max_queue_rows: int = 100_000,
        batch_rows: int = 5_000,
        flush_interval_s: float = 1.0,
        root: str | None = None,
        write_batch: Callable[..., str] = log_store.write_batch,
        on_drop: Callable[[int], None] | None = None,
        on_write: Callable[[int], None] | None = None,
        spool_dir: Any = _DEFAULT,
    ) -> None:
        self.spec = spec
        self.schema = record_schema(spec)
        self.max_queue_rows = max_queue_rows
        self.batch_rows = batch_rows
        self.flush_interval_s = flush_interval_s
        self.root = root
        self._write_batch = write_batch
        self._on_drop = on_drop
        self._on_write = on_write
        self._queue: deque[dict[str, list[Any]]] = deque()
        self._queued_rows = 0
        self._cond = threading.Condition()
        self._closing = False
        self._writing = 0  # rows taken off the queue and not yet written
        self._flush_now = False
        self.written_rows = 0
        self.dropped_rows = 0
        # The last files written (a serving process writes about one a second: keep it bounded).
        self.files: deque[str] = deque(maxlen=1000)
        self.recovered_rows = 0
        self._recovering = True  # until the writer thread has written what dead workers left
        if spool_dir is _DEFAULT:
            from include.modelops.settings import get_settings

            spool_dir = get_settings().inference_log_spool
        self._spool: _Spool | None = None
        if spool_dir is not None:
            try:
                from include.modelops.settings import get_settings

                self._spool = _Spool(Path(spool_dir), spec.name, root or get_settings().inference_log_url)
            except OSError as exc:  # serve anyway: the log still works, only the crash guarantee is gone
                log.error(
                    "inference log: no write-ahead spool in %s (%s); rows queued when a worker dies are lost",
                    spool_dir,
                    exc,
                )
        self._thread = threading.Thread(target=self._run, name="inference-log-writer", daemon=True)
        self._thread.start()
        # Also flush when the interpreter exits without the service's shutdown hook running.
        atexit.register(self.close)

    # -- the request side: never blocks ---------------------------------------------------
    def submit(self, records: dict[str, list[Any]]) -> bool:
        """Queue one request's records; returns False (and counts the rows) when they were dropped."""
        n = len(records["request_id"])
        if n == 0:
            return True
        spool = self._spool
        frame = _frame(records, n) if spool is not None else b""
        with self._cond:
            if self._closing or self._queued_rows + n > self.max_queue_rows:
                accepted = False
            else:
                if spool is not None and spool is self._spool:
                    try:
                        spool.append(frame)  # on disk before the request is answered
                    except OSError as exc:  # e.g. a full disk: serve on, without the crash guarantee
                        self._spool_failed(exc)
                self._queue.append(records)
                self._queued_rows += n
                accepted = True
                if self._queued_rows >= self.batch_rows:
                    self._cond.notify()
        if not accepted:
            self._dropped(n)
        return accepted

    @property
    def queued_rows(self) -> int:
        return self._queued_rows

    # -- the writer thread ------------------------------------------------------------------
    def _dropped(self, n: int) -> None:
        with self._cond:
            self.dropped_rows += n
        if self._on_drop is not None:
            try:
                self._on_drop(n)
            except Exception:  # a metrics hiccup must not break serving
                log.exception("inference log: on_drop callback failed")

    def _take(self) -> tuple[list[dict[str, list[Any]]], _Segment | None]:
        batch = list(self._queue)
        self._queue.clear()
        self._writing = self._queued_rows
        self._queued_rows = 0
        # The batch is exactly what the current segment holds: a fresh one takes the next requests.
        segment = None
        if self._spool is not None and batch:
            try:
                segment = self._spool.rotate()
            except OSError as exc:
                segment = self._spool.current
                self._spool_failed(exc)
        return batch, segment

    def _spool_failed(self, exc: OSError) -> None:
        """Stop spooling (called with the lock held); the current segment stays for the next start."""
        log.error(
            "inference log: the write-ahead spool failed (%s); from now on rows queued when this worker "
            "dies are lost",
            exc,
        )
        self._spool = None

    def _run(self) -> None:
        if self._spool is not None:
            try:
                self._recover()
            except Exception:  # a recovery failure must not stop the log of this worker's own requests
                log.exception("inference log: could not recover the spool of a stopped worker")
        with self._cond:
            self._recovering = False
            self._cond.notify_all()
        while True:
            with self._cond:
                deadline = time.monotonic() + self.flush_interval_s
                while not (self._closing or self._flush_now) and self._queued_rows < self.batch_rows:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        break
                    self._cond.wait(remaining)
                batch, segment = self._take()
                self._flush_now = False
                closing = self._closing
            if batch:
                self._write(batch)
            if segment is not None:
                segment.discard()  # written (or dropped and counted): nothing to recover
            with self._cond:
                self._writing = 0
                self._cond.notify_all()
                if closing and not self._queue:
                    return

    def _write(self, batch: list[dict[str, list[Any]]]) -> None:
        import pyarrow as pa

        columns: dict[str, list[Any]] = {name: [] for name in self.schema.names}
        for records in batch:
            for name in columns:
                columns[name].extend(records.get(name) or [None] * len(records["request_id"]))
        rows = len(columns["request_id"])
        try:
            table = pa.Table.from_pydict(columns, schema=self.schema)
            # One file per hour of the rows' own timestamps, so a time-window read finds
            # every row in the partition of its hour (a batch may straddle an hour).
            # A request's rows share one timestamp: name each distinct one's hour once (formatting
            # every row's took three quarters of a batch's write time).
            hour_by_ts = {ts: log_store.hour_of(ts) for ts in set(columns["timestamp"])}
            distinct = sorted(set(hour_by_ts.values()))
            for hour in distinct:
                if len(distinct) > 1:
                    part = table.filter(pa.array([hour_by_ts[ts] == hour for ts in columns["timestamp"]]))
                else:
                    part = table
                at = part.column("timestamp")[0].as_py()
                self.files.append(self._write_batch(KIND, self.spec.name, part, at=at, root=self.root))
        except Exception:
            log.exception("inference log: could not write %d rows; they are dropped", rows)
            self._dropped(rows)
            return
        with self._cond:
            self.written_rows += rows
        if self._on_write is not None:
            try:
                self._on_write(rows)
            except Exception:
                log.exception("inference log: on_write callback failed")

    def _recover(self) -> None:
        """Write what dead workers left in the spool (see the module docstring), one segment at a time."""
        assert self._spool is not None
        for path in self._spool.orphans():
            claimed = _Segment.claim(path)
            if claimed is None:  # its writer is alive, or another writer took it first
                continue
            records, torn_rows = claimed.read()
            rows = sum(len(r["request_id"]) for r in records)
            if records:
                self._write(records)
                self.recovered_rows += rows
            if torn_rows:
                self._dropped(torn_rows)
            claimed.discard()
            log.warning(
                "inference log: recovered %d rows of %d requests that a worker answered and did not "
                "write before it stopped (%s)%s",
                rows,
                len(records),
                path,
                f"; {torn_rows} rows of a record cut off mid-write are dropped" if torn_rows else "",
            )

    # -- shutdown ---------------------------------------------------------------------------
    def flush(self, timeout_s: float = 30.0) -> bool:
        """Write everything queued (and what the spool of a dead worker held) now and wait for it.

        Returns False on timeout.
        """
        deadline = time.monotonic() + timeout_s
        with self._cond:
            while (self._queued_rows or self._writing or self._recovering) and self._thread.is_alive():
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._flush_now = True
                self._cond.notify_all()
                self._cond.wait(min(remaining, 0.05))
        return True

    def close(self, timeout_s: float = 30.0) -> None:
        """Stop accepting records, write what is queued, stop the thread (idempotent)."""
        with self._cond:
            if self._closing and not self._thread.is_alive():
                return
            self._closing = True
            self._cond.notify_all()
        self._thread.join(timeout_s)
        if self._thread.is_alive():
            log.error(
                "inference log: writer did not finish within %.0f s; %d rows are left %s",
                timeout_s,
                self._queued_rows,
                "in the spool for the next start to write"
                if self._spool is not None
                else "unwritten and may be lost",
            )
        else:
            if self._spool is not None:
                self._spool.close()  # every row was written: its segment is empty
            log.info(
                "inference log: closed; %d rows written, %d dropped", self.written_rows, self.dropped_rows
            )
        atexit.unregister(self.close)


def _frame(records: dict[str, list[Any]], rows: int) -> bytes:
    payload = pickle.dumps(records, protocol=pickle.HIGHEST_PROTOCOL)
    return _FRAME.pack(len(payload), rows) + payload


class _Segment:
    """One spool file, locked (``flock``) by the process that writes or drains it."""

    def __init__(self, path: Path, fd: int) -> None:
        self.path, self.fd = path, fd

    @classmethod
    def create(cls, folder: Path) -> _Segment:
        # Locked under a temporary name, then renamed: a recovering writer never sees it unlocked.
        tmp = folder / f".new-{uuid.uuid4().hex}"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND, 0o600)
        fcntl.flock(fd, fcntl.LOCK_EX)
        path = folder / f"seg-{os.getpid()}-{uuid.uuid4().hex[:12]}.spool"
        os.rename(tmp, path)
        return cls(path, fd)

    @classmethod
    def claim(cls, path: str) -> _Segment | None:
        """The segment, locked, when its writer is gone; None while a live process holds it."""
        try:
            fd = os.open(path, os.O_RDONLY)
        except FileNotFoundError:
            return None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            if os.fstat(fd).st_nlink == 0:  # drained and deleted while we waited
                raise BlockingIOError
        except BlockingIOError:
            os.close(fd)
            return None
        return cls(Path(path), fd)

    def append(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            view = view[os.write(self.fd, view) :]

    def read(self) -> tuple[list[dict[str, list[Any]]], int]:
        """The records in the file, and the rows of a last record cut off mid-write (0: none)."""
        data = Path(self.path).read_bytes()
        records, at = [], 0
        while at + _FRAME.size <= len(data):
            size, rows = _FRAME.unpack_from(data, at)
            if at + _FRAME.size + size > len(data):
                return records, rows
            records.append(pickle.loads(data[at + _FRAME.size : at + _FRAME.size + size]))
            at += _FRAME.size + size
        return records, 0

    def discard(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)
        os.close(self.fd)


class _Spool:
    """A writer's write-ahead spool: ``<spool>/<model>/<log key>/seg-<pid>-<id>.spool``.

    The folder is per model and per log destination, so a recovered row goes to the log its
    worker wrote to. It is the owner's only (0700); the records are pickled (only this user's
    processes can put a file there).
    """

    def __init__(self, base: Path, model: str, root: str) -> None:
        key = hashlib.sha256(str(root).encode()).hexdigest()[:16]
        self.folder = base / model / key
        self.folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        for folder in (base, base / model, self.folder):
            os.chmod(folder, 0o700)
        self.current = _Segment.create(self.folder)
        self.mine = {self.current.path}

    def append(self, frame: bytes) -> None:
        self.current.append(frame)

    def rotate(self) -> _Segment:
        old, self.current = self.current, _Segment.create(self.folder)
        self.mine = {self.current.path}
        return old

    def orphans(self) -> list[str]:
        return sorted(p for p in glob.glob(str(self.folder / "seg-*.spool")) if Path(p) not in self.mine)

    def close(self) -> None:
        self.current.discard()


def read_window(
    model: str,
    version: str | None = None,
    start: datetime | None = None,
    end: datetime | None = None,
    variant: str | None = None,
    *,
    root: str | None = None,
) -> pd.DataFrame:
    """The inference log of ``model`` answered in ``[start, end)``, as a DataFrame.

    Optionally only one model version and one variant. Rows are ordered by time, then
    request and row index. A window with nothing logged (yet) is an empty frame that still
    has the columns every model's records have (``request_id`` ... ``latency_ms``). Files
    that cannot be read (a torn upload, garbage) are skipped with a warning;
    ``frame.attrs["skipped_files"]`` counts them and ``frame.attrs["skipped"]`` says which and
    why, ``frame.attrs["files"]`` counts those read.
    """
    import pandas as pd
    import pyarrow as pa

    stats = log_store.ReadStats()
    frame = log_store.read_records(
        KIND, model, start=start, end=end, root=root, stats=stats, empty_schema=pa.schema(_base_fields())
    )
    keep = pd.Series(True, index=frame.index)
    if start is not None:
        keep &= frame["timestamp"] >= pd.Timestamp(_utc(start))
    if end is not None:
        keep &= frame["timestamp"] < pd.Timestamp(_utc(end))
    if version is not None:
        keep &= frame["model_version"] == str(version)
    if variant is not None:
        keep &= frame["variant"] == variant
    frame = frame[keep].sort_values(["timestamp", "request_id", "row_index"]).reset_index(drop=True)
    frame.attrs.update(files=stats.files, skipped_files=len(stats.skipped), skipped=list(stats.skipped))
    return frame


def _utc(ts: datetime) -> datetime:
    return ts.replace(tzinfo=UTC) if ts.tzinfo is None else ts.astimezone(UTC)
