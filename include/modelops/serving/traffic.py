"""A traffic generator for a serving endpoint, with optional drift and delayed ground truth.

``make traffic`` (``python -m include.modelops.cli traffic``) sends rows of a model's data to
``POST <url>/predict`` at a fixed rate until ``count`` requests are sent or ``duration_s`` has
passed, whichever comes first, and prints progress and a summary (sent, answered, 4xx, 5xx,
connection errors, latency percentiles, labels written). Each request carries its own
``X-Request-ID`` (a uuid4). For every answered request the rows' true labels are written to the
label feed (``label_feed.write_labels``) ``label_delay_s`` later, as delayed ground truth arrives
in real life, so that the inference log joined with the feed gives live model quality.

Rows come from (``source``):

* ``holdout``: the latest training run's holdout (``<runs>/<model>/*/holdout.parquet``);
* ``data``: the spec's ``data.path``;
* ``generated`` or ``generated:<variant>``: fresh transactions from
  ``dataset.generate_transactions`` (the bundled fraud example only; variants such as
  ``covariate_shift`` or ``concept_drift`` bring their own drift);
* a path to a Parquet/CSV file or folder with the feature and target columns.

Drift is injected with knobs (``parse_drift``)::

    scale=amount:3                      multiply a numeric feature (clipped to the spec's min/max)
    shift=merchant_category:gaming:0.5  move 50% of rows to one category of a categorical feature
    segment=region:north                only in rows where region == north

Labels stay those of the source rows: injected drift changes what the model sees, not the truth.

The client is one asyncio loop with aiohttp: requests are started on an open-loop schedule
(request ``i`` at ``t0 + i / rate``, independent of how fast answers come back, so a slow
service shows up as latency rather than as a lower rate), with at most ``max_in_flight``
outstanding; when that bound is reached the schedule falls behind and the summary says so.
A thread pool would need one thread per outstanding request to hold the same rate.
Traffic only goes to this machine (127.0.0.1, localhost, ::1).
"""

from __future__ import annotations

import asyncio
import heapq
import json
import logging
import math
import random
import shutil
import threading
import time
import uuid
from array import array
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

from include.modelops.settings import get_settings
from include.modelops.spec import FeatureType, ModelSpec

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

log = logging.getLogger(__name__)

LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")
MAX_RATE = 10_000.0  # requests per second
MAX_COUNT = 10_000_000
MAX_DURATION_S = 24 * 3600.0
MAX_ROWS_PER_REQUEST = 10_000  # the service's own limit
PENDING_POLICIES = ("wait", "write", "drop")


class TrafficError(ValueError):
    """The traffic cannot be sent as asked (bad knob, no rows, no service); the message says why."""


# --------------------------------------------------------------------------------------
# Drift injection
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Drift:
    """Knobs of injected drift: numeric scaling and categorical shifts, optionally in one segment."""

    scale: dict[str, float] = field(default_factory=dict)
    shift: dict[str, tuple[str, float]] = field(default_factory=dict)
    segment: tuple[str, str] | None = None

    def __bool__(self) -> bool:
        return bool(self.scale or self.shift)

    def describe(self) -> str:
        if not self:
            return "none"
        parts = [f"{name} x{factor:g}" for name, factor in self.scale.items()]
        parts += [f"{share:.0%} of {name} -> {category}" for name, (category, share) in self.shift.items()]
        where = f" where {self.segment[0]} == {self.segment[1]}" if self.segment else ""
        return ", ".join(parts) + where


