"""The shadow stage's copies: rebuilding requests from the inference log, choosing what to copy, sending it."""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pyarrow as pa
import pytest

from include.modelops.platform import local_stack
from include.modelops.rollout import shadow
from include.modelops.rollout.backend import CANARY, STABLE, Deployed, DeploymentState
from include.modelops.rollout.local import splitter_config
from include.modelops.serving.contract import SHADOW_HEADER
from include.modelops.serving.inference_log import record_schema, request_records
from include.modelops.settings import PROJECT_ROOT, shadow_token
from include.modelops.spec import load_spec

SPEC = load_spec(PROJECT_ROOT / "include" / "models" / "fraud_detection.yaml")
ROW = {
    "amount": 12.5,
    "merchant_category": "fuel",
    "channel": "pos",
    "region": "north",
    "hour_of_day": 7,
    "distance_from_home_km": None,
    "card_age_days": 400,
    "txn_count_24h": 2,
    "customer_age": 41,
    "is_international": False,
}


def log_rows(request_id: str, rows: list[dict], entity_ids: list | None = None):
    """One request's rows as the inference log gives them back (Arrow types, then pandas)."""
    predictions = [{"score": 0.1, "label": 0} for _ in rows]
    columns = request_records(
        SPEC,
        request_id=request_id,
        model_version="1",
        variant="stable",
        rows=rows,
        predictions=predictions,
        latency_ms=3.0,
        entity_ids=entity_ids,
    )
    return pa.Table.from_pydict(columns, schema=record_schema(SPEC)).to_pandas()


def test_a_logged_request_is_rebuilt_as_the_body_the_client_sent():
    import pandas as pd

    second = {**ROW, "hour_of_day": 23, "distance_from_home_km": 3.25, "is_international": True}
    frame = pd.concat([log_rows("a", [ROW, second], entity_ids=["c1", 7]), log_rows("b", [ROW])])
    bodies = shadow.request_bodies(SPEC, frame.iloc[::-1])  # row order comes from row_index, not the frame
    assert list(bodies) == ["b", "a"]
    assert bodies["a"] == {"rows": [ROW, second], "entity_ids": ["c1", "7"]}
    assert bodies["b"] == {"rows": [ROW]}  # no entity ids were sent
    # Integers stay integers although a null-able integer column reads back as float.
    assert (
        type(bodies["a"]["rows"][1]["hour_of_day"]) is int
        and bodies["a"]["rows"][0]["distance_from_home_km"] is None
    )
    json.dumps(bodies)  # plain JSON types only


NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def copy(status: int, seconds_ago: float) -> dict:
    return {"status": status, "at": (NOW - timedelta(seconds=seconds_ago)).isoformat()}


def test_copies_are_sent_for_the_pairs_still_missing_and_never_twice():
    stable_ids = [f"r{i}" for i in range(10)]
    assert shadow.copies_to_send(stable_ids, {}, set(), wanted=4, now=NOW, max_copies=12) == [
        "r0",
        "r1",
        "r2",
        "r3",
    ]
    copies = {"r0": copy(200, 1), "r1": copy(200, 1), "r2": copy(200, 30), "r3": copy(500, 1)}
    # r0 paired; r1 answered a second ago (its log rows are on their way); r2 lost; r3 failed.
    assert shadow.copies_to_send(stable_ids, copies, {"r0"}, wanted=4, now=NOW, max_copies=12) == ["r4", "r5"]
    assert (
        shadow.copies_to_send(stable_ids, copies, {"r0", "r1", "r2", "r4"}, wanted=4, now=NOW, max_copies=12)
        == []
    )
    # The cap: a candidate whose answers never reach its log is not copied without end.
    assert shadow.copies_to_send(stable_ids, copies, set(), wanted=4, now=NOW, max_copies=5) == ["r4"]


class Candidate(BaseHTTPRequestHandler):
    """A stand-in for the candidate's own port that records what it is sent."""

    received: list[tuple[dict, dict]] = []
    status = 200

    def do_POST(self):  # noqa: N802
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        Candidate.received.append(({k.lower(): v for k, v in self.headers.items()}, body))
        self.send_response(Candidate.status)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(b'[{"score": 0.9, "label": 1}]')

    def log_message(self, *args):
        pass


@pytest.fixture
def candidate():
    Candidate.received, Candidate.status = [], 200
    server = ThreadingHTTPServer(("127.0.0.1", local_stack.free_port()), Candidate)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_a_copy_carries_the_request_id_and_the_shadow_mark_and_its_answer_is_discarded(candidate):
    assert shadow.replay(candidate, "req-1", {"rows": [ROW]}) == 200
    headers, body = Candidate.received[0]
    # the mark is the deployment's secret: a client's own "1" is not a shadow copy
    assert headers["x-request-id"] == "req-1" and headers[SHADOW_HEADER.lower()] == shadow_token()
    assert body == {"rows": [ROW]}
    Candidate.status = 503
    assert shadow.replay(candidate, "req-2", {"rows": [ROW]}) == 503


def test_a_copy_nobody_answers_has_status_0():
    assert (
        shadow.replay(f"http://127.0.0.1:{local_stack.free_port()}", "req-1", {"rows": [ROW]}, timeout_s=2)
        == 0
    )


def test_the_endpoint_strips_the_shadow_mark_from_client_requests():
    state = DeploymentState(
        model="m",
        canary_percent=0,
        variants={
            STABLE: Deployed(version="1", bento_tag="s:1", url="http://127.0.0.1:9001"),
            CANARY: Deployed(version="2", bento_tag="s:2", url="http://127.0.0.1:9002"),
        },
    )
    handler = splitter_config(state, listen="127.0.0.1:9000", admin="127.0.0.1:9003")["apps"]["http"][
        "servers"
    ]["rollout"]["routes"][0]["handle"][0]
    assert handler["headers"]["request"]["delete"] == [SHADOW_HEADER]
