"""The inference log's writer (batching, bounded queue, flush on close) and reader (windows, corrupt files).

Real Parquet files in a temporary folder through ``log_store``; the only stand-in is a
slow or failing store function where a test needs the store to be slow or to fail.
"""

from __future__ import annotations

import logging
import threading
import time
from datetime import UTC, datetime, timedelta

import pandas as pd
import pytest

from include.modelops.serving import log_store
from include.modelops.serving.contract import example_row
from include.modelops.serving.inference_log import (
    InferenceLogWriter,
    read_window,
    record_schema,
    request_records,
)


@pytest.fixture()
def root(tmp_path) -> str:
    return str(tmp_path / "inference_log")


def records(
    spec,
    request_id: str,
    n: int = 1,
    *,
    at: datetime | None = None,
    version: str = "3",
    variant: str = "stable",
    entity_ids=None,
) -> dict:
    rows = [{**example_row(spec), "amount": float(i)} for i in range(n)]
    predictions = [{"score": 0.1 * (i % 10), "label": int(i % 10 >= 5)} for i in range(n)]
    return request_records(
        spec,
        request_id=request_id,
        model_version=version,
        variant=variant,
        rows=rows,
        predictions=predictions,
        latency_ms=2.5,
        entity_ids=entity_ids,
        answered_at=at,
    )


def test_records_follow_the_schema_with_one_column_per_feature(reference_spec):
    schema = record_schema(reference_spec)
    assert schema.names[:8] == [
        "request_id",
        "row_index",
        "timestamp",
        "model",
        "model_version",
        "variant",
        "entity_id",
        "latency_ms",
    ]
    assert {"score", "label"} <= set(schema.names)
    assert [n for n in schema.names if n.startswith("feature.")] == [
        f"feature.{name}" for name in reference_spec.feature_names
    ]
    assert str(schema.field("timestamp").type) == "timestamp[us, tz=UTC]"
    assert str(schema.field("row_index").type) == "int32"
    assert str(schema.field("feature.hour_of_day").type) == "int64"


def test_writer_batches_requests_into_few_files_and_reader_returns_every_row(reference_spec, root):
    writer = InferenceLogWriter(reference_spec, root=root, batch_rows=1_000, flush_interval_s=60)
    for i in range(50):
        assert writer.submit(records(reference_spec, f"req-{i}", n=3, entity_ids=[f"card-{i}"] * 3))
    writer.close()
    assert writer.written_rows == 150 and writer.dropped_rows == 0
    assert len(writer.files) == 1  # 50 requests, one file: written on close, not per request
    frame = read_window(reference_spec.name, root=root)
    assert len(frame) == 150
    assert frame.attrs["skipped_files"] == 0 and frame.attrs["files"] == 1
    first = frame[frame.request_id == "req-7"].sort_values("row_index")
    assert first.row_index.tolist() == [0, 1, 2]
    assert first["feature.amount"].tolist() == [0.0, 1.0, 2.0]
    assert first.entity_id.tolist() == ["card-7"] * 3
    assert (frame.model == reference_spec.name).all() and (frame.variant == "stable").all()


def test_writer_writes_when_a_batch_is_full_without_waiting_for_the_interval(reference_spec, root):
    writer = InferenceLogWriter(reference_spec, root=root, batch_rows=10, flush_interval_s=60)
    try:
        writer.submit(records(reference_spec, "big", n=12))
        deadline = time.monotonic() + 10
        while writer.written_rows < 12 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert writer.written_rows == 12
    finally:
        writer.close()


def test_writer_flushes_every_interval(reference_spec, root):
    writer = InferenceLogWriter(reference_spec, root=root, batch_rows=1_000, flush_interval_s=0.2)
    try:
        writer.submit(records(reference_spec, "one"))
        deadline = time.monotonic() + 10
        while writer.written_rows < 1 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert writer.written_rows == 1
        assert len(read_window(reference_spec.name, root=root)) == 1
    finally:
        writer.close()


def test_full_queue_drops_and_counts_rows_without_blocking_the_request(reference_spec, root):
    release = threading.Event()

    def slow_store(*args, **kwargs):
        release.wait(30)
        return log_store.write_batch(*args, **kwargs)

    dropped: list[int] = []
    writer = InferenceLogWriter(
        reference_spec,
        root=root,
        max_queue_rows=10,
        batch_rows=1,
        flush_interval_s=0.01,
        write_batch=slow_store,
        on_drop=dropped.append,
    )
    try:
        assert writer.submit(records(reference_spec, "first", n=2))  # taken by the writer, which now blocks
        deadline = time.monotonic() + 5
        while writer.queued_rows and time.monotonic() < deadline:
            time.sleep(0.01)
        started = time.perf_counter()
        accepted = [writer.submit(records(reference_spec, f"r{i}", n=4)) for i in range(5)]
        elapsed = time.perf_counter() - started
        assert accepted == [True, True, False, False, False]  # 10 rows fit; the rest are dropped whole
        assert elapsed < 1.0  # the request side never waits for the store
        assert writer.dropped_rows == 12 and dropped == [4, 4, 4]
    finally:
        release.set()
        writer.close()
    frame = read_window(reference_spec.name, root=root)
    assert sorted(frame.request_id.unique()) == ["first", "r0", "r1"]