def parse_drift(text: str | None, spec: ModelSpec) -> Drift:
    """Parse drift knobs (``scale=F:X``, ``shift=F:CATEGORY:SHARE``, ``segment=COLUMN:VALUE``).

    Knobs are separated by spaces, commas or semicolons; ``scale`` and ``shift`` may repeat.

    Raises:
        TrafficError: A knob is malformed or names a feature, type or category the spec lacks.
    """
    scale: dict[str, float] = {}
    shift: dict[str, tuple[str, float]] = {}
    segment: tuple[str, str] | None = None
    features = {f.name: f for f in spec.features}
    for token in (text or "").replace(",", " ").replace(";", " ").split():
        knob, _, value = token.partition("=")
        parts = value.split(":")
        if knob == "scale" and len(parts) == 2:
            name = parts[0]
            feature = features.get(name)
            if feature is None or feature.type not in (FeatureType.numeric, FeatureType.integer):
                numeric = [
                    f.name for f in spec.features if f.type in (FeatureType.numeric, FeatureType.integer)
                ]
                raise TrafficError(
                    f"drift {token!r}: {name!r} is not a numeric feature of {spec.name}; "
                    f"choose one of {numeric}"
                )
            try:
                factor = float(parts[1])
            except ValueError:
                factor = math.nan
            if not math.isfinite(factor) or factor < 0:
                raise TrafficError(f"drift {token!r}: the factor must be a number >= 0, e.g. scale={name}:2")
            scale[name] = factor
        elif knob == "shift" and len(parts) == 3:
            name, category = parts[0], parts[1]
            feature = features.get(name)
            if feature is None or feature.type != FeatureType.categorical:
                cats = [f.name for f in spec.features if f.type == FeatureType.categorical]
                raise TrafficError(
                    f"drift {token!r}: {name!r} is not a categorical feature of {spec.name}; "
                    f"choose one of {cats}"
                )
            if category not in [str(c) for c in feature.categories or ()]:
                raise TrafficError(
                    f"drift {token!r}: {category!r} is not a category of {name}; "
                    f"choose one of {list(feature.categories or ())}"
                )
            try:
                share = float(parts[2])
            except ValueError:
                share = math.nan
            if not 0 <= share <= 1:
                raise TrafficError(
                    f"drift {token!r}: the share must be between 0 and 1, e.g. shift={name}:{category}:0.5"
                )
            shift[name] = (category, share)
        elif knob == "segment" and len(parts) == 2 and parts[0] and parts[1]:
            if segment is not None:
                raise TrafficError(
                    f"drift {token!r}: only one segment may be given (already {segment[0]}:{segment[1]})"
                )
            segment = (parts[0], parts[1])
        else:
            raise TrafficError(
                f"drift knob {token!r} not understood; use scale=FEATURE:FACTOR, "
                "shift=FEATURE:CATEGORY:SHARE and segment=COLUMN:VALUE (e.g. "
                "'scale=amount:3 shift=merchant_category:gaming:0.5 segment=region:north')"
            )
    if segment is not None and not (scale or shift):
        raise TrafficError("drift: a segment alone changes nothing; add scale=... or shift=...")
    return Drift(scale=scale, shift=shift, segment=segment)


def apply_drift(spec: ModelSpec, frame: pd.DataFrame, drift: Drift, rng: np.random.Generator) -> pd.DataFrame:
    """A copy of ``frame`` with ``drift`` applied to the rows of its segment (all rows without one).

    Scaled values are clipped to the feature's ``min``/``max`` (integers rounded) and nulls
    stay null, so every drifted row is still a valid request.
    """
    import numpy as np

    out = frame.copy()
    if not drift:
        return out
    if drift.segment is not None:
        column, value = drift.segment
        if column not in out.columns:
            raise TrafficError(
                f"drift segment column {column!r} is not in the rows (columns: {list(out.columns)})"
            )
        mask = (out[column].astype(str) == value).to_numpy()
        if not mask.any():
            seen = sorted(out[column].astype(str).unique().tolist())[:20]
            raise TrafficError(f"drift segment {column}:{value} matches no row; values seen: {seen}")
    else:
        mask = np.ones(len(out), dtype=bool)
    features = {f.name: f for f in spec.features}
    for name, factor in drift.scale.items():
        feature = features[name]
        values = out[name].to_numpy(dtype=float, na_value=np.nan).copy()
        scaled = values[mask] * factor
        if feature.type == FeatureType.integer:
            scaled = np.round(scaled)
        low = -np.inf if feature.min is None else feature.min
        high = np.inf if feature.max is None else feature.max
        values[mask] = np.clip(scaled, low, high)  # NaN stays NaN
        if feature.type == FeatureType.integer and not np.isnan(values).any():
            out[name] = values.astype("int64")
        else:
            out[name] = values
    for name, (category, share) in drift.shift.items():
        picked = mask & (rng.random(len(out)) < share)
        column = out[name].astype(object)
        column[picked] = category
        out[name] = column
    return out


# --------------------------------------------------------------------------------------
# Where rows come from
# --------------------------------------------------------------------------------------


