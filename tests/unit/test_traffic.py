"""The traffic generator: drift injection, its bounds and pacing, and the delayed label feed."""

from __future__ import annotations

import json
import threading
import time
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from include.modelops.data.example import generate_transactions
from include.modelops.data.reading import read_dataset
from include.modelops.serving import label_feed, log_store
from include.modelops.serving.contract import request_row_model, request_rows
from include.modelops.serving.traffic import (
    LabelWriter,
    TrafficConfig,
    TrafficError,
    apply_drift,
    load_rows,
    parse_drift,
    run_traffic,
)


@pytest.fixture(scope="module")
def transactions(tmp_path_factory) -> pd.DataFrame:
    folder = tmp_path_factory.mktemp("traffic") / "tx"
    generate_transactions(folder, rows=4000, days=5, seed=3)
    return read_dataset(folder)


@pytest.fixture
def feed(tmp_path, monkeypatch) -> str:
    root = tmp_path / "inference_log"
    monkeypatch.setenv("MODELOPS_INFERENCE_LOG_URL", str(root))
    return str(root)


# --- drift ---------------------------------------------------------------------------------


def test_scaling_changes_only_the_segment_and_stays_in_range(reference_spec, transactions):
    drift = parse_drift("scale=amount:400 scale=txn_count_24h:50 segment=region:north", reference_spec)
    out = apply_drift(reference_spec, transactions, drift, np.random.default_rng(0))

    north = (transactions["region"] == "north").to_numpy()
    others = [c for c in transactions.columns if c not in ("amount", "txn_count_24h")]
    pd.testing.assert_frame_equal(out.loc[~north], transactions.loc[~north], check_dtype=False)
    pd.testing.assert_frame_equal(out[others], transactions[others])
    assert (out.loc[north, "amount"] > transactions.loc[north, "amount"]).mean() > 0.95
    assert out["amount"].max() == 50_000  # clipped at the spec's max, not beyond
    assert out["txn_count_24h"].max() <= 500 and out["txn_count_24h"].dtype == np.int64
    rows = request_rows(reference_spec, out)
    Row = request_row_model(reference_spec)
    for row in rows:  # every drifted row is still a valid request
        Row.model_validate(row)


def test_shifting_a_category_moves_the_share_inside_the_segment_only(reference_spec, transactions):
    drift = parse_drift("shift=merchant_category:gaming:0.5, segment=channel:online", reference_spec)
    out = apply_drift(reference_spec, transactions, drift, np.random.default_rng(1))

    online = (transactions["channel"] == "online").to_numpy()
    before = (transactions.loc[online, "merchant_category"] == "gaming").mean()
    after = (out.loc[online, "merchant_category"] == "gaming").mean()
    expected = before + (1 - before) * 0.5
    assert abs(after - expected) < 0.05
    pd.testing.assert_frame_equal(out.loc[~online], transactions.loc[~online])
    assert set(out["merchant_category"]) <= set(reference_spec.features[1].categories)


def test_nulls_stay_null_under_scaling(reference_spec, transactions):
    out = apply_drift(
        reference_spec,
        transactions,
        parse_drift("scale=distance_from_home_km:2", reference_spec),
        np.random.default_rng(0),
    )
    nulls = transactions["distance_from_home_km"].isna()
    assert nulls.any() and out.loc[nulls, "distance_from_home_km"].isna().all()
    assert out["distance_from_home_km"].max() <= 20_000


@pytest.mark.parametrize(
    ("knobs", "named"),
    [
        ("scale=merchant_category:2", "not a numeric feature"),
        ("scale=amount:-1", "factor must be a number >= 0"),
        ("shift=amount:gaming:0.5", "not a categorical feature"),
        ("shift=merchant_category:casino:0.5", "'casino' is not a category"),
        ("shift=merchant_category:gaming:1.5", "share must be between 0 and 1"),
        ("segment=region:north", "a segment alone changes nothing"),
        ("amount*2", "not understood"),
    ],
)
def test_bad_drift_knobs_are_named(reference_spec, knobs, named):
    with pytest.raises(TrafficError, match=named):
        parse_drift(knobs, reference_spec)


def test_a_segment_that_matches_nothing_is_an_error(reference_spec, transactions):
    drift = parse_drift("scale=amount:2 segment=region:atlantis", reference_spec)
    with pytest.raises(TrafficError, match="matches no row"):
        apply_drift(reference_spec, transactions, drift, np.random.default_rng(0))


def test_generated_rows_fit_the_spec(reference_spec, tmp_path, monkeypatch):
    monkeypatch.setenv("MODELOPS_STATE_DIR", str(tmp_path))
    frame, what = load_rows(reference_spec, "generated:covariate_shift", rows=500)
    assert len(frame) == 500 and "covariate_shift" in what
    assert not list((tmp_path / "tmp").iterdir())  # the generated folder is cleaned up


def test_missing_holdout_says_what_to_run(reference_spec, tmp_path, monkeypatch):
    monkeypatch.setenv("MODELOPS_STATE_DIR", str(tmp_path))
    with pytest.raises(TrafficError, match="make demo"):
        load_rows(reference_spec, "holdout")