def test_failed_write_is_counted_as_dropped_and_the_writer_keeps_going(reference_spec, root, caplog):
    calls = {"n": 0}

    def flaky_store(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 1:
            raise OSError("bucket unreachable")
        return log_store.write_batch(*args, **kwargs)

    writer = InferenceLogWriter(reference_spec, root=root, write_batch=flaky_store, flush_interval_s=60)
    writer.submit(records(reference_spec, "lost", n=2))
    with caplog.at_level(logging.ERROR):
        assert writer.flush()
    writer.submit(records(reference_spec, "kept", n=3))
    writer.close()
    assert "bucket unreachable" in caplog.text
    assert writer.dropped_rows == 2 and writer.written_rows == 3
    assert read_window(reference_spec.name, root=root).request_id.unique().tolist() == ["kept"]


def test_close_writes_everything_queued_and_later_records_are_dropped(reference_spec, root):
    writer = InferenceLogWriter(reference_spec, root=root, batch_rows=10_000, flush_interval_s=3600)
    for i in range(20):
        writer.submit(records(reference_spec, f"q{i}", n=5))
    writer.close()
    assert len(read_window(reference_spec.name, root=root)) == 100
    assert not writer.submit(records(reference_spec, "late"))
    assert writer.dropped_rows == 1
    writer.close()  # idempotent


def test_rows_land_in_the_partition_of_their_own_hour(reference_spec, root):
    writer = InferenceLogWriter(reference_spec, root=root, flush_interval_s=3600)
    before = datetime(2026, 3, 1, 10, 59, 59, 900_000, tzinfo=UTC)
    after = datetime(2026, 3, 1, 11, 0, 0, 100_000, tzinfo=UTC)
    writer.submit(records(reference_spec, "before", at=before))
    writer.submit(records(reference_spec, "after", at=after))
    writer.close()
    assert len(writer.files) == 2
    ten = read_window(
        reference_spec.name,
        start=datetime(2026, 3, 1, 10, tzinfo=UTC),
        end=datetime(2026, 3, 1, 11, tzinfo=UTC),
        root=root,
    )
    assert ten.request_id.tolist() == ["before"]


def test_reader_filters_on_exact_time_version_and_variant(reference_spec, root):
    t0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
    writer = InferenceLogWriter(reference_spec, root=root, flush_interval_s=3600)
    for minute in range(6):
        variant = "canary" if minute % 2 else "stable"
        writer.submit(
            records(
                reference_spec,
                f"m{minute}",
                at=t0 + timedelta(minutes=minute),
                version="4" if minute >= 3 else "3",
                variant=variant,
            )
        )
    writer.close()
    window = read_window(
        reference_spec.name, start=t0 + timedelta(minutes=1), end=t0 + timedelta(minutes=4), root=root
    )
    assert window.request_id.tolist() == ["m1", "m2", "m3"]
    assert read_window(reference_spec.name, version="4", root=root).request_id.tolist() == ["m3", "m4", "m5"]
    assert read_window(reference_spec.name, variant="canary", root=root).request_id.tolist() == [
        "m1",
        "m3",
        "m5",
    ]
    naive = read_window(reference_spec.name, start=datetime(2026, 3, 1, 12, 5), root=root)
    assert naive.request_id.tolist() == ["m5"]  # naive datetimes are UTC
    assert pd.api.types.is_datetime64_any_dtype(window["timestamp"])


def test_a_window_with_nothing_logged_yet_still_has_the_columns(reference_spec, root):
    """A new hour has no file until the first flush: callers may select columns of the empty window."""
    never = read_window("never-served", root=root)
    writer = InferenceLogWriter(reference_spec, root=root, flush_interval_s=3600)
    writer.submit(records(reference_spec, "at-ten", at=datetime(2026, 3, 1, 10, 30, tzinfo=UTC)))
    writer.close()
    next_hour = read_window(reference_spec.name, start=datetime(2026, 3, 1, 11, tzinfo=UTC), root=root)
    filtered_out = read_window(reference_spec.name, version="no-such-version", root=root)
    for empty in (never, next_hour, filtered_out):
        assert empty.empty
        assert {"request_id", "timestamp", "model_version", "variant"} <= set(empty.columns)
        assert empty[empty["request_id"].str.startswith("probe")].empty
        assert pd.api.types.is_datetime64_any_dtype(empty["timestamp"])


def test_reader_skips_truncated_and_garbage_files_with_a_warning_and_counts_them(
    reference_spec, root, caplog
):
    at = datetime(2026, 3, 2, 9, 30, tzinfo=UTC)
    writer = InferenceLogWriter(reference_spec, root=root, flush_interval_s=3600)
    writer.submit(records(reference_spec, "good-1", n=2, at=at))
    writer.flush()
    writer.submit(records(reference_spec, "good-2", n=2, at=at))
    writer.close()
    good = writer.files[0]
    folder = log_store.partition_dir("predictions", reference_spec.name, log_store.hour_of(at), root)
    with open(good, "rb") as fh:
        data = fh.read()
    with open(f"{folder}/part-truncated.parquet", "wb") as fh:
        fh.write(data[: len(data) // 2])
    with open(f"{folder}/part-garbage.parquet", "wb") as fh:
        fh.write("\x00not parquet at all ✗".encode() * 50)
    with open(f"{folder}/part-empty.parquet", "wb"):
        pass
    with caplog.at_level(logging.WARNING, logger="include.modelops.serving.log_store"):
        frame = read_window(reference_spec.name, root=root)
    assert sorted(frame.request_id.unique()) == ["good-1", "good-2"]
    assert frame.attrs["files"] == 2
    assert frame.attrs["skipped_files"] == 3
    assert any("part-truncated" in s for s in frame.attrs["skipped"])
    assert caplog.text.count("Skipping unreadable predictions file") == 3


def test_reader_of_a_model_without_a_log_returns_an_empty_frame(root):
    frame = read_window("never_served", root=root)
    assert frame.empty and frame.attrs["skipped_files"] == 0


# --- the write-ahead spool: a killed worker's answered rows are written by the next one ----------------

_KILLED_WORKER = """
import os, signal, sys
from include.modelops.spec import load_spec
from include.modelops.serving.inference_log import InferenceLogWriter
from tests.unit.test_inference_log import records
spec = load_spec(sys.argv[1])
writer = InferenceLogWriter(spec, root=sys.argv[2], spool_dir=sys.argv[3], flush_interval_s=3600)
for i in range(int(sys.argv[4])):
    writer.submit(records(spec, f"answered-{i}", n=2))
os.kill(os.getpid(), signal.SIGKILL)  # no shutdown hook, no atexit: what kill -9 does to a worker
"""


def test_rows_a_killed_worker_answered_are_written_by_the_next_writer(reference_spec, root, tmp_path, caplog):
    import subprocess
    import sys

    from tests.conftest import PROJECT_ROOT, REFERENCE_SPEC

    spool = tmp_path / "spool"
    killed = subprocess.run(
        [sys.executable, "-c", _KILLED_WORKER, str(REFERENCE_SPEC), root, str(spool), "25"],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert killed.returncode == -9, killed.stderr
    assert read_window(reference_spec.name, root=root).empty  # nothing reached the log before the kill

    with caplog.at_level(logging.WARNING, logger="include.modelops.serving.inference_log"):
        writer = InferenceLogWriter(reference_spec, root=root, spool_dir=spool, flush_interval_s=3600)
        assert writer.flush()
        writer.close()
    assert writer.recovered_rows == 50 and writer.written_rows == 50 and writer.dropped_rows == 0
    assert "recovered 50 rows of 25 requests" in caplog.text
    frame = read_window(reference_spec.name, root=root)
    assert sorted(set(frame.request_id)) == sorted(f"answered-{i}" for i in range(25)) and len(frame) == 50
    assert not list(spool.rglob("seg-*.spool"))  # drained: a third start writes nothing twice
    again = InferenceLogWriter(reference_spec, root=root, spool_dir=spool, flush_interval_s=3600)
    again.close()
    assert again.recovered_rows == 0 and len(read_window(reference_spec.name, root=root)) == 50


def test_a_live_writers_spool_is_never_taken_and_a_cut_off_record_is_counted(reference_spec, root, tmp_path):
    spool = tmp_path / "spool"
    live = InferenceLogWriter(reference_spec, root=root, spool_dir=spool, flush_interval_s=3600)
    assert live.flush()  # its own look for dead workers' spools is done
    try:
        live.submit(records(reference_spec, "live-1", n=3))
        segment = next(spool.rglob("seg-*.spool"))
        assert segment.stat().st_size > 0  # on disk before submit returned, not at the next flush
        # A record cut off mid-write, in a segment whose writer is gone.
        whole = segment.read_bytes()
        (segment.parent / "seg-1-dead.spool").write_bytes(whole + whole[: len(whole) // 2])
        other = InferenceLogWriter(reference_spec, root=root, spool_dir=spool, flush_interval_s=3600)
        other.close()
        assert other.recovered_rows == 3 and other.dropped_rows == 3  # the whole copy, then the torn one
        assert segment.exists()  # still the live writer's
    finally:
        live.close()
    assert live.written_rows == 3
    assert sorted(read_window(reference_spec.name, root=root).request_id) == ["live-1"] * 6


def test_spool_off_writes_nothing_to_disk_before_the_flush(reference_spec, root, tmp_path, monkeypatch):
    monkeypatch.setenv("MODELOPS_INFERENCE_LOG_SPOOL", "off")
    monkeypatch.setenv("MODELOPS_STATE_DIR", str(tmp_path / "state"))
    writer = InferenceLogWriter(reference_spec, root=root, flush_interval_s=3600)
    writer.submit(records(reference_spec, "r", n=1))
    assert not (tmp_path / "state").exists()
    writer.close()
    assert writer.written_rows == 1