def latest_holdout(model: str) -> Path:
    """The holdout of the model's latest training run (newest ``holdout.parquet``)."""
    runs = get_settings().runs_dir / model
    found = sorted(runs.glob("*/holdout.parquet"), key=lambda p: p.stat().st_mtime)
    if not found:
        raise TrafficError(
            f"no holdout of {model} under {runs}: run `make demo` first, "
            f"or use SOURCE=data or SOURCE=generated"
        )
    return found[-1]


def load_rows(
    spec: ModelSpec, source: str = "holdout", *, rows: int = 10_000, seed: int = 0
) -> tuple[pd.DataFrame, str]:
    """The rows to send (features and target), and a description of where they came from.

    Args:
        spec: The model's spec.
        source: ``holdout``, ``data``, ``generated[:variant]`` or a path (see the module docstring).
        rows: How many rows to generate for ``generated``.
        seed: Seed of the generated rows.
    """
    from include.modelops.data.reading import read_dataset

    if source == "holdout":
        path = latest_holdout(spec.name)
        frame, what = read_dataset(path), f"holdout {path}"
    elif source == "data":
        path = spec.data.resolved_path()
        if not Path(path).exists():
            raise TrafficError(
                f"the data of {spec.name} is not at {path}: run `make data`, or use SOURCE=generated"
            )
        frame, what = read_dataset(path, spec.data.format), f"data {path}"
    elif source == "generated" or source.startswith("generated:"):
        from include.modelops.data.example import VARIANTS, generate_transactions

        variant = source.partition(":")[2] or "reference"
        if variant not in VARIANTS[:4]:
            raise TrafficError(f"unknown generated variant {variant!r}; choose one of {list(VARIANTS[:4])}")
        tmp = get_settings().state_dir / "tmp" / f"traffic-{uuid.uuid4().hex[:8]}"
        try:
            generate_transactions(tmp, rows=rows, days=7, seed=seed, variant=variant, start=_today())
            frame = read_dataset(tmp)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        what = f"{len(frame):,} freshly generated transactions ({variant})"
    else:
        path = Path(source).expanduser()
        if not path.exists():
            raise TrafficError(
                f"source {source!r} is neither holdout, data, generated[:variant] nor an existing path"
            )
        fmt = (
            "csv"
            if path.suffix == ".csv" or (path.is_dir() and not any(path.rglob("*.parquet")))
            else "parquet"
        )
        frame, what = read_dataset(path, fmt), f"file {path}"
    needed = [*spec.feature_names, spec.target.name]
    missing = [c for c in needed if c not in frame.columns]
    if missing:
        hint = (
            " (generated rows fit the bundled fraud example only)" if source.startswith("generated") else ""
        )
        raise TrafficError(f"the rows from {what} lack columns {missing} that {spec.name} needs{hint}")
    if frame.empty:
        raise TrafficError(f"{what} has no rows")
    return frame.reset_index(drop=True), what


def _today() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%d")


# --------------------------------------------------------------------------------------
# Delayed labels
# --------------------------------------------------------------------------------------