def test_latest_holdout_is_used(reference_spec, transactions, tmp_path, monkeypatch):
    monkeypatch.setenv("MODELOPS_STATE_DIR", str(tmp_path))
    runs = tmp_path / "runs" / reference_spec.name
    for i, run in enumerate(("old", "new")):
        (runs / run).mkdir(parents=True)
        transactions.iloc[i * 100 : (i + 1) * 100].to_parquet(runs / run / "holdout.parquet")
        time.sleep(0.01)
    frame, what = load_rows(reference_spec, "holdout")
    assert "new" in what and frame["card_id"].tolist() == transactions.iloc[100:200]["card_id"].tolist()


# --- bounds and pacing ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("overrides", "named"),
    [
        ({"url": "http://example.com:3000"}, "this machine only"),
        ({"url": "http://10.0.0.1:3000"}, "this machine only"),
        ({"rate": 0}, "rate"),
        ({"rate": 1e6}, "rate"),
        ({"count": 0}, "count"),
        ({"count": 10**9}, "count"),
        ({"duration_s": 0}, "duration"),
        ({"duration_s": 10**7}, "duration"),
        ({"rows_per_request": 20_000}, "rows per request"),
        ({"pending": "later"}, "pending"),
    ],
)
def test_traffic_settings_out_of_bounds_are_refused(overrides, named):
    with pytest.raises(TrafficError, match=named):
        TrafficConfig(**overrides).check()


class _Scorer(BaseHTTPRequestHandler):
    """A tiny local endpoint that answers like the service: one score per row, the request id echoed."""

    def do_POST(self):  # noqa: N802
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.server.bodies.append(body)
        out = json.dumps([{"score": 0.1, "label": 0} for _ in body["rows"]]).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("X-Request-ID", self.headers["X-Request-ID"])
        self.end_headers()
        self.wfile.write(out)

    def log_message(self, *args):
        pass


@pytest.fixture
def endpoint():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Scorer)
    server.bodies = []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


def _cfg(server, **kw) -> TrafficConfig:
    return TrafficConfig(url=f"http://127.0.0.1:{server.server_port}", progress_every_s=0, **kw)


def test_count_bounds_the_run(reference_spec, transactions, endpoint, feed):
    summary = run_traffic(
        reference_spec,
        transactions,
        _cfg(endpoint, rate=500, count=25, duration_s=30, rows_per_request=3, label_delay_s=0),
        echo=lambda _: None,
    )
    assert summary.sent == summary.answered == len(endpoint.bodies) == 25
    assert summary.rows_answered == 75 and all(
        len(b["rows"]) == len(b["entity_ids"]) == 3 for b in endpoint.bodies
    )
    assert summary.labels_written == 75


def test_duration_bounds_the_run_and_the_rate_holds(reference_spec, transactions, endpoint, feed):
    started = time.monotonic()
    summary = run_traffic(
        reference_spec,
        transactions,
        _cfg(endpoint, rate=40, count=10_000, duration_s=1.5, label_delay_s=0, pending="drop"),
        echo=lambda _: None,
    )
    assert 55 <= summary.sent <= 61  # 40/s for 1.5 s
    assert time.monotonic() - started < 5
    assert summary.connection_errors == summary.server_errors == summary.client_errors == 0


def test_an_unreachable_service_is_counted_not_raised(reference_spec, transactions, feed):
    from include.modelops.platform.local_stack import free_port

    cfg = TrafficConfig(
        url=f"http://127.0.0.1:{free_port()}", rate=50, count=5, progress_every_s=0, timeout_s=2
    )
    summary = run_traffic(reference_spec, transactions, cfg, echo=lambda _: None)
    assert summary.sent == summary.connection_errors == 5 and summary.answered == summary.labels_written == 0


def test_on_response_sees_every_request_with_its_status_and_headers(reference_spec, transactions, endpoint):
    import asyncio

    from include.modelops.platform.local_stack import free_port
    from include.modelops.serving.traffic import TrafficSummary, prepare_requests, send_requests

    for url, answered in (
        (f"http://127.0.0.1:{endpoint.server_port}", True),
        (f"http://127.0.0.1:{free_port()}", False),
    ):
        cfg = TrafficConfig(url=url, rate=200, count=6, progress_every_s=0, timeout_s=2)
        seen, summary = [], TrafficSummary()
        asyncio.run(
            send_requests(
                url,
                prepare_requests(reference_spec, transactions, cfg, 6),
                cfg,
                summary,
                lambda *_: None,
                lambda _: None,
                on_response=seen.append,
            )
        )
        assert len(seen) == summary.sent == 6
        assert all(r.sent_at <= r.answered_at for r in seen)
        if answered:  # the service's status and headers (here the echoed request id)
            assert {r.status for r in seen} == {200}
            assert all(r.headers["X-Request-ID"] == r.request_id for r in seen)
        else:  # no answer: no status, no headers
            assert {r.status for r in seen} == {None} and all(r.headers == {} for r in seen)