class LabelWriter:
    """Writes the true labels of answered requests to the label feed after a delay, in a thread.

    ``submit`` queues a request's labels to be written ``delay_s`` (plus a uniform
    ``jitter_s``) later; the thread writes everything due in one file at most every
    ``flush_interval_s``. ``close`` ends it and decides the fate of labels not yet due.
    """

    def __init__(
        self,
        model: str,
        *,
        delay_s: float,
        jitter_s: float = 0.0,
        label_dtype: Any = None,
        flush_interval_s: float = 1.0,
        seed: int = 0,
        root: str | None = None,
    ) -> None:
        if delay_s < 0 or jitter_s < 0:
            raise TrafficError(f"label delay and jitter must be >= 0 (got {delay_s}, {jitter_s})")
        self.model, self.delay_s, self.jitter_s = model, delay_s, jitter_s
        self.label_dtype, self.flush_interval_s, self.root = label_dtype, flush_interval_s, root
        self.written = 0
        self.dropped = 0
        self.failed = 0
        self.files = 0
        self._rng = random.Random(seed)
        self._heap: list[tuple[float, int, list[tuple[str, int, Any]]]] = []
        self._seq = 0
        self._cond = threading.Condition()
        self._closing: str | None = None
        self._thread = threading.Thread(target=self._run, name="label-writer", daemon=True)
        self._thread.start()

    @property
    def pending(self) -> int:
        with self._cond:
            return sum(len(item[2]) for item in self._heap)

    def submit(self, request_id: str, labels: list[Any], *, now: float | None = None) -> float:
        """Queue one request's labels (one per row, in row order); returns when they are due."""
        now = time.monotonic() if now is None else now
        due = now + self.delay_s + (self._rng.uniform(0, self.jitter_s) if self.jitter_s else 0.0)
        records = [(request_id, i, label) for i, label in enumerate(labels)]
        with self._cond:
            if self._closing is not None:
                raise RuntimeError("the label writer is closed")
            heapq.heappush(self._heap, (due, self._seq, records))
            self._seq += 1
            self._cond.notify()
        return due

    def close(self, pending: str = "wait", timeout_s: float | None = None) -> None:
        """Stop the writer. Labels not yet due are waited for (``wait``), written now
        (``write``) or left out and counted in ``dropped`` (``drop``)."""
        if pending not in PENDING_POLICIES:
            raise TrafficError(f"pending must be one of {PENDING_POLICIES}, not {pending!r}")
        with self._cond:
            self._closing = pending
            self._cond.notify()
        self._thread.join(timeout_s)
        if self._thread.is_alive():  # a wait that ran out of time: what is left is reported, not written
            with self._cond:
                self._closing = "drop"
                self._cond.notify()
            self._thread.join()

    def _take_due(self, now: float, everything: bool) -> list[tuple[str, int, Any]]:
        out: list[tuple[str, int, Any]] = []
        while self._heap and (everything or self._heap[0][0] <= now):
            out.extend(heapq.heappop(self._heap)[2])
        return out

    def _write(self, records: list[tuple[str, int, Any]]) -> None:
        from include.modelops.serving.label_feed import write_labels

        if not records:
            return
        try:
            write_labels(self.model, records, dtype=self.label_dtype, root=self.root)
            self.written += len(records)
            self.files += 1
        except Exception as exc:  # a failed write is counted and reported; the traffic goes on
            self.failed += len(records)
            log.warning("Could not write %d labels to the label feed: %s", len(records), exc)

    def _run(self) -> None:
        last_write = 0.0
        while True:
            with self._cond:
                now = time.monotonic()
                closing = self._closing
                if closing == "drop":
                    self.dropped += sum(len(item[2]) for item in self._heap)
                    self._heap.clear()
                    return
                if closing == "write" or (closing == "wait" and not self._heap):
                    batch = self._take_due(now, everything=True)
                    done = True
                else:
                    done = False
                    next_write = (
                        max(last_write + self.flush_interval_s, self._heap[0][0]) if self._heap else None
                    )
                    if next_write is None or next_write > now:
                        timeout = None if next_write is None else next_write - now
                        self._cond.wait(timeout)
                        continue
                    batch = self._take_due(now, everything=False)
            self._write(batch)
            last_write = time.monotonic()
            if done:
                return


# --------------------------------------------------------------------------------------
# Sending
# --------------------------------------------------------------------------------------


@dataclass
class TrafficConfig:
    """How much traffic to send, how fast, and what happens to labels (see ``run_traffic``)."""

    url: str = "http://127.0.0.1:3000"
    rate: float = 10.0
    count: int = 1_000
    duration_s: float = 60.0
    rows_per_request: int = 1
    label_delay_s: float = 30.0
    label_jitter_s: float = 0.0
    pending: str = "wait"
    timeout_s: float = 10.0
    max_in_flight: int = 64
    progress_every_s: float = 5.0
    send_entity_ids: bool = True
    seed: int = 0

    def check(self) -> None:
        """Raise ``TrafficError`` naming the first setting out of bounds."""
        check_local_url(self.url)
        if not 0 < self.rate <= MAX_RATE:
            raise TrafficError(f"rate must be in (0, {MAX_RATE:g}] requests/s, got {self.rate}")
        if not 0 < self.count <= MAX_COUNT:
            raise TrafficError(f"count must be in [1, {MAX_COUNT}], got {self.count}")
        if not 0 < self.duration_s <= MAX_DURATION_S:
            raise TrafficError(f"duration must be in (0, {MAX_DURATION_S:g}] s, got {self.duration_s}")
        if not 0 < self.rows_per_request <= MAX_ROWS_PER_REQUEST:
            raise TrafficError(
                f"rows per request must be in [1, {MAX_ROWS_PER_REQUEST}], got {self.rows_per_request}"
            )
        if self.pending not in PENDING_POLICIES:
            raise TrafficError(f"pending must be one of {PENDING_POLICIES}, got {self.pending!r}")
        if self.label_delay_s < 0 or self.label_jitter_s < 0:
            raise TrafficError("label delay and jitter must be >= 0")
        if self.max_in_flight < 1 or self.timeout_s <= 0:
            raise TrafficError("max_in_flight must be >= 1 and timeout > 0")