# --- delayed labels ------------------------------------------------------------------------


def test_labels_arrive_after_the_delay(reference_spec, feed):
    writer = LabelWriter(reference_spec.name, delay_s=1.0, flush_interval_s=0.1)
    submitted = datetime.now(UTC)
    writer.submit("req-1", [0, 1, 0])
    time.sleep(0.5)
    assert label_feed.read_labels(reference_spec.name).empty and writer.pending == 3
    writer.close("wait")
    labels = label_feed.read_labels(reference_spec.name)
    assert labels[["request_id", "row_index", "label"]].values.tolist() == [
        ["req-1", 0, 0],
        ["req-1", 1, 1],
        ["req-1", 2, 0],
    ]
    assert (labels["labelled_at"] >= pd.Timestamp(submitted + timedelta(seconds=1))).all()
    assert writer.written == 3 and writer.dropped == 0


@pytest.mark.parametrize(("pending", "written", "dropped"), [("write", 2, 0), ("drop", 0, 2)])
def test_pending_labels_are_written_or_reported_at_exit(reference_spec, feed, pending, written, dropped):
    writer = LabelWriter(reference_spec.name, delay_s=3600)
    writer.submit("req-1", [1, 0])
    started = time.monotonic()
    writer.close(pending)
    assert time.monotonic() - started < 5
    assert (writer.written, writer.dropped) == (written, dropped)
    assert len(label_feed.read_labels(reference_spec.name)) == written


def test_labels_keep_the_targets_type(reference_spec, feed):
    label_feed.write_labels("m_int", [("a", 0, np.int64(1))])
    label_feed.write_labels("m_str", [("a", 0, "cat")])
    label_feed.write_labels("m_float", [("a", 0, 2.5)])
    assert label_feed.read_labels("m_int")["label"].tolist() == [1]
    assert label_feed.read_labels("m_str")["label"].tolist() == ["cat"]
    assert label_feed.read_labels("m_float")["label"].tolist() == [2.5]


def test_read_labels_filters_the_window(reference_spec, feed):
    t0 = datetime(2026, 5, 1, 10, 30, tzinfo=UTC)
    label_feed.write_labels("m", [("a", 0, 1)], labelled_at=t0)
    label_feed.write_labels("m", [("b", 0, 0)], labelled_at=t0 + timedelta(hours=2))
    assert label_feed.read_labels("m", start=t0 + timedelta(minutes=1))["request_id"].tolist() == ["b"]
    assert label_feed.read_labels("m", end=t0 + timedelta(hours=1))["request_id"].tolist() == ["a"]
    assert len(label_feed.read_labels("m")) == 2


def _predictions_table(request_ids: list[str], rows: int) -> pa.Table:
    """Prediction records as the contract defines them (binary model)."""
    n = len(request_ids) * rows
    now = datetime.now(UTC)
    return pa.table(
        {
            "request_id": pa.array([r for r in request_ids for _ in range(rows)], pa.string()),
            "row_index": pa.array([i for _ in request_ids for i in range(rows)], pa.int32()),
            "timestamp": pa.array([now] * n, pa.timestamp("us", tz="UTC")),
            "model": pa.array(["m"] * n, pa.string()),
            "model_version": pa.array(["1"] * n, pa.string()),
            "variant": pa.array(["stable"] * n, pa.string()),
            "entity_id": pa.array([None] * n, pa.string()),
            "latency_ms": pa.array([1.0] * n, pa.float64()),
            "score": pa.array(np.linspace(0, 1, n), pa.float64()),
            "label": pa.array([0] * n, pa.int64()),
            "feature.amount": pa.array([10.0] * n, pa.float64()),
        }
    )


def test_join_pairs_each_prediction_with_its_label(feed):
    log_store.write_batch("predictions", "m", _predictions_table(["r1", "r2", "r3"], rows=2))
    label_feed.write_labels("m", [("r1", 0, 1), ("r1", 1, 0), ("r2", 1, 1)])
    label_feed.write_labels("m", [("r2", 1, 0)])  # a corrected label: the latest one counts
    preds = log_store.read_records("predictions", "m")
    labels = label_feed.read_labels("m")

    joined = label_feed.join_labels(preds, labels)
    assert joined[["request_id", "row_index", "true_label"]].values.tolist() == [
        ["r1", 0, 1],
        ["r1", 1, 0],
        ["r2", 1, 0],
    ]
    assert {"score", "label", "feature.amount", "labelled_at"} <= set(joined.columns)
    everything = label_feed.join_labels(preds, labels, how="left")
    assert len(everything) == 6 and everything["true_label"].isna().sum() == 3


def test_join_with_no_labels_yet(feed):
    log_store.write_batch("predictions", "m", _predictions_table(["r1"], rows=1))
    joined = label_feed.join_labels(log_store.read_records("predictions", "m"), label_feed.read_labels("m"))
    assert joined.empty and "true_label" in joined.columns