def check_local_url(url: str) -> str:
    """The base URL (no trailing slash) if it points at this machine over HTTP; else ``TrafficError``."""
    parsed = urlparse(url)
    if parsed.scheme not in ("http", "https") or parsed.hostname not in LOCAL_HOSTS:
        raise TrafficError(
            f"traffic goes to this machine only ({', '.join(LOCAL_HOSTS)}) over http(s); got {url!r}"
        )
    return url.rstrip("/")


@dataclass
class TrafficSummary:
    """What a run sent and got back; ``latencies_ms`` holds answered requests only."""

    sent: int = 0
    answered: int = 0
    rows_answered: int = 0
    client_errors: int = 0
    server_errors: int = 0
    connection_errors: int = 0
    behind_schedule: int = 0
    duration_s: float = 0.0
    latencies_ms: array = field(default_factory=lambda: array("d"), repr=False)
    errors: dict[str, int] = field(default_factory=dict)
    labels_written: int = 0
    labels_dropped: int = 0
    labels_failed: int = 0
    label_files: int = 0

    def percentile(self, q: float) -> float | None:
        import numpy as np

        return float(np.percentile(self.latencies_ms, q)) if self.latencies_ms else None

    def error(self, what: str) -> None:
        if len(self.errors) < 20 or what in self.errors:
            self.errors[what] = self.errors.get(what, 0) + 1

    def to_dict(self) -> dict[str, Any]:
        return {
            "sent": self.sent,
            "answered": self.answered,
            "rows_answered": self.rows_answered,
            "4xx": self.client_errors,
            "5xx": self.server_errors,
            "connection_errors": self.connection_errors,
            "behind_schedule": self.behind_schedule,
            "duration_s": round(self.duration_s, 3),
            "rate_per_s": round(self.sent / self.duration_s, 2) if self.duration_s else None,
            "latency_ms_p50": self.percentile(50),
            "latency_ms_p95": self.percentile(95),
            "latency_ms_p99": self.percentile(99),
            "labels_written": self.labels_written,
            "labels_dropped": self.labels_dropped,
            "labels_failed": self.labels_failed,
            "errors": dict(self.errors),
        }

    def progress_line(self, elapsed_s: float, labels_pending: int) -> str:
        p95 = self.percentile(95)
        return (
            f"[{elapsed_s:7.1f} s] sent {self.sent:,}  answered {self.answered:,}  4xx {self.client_errors}  "
            f"5xx {self.server_errors}  conn {self.connection_errors}  "
            f"p95 {'-' if p95 is None else f'{p95:.1f} ms'}  labels written {self.labels_written:,} "
            f"pending {labels_pending:,}"
        )

    def report(self) -> str:
        def ms(v: float | None) -> str:
            return "-" if v is None else f"{v:.1f} ms"

        rate = self.sent / self.duration_s if self.duration_s else 0.0
        lines = [
            f"sent               {self.sent:,} requests in {self.duration_s:.1f} s ({rate:.1f}/s)",
            f"answered (2xx)     {self.answered:,} ({self.rows_answered:,} rows)",
            f"4xx                {self.client_errors:,}",
            f"5xx                {self.server_errors:,}",
            f"connection errors  {self.connection_errors:,}",
            f"latency            p50 {ms(self.percentile(50))}  p95 {ms(self.percentile(95))}  "
            f"p99 {ms(self.percentile(99))}",
            f"labels written     {self.labels_written:,} in {self.label_files} file(s)"
            + (f"; {self.labels_dropped:,} pending labels not written" if self.labels_dropped else "")
            + (f"; {self.labels_failed:,} failed to write" if self.labels_failed else ""),
        ]
        if self.behind_schedule:
            lines.append(
                f"behind schedule    {self.behind_schedule:,} requests started late "
                f"(max in flight reached: the service is slower than the rate)"
            )
        for what, n in list(self.errors.items())[:10]:
            lines.append(f"  {n:>6} x {what}")
        return "\n".join(lines)


@dataclass
class PreparedRequests:
    bodies: list[bytes]
    labels: list[list[Any]]
    rows_per_body: list[int]


def prepare_requests(
    spec: ModelSpec, frame: pd.DataFrame, cfg: TrafficConfig, n_requests: int
) -> PreparedRequests:
    """Request bodies (JSON) and their rows' true labels, cycling through ``frame`` in a shuffled order."""
    import numpy as np

    from include.modelops.serving.contract import request_rows

    order = np.random.default_rng(cfg.seed).permutation(len(frame))
    k = cfg.rows_per_request
    # Distinct bodies for up to 10,000 requests (and 200,000 rows in memory); longer runs cycle.
    n_bodies = max(1, min(n_requests, 10_000, 200_000 // k))
    take = np.resize(order, n_bodies * k)
    chosen = frame.iloc[take].reset_index(drop=True)
    rows = request_rows(spec, chosen)
    targets = chosen[spec.target.name].tolist()
    entity = (
        spec.entity_id
        if cfg.send_entity_ids and spec.entity_id and spec.entity_id in chosen.columns
        else None
    )
    entities = chosen[entity].astype(str).tolist() if entity else None
    bodies, labels = [], []
    for b in range(n_bodies):
        payload: dict[str, Any] = {"rows": rows[b * k : (b + 1) * k]}
        if entities is not None:
            payload["entity_ids"] = entities[b * k : (b + 1) * k]
        bodies.append(json.dumps(payload).encode())
        labels.append(targets[b * k : (b + 1) * k])
    return PreparedRequests(bodies=bodies, labels=labels, rows_per_body=[k] * n_bodies)


@dataclass(frozen=True)
class Response:
    """One request as the client saw it (``on_response``): wall-clock times, status, response headers."""

    request_id: str
    sent_at: float  # time.time()
    answered_at: float
    status: int | None  # None: no answer (connection error or timeout)
    headers: dict[str, str]


async def send_requests(
    base_url: str,
    prepared: PreparedRequests,
    cfg: TrafficConfig,
    summary: TrafficSummary,
    on_answer: Callable[[str, list[Any]], None],
    progress: Callable[[float], None],
    *,
    on_response: Callable[[Response], None] | None = None,
) -> None:
    """Send ``prepared`` bodies to ``<base_url>/predict`` on ``cfg``'s open-loop schedule, counting in ``summary``.

    ``on_answer(request_id, labels)`` is called for every 2xx answer, ``progress(elapsed_s)``
    every ``cfg.progress_every_s``, and ``on_response`` (when given) for every request, answered
    or not (the rollout benchmark reads which upstream answered when). Used by ``run_traffic``
    and the serving and rollout benchmarks.
    """
    import aiohttp

    timeout = aiohttp.ClientTimeout(total=cfg.timeout_s)
    connector = aiohttp.TCPConnector(limit=cfg.max_in_flight)
    in_flight = asyncio.Semaphore(cfg.max_in_flight)
    url = f"{base_url}/predict"
    loop = asyncio.get_running_loop()

    async def one(session: aiohttp.ClientSession, i: int) -> None:
        body_i = i % len(prepared.bodies)
        request_id = str(uuid.uuid4())
        started, sent_at = time.perf_counter(), time.time()
        status, headers = None, {}
        try:
            async with session.post(
                url,
                data=prepared.bodies[body_i],
                headers={"Content-Type": "application/json", "X-Request-ID": request_id},
            ) as r:
                payload = await r.read()
                elapsed_ms = (time.perf_counter() - started) * 1000
                status, headers = r.status, dict(r.headers)
                if 200 <= r.status < 300:
                    summary.answered += 1
                    summary.rows_answered += prepared.rows_per_body[body_i]
                    summary.latencies_ms.append(elapsed_ms)
                    # The id the service logged is the one it returns (it echoes ours).
                    served_id = r.headers.get("X-Request-ID") or request_id
                    on_answer(served_id, prepared.labels[body_i])
                elif 400 <= r.status < 500:
                    summary.client_errors += 1
                    summary.error(f"HTTP {r.status}: {payload[:200].decode(errors='replace')}")
                else:
                    summary.server_errors += 1
                    summary.error(f"HTTP {r.status}: {payload[:200].decode(errors='replace')}")
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            summary.connection_errors += 1
            summary.error(f"{type(exc).__name__}: {exc}"[:200])
        finally:
            in_flight.release()
            if on_response is not None:
                on_response(Response(request_id, sent_at, time.time(), status, headers))

    async def report_progress(t0: float) -> None:
        while True:
            await asyncio.sleep(cfg.progress_every_s)
            progress(loop.time() - t0)

    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        tasks: set[asyncio.Task] = set()
        t0 = loop.time()
        deadline = t0 + cfg.duration_s
        reporter = asyncio.create_task(report_progress(t0)) if cfg.progress_every_s > 0 else None
        try:
            for i in range(cfg.count):
                due = t0 + i / cfg.rate
                if due >= deadline:
                    break
                wait = due - loop.time()
                if wait > 0:
                    await asyncio.sleep(wait)
                if in_flight.locked():
                    summary.behind_schedule += 1
                await in_flight.acquire()
                if loop.time() >= deadline:
                    in_flight.release()
                    break
                summary.sent += 1
                task = asyncio.create_task(one(session, i))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
            if tasks:
                await asyncio.wait(tasks)  # each is bounded by the request timeout
        finally:
            summary.duration_s = loop.time() - t0
            if reporter is not None:
                reporter.cancel()
            for task in tasks:
                task.cancel()


def wait_until_ready(base_url: str, timeout_s: float = 10.0) -> None:
    """Raise ``TrafficError`` unless ``<base_url>/readyz`` answers 200 within ``timeout_s``."""
    from include.modelops.platform import http

    last = [""]

    def ready() -> bool:
        try:
            status = http.get(f"{base_url}/readyz").status
        except http.Unreachable as exc:
            last[0] = str(exc)
            return False
        last[0] = f"HTTP {status}"
        return status == 200

    if http.wait_until(ready, timeout_s=timeout_s, what=f"the service at {base_url}") is None:
        raise TrafficError(
            f"no service is ready at {base_url} ({last[0]}): start one with `make serve`, "
            f"or give its address with URL="
        )


def run_traffic(
    spec: ModelSpec,
    frame: pd.DataFrame,
    cfg: TrafficConfig,
    *,
    echo: Callable[[str], None] = print,
    label_root: str | None = None,
) -> TrafficSummary:
    """Send ``frame``'s rows to ``cfg.url`` as configured; write their labels with a delay.

    Blocks until the traffic is sent, every request is answered or timed out, and the label
    writer has dealt with pending labels (``cfg.pending``). Ctrl-C stops the sending early and
    still applies the pending policy.

    Args:
        spec: The model's spec (features, target, entity id).
        frame: Rows with the spec's features and target (drift already applied).
        cfg: The traffic's settings.
        echo: Where progress lines go.
        label_root: The label feed's location (default: the setting ``MODELOPS_INFERENCE_LOG_URL``).
    """
    from include.modelops.serving.label_feed import label_type

    cfg.check()
    base_url = check_local_url(cfg.url)
    n_requests = min(cfg.count, math.ceil(cfg.rate * cfg.duration_s))
    prepared = prepare_requests(spec, frame, cfg, n_requests)
    writer = LabelWriter(
        spec.name,
        delay_s=cfg.label_delay_s,
        jitter_s=cfg.label_jitter_s,
        label_dtype=label_type(frame[spec.target.name].head(1000).tolist()),
        seed=cfg.seed,
        root=label_root,
    )
    summary = TrafficSummary()

    def progress(elapsed: float) -> None:
        summary.labels_written = writer.written
        echo(summary.progress_line(elapsed, writer.pending))

    try:
        asyncio.run(send_requests(base_url, prepared, cfg, summary, writer.submit, progress))
    except KeyboardInterrupt:
        echo("Interrupted: no more requests are sent.")
    finally:
        pending = writer.pending
        if pending and cfg.pending == "wait":
            echo(
                f"Waiting up to {cfg.label_delay_s + cfg.label_jitter_s:.0f} s for {pending:,} labels to fall due "
                f"(PENDING=write writes them now, PENDING=drop leaves them out)"
            )
        try:
            writer.close(cfg.pending, timeout_s=cfg.label_delay_s + cfg.label_jitter_s + 30)
        except KeyboardInterrupt:
            writer.close("drop")
        summary.labels_written, summary.labels_dropped = writer.written, writer.dropped
        summary.labels_failed, summary.label_files = writer.failed, writer.files
    return summary
