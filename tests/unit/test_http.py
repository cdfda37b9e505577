"""platform/http.py against real servers on this machine: a TCP one and one on a Unix socket."""

from __future__ import annotations

import json
import socketserver
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from include.modelops.platform import http
from include.modelops.platform.local_stack import free_port


class _Handler(BaseHTTPRequestHandler):
    def log_message(self, *args):  # keep the test output quiet
        pass

    def _answer(self, status: int, body: str, content_type: str = "text/plain") -> None:
        data = body.encode()
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):  # noqa: N802 - http.server's name
        if self.path == "/fails":
            self._answer(500, "it broke")
        elif self.path == "/slow":
            time.sleep(1.5)
            self._answer(200, "late")
        else:
            self._answer(200, f"GET {self.path}")

    def do_POST(self):  # noqa: N802
        body = self.rfile.read(int(self.headers["Content-Length"])).decode()
        echo = {"body": body, "type": self.headers["Content-Type"], "id": self.headers.get("X-Id")}
        self._answer(201, json.dumps(echo), "application/json")


@pytest.fixture(scope="module")
def server():
    srv = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{srv.server_address[1]}"
    srv.shutdown()
    srv.server_close()


class _UnixServer(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True


class _UnixHandler(_Handler):
    def address_string(self):  # a Unix socket's peer has no host
        return "unix"


def test_an_error_status_is_an_answer_not_an_exception(server):
    reply = http.get(f"{server}/fails")
    assert (reply.status, reply.text, reply.ok) == (500, "it broke", False)
    assert reply.content_type.startswith("text/plain")
    assert http.get(f"{server}/x").ok


def test_no_answer_is_unreachable_an_oserror_naming_the_address():
    url = f"http://127.0.0.1:{free_port()}/livez"  # nothing listens there
    with pytest.raises(http.Unreachable, match="127.0.0.1") as caught:
        http.get(url)
    assert isinstance(caught.value, OSError)  # callers that caught urllib's OSError still do
    assert http.answers(url) is False


def test_a_timeout_is_unreachable_too(server):
    with pytest.raises(http.Unreachable, match="Timeout"):
        http.get(f"{server}/slow", timeout=0.3)


def test_json_is_sent_as_json_dumps_writes_it_nan_included(server):
    reply = http.request(
        "POST", f"{server}/predict", json={"rows": [{"a": float("nan")}]}, headers={"X-Id": "7"}
    )
    echo = json.loads(reply.text)
    assert reply.status == 201
    assert echo == {"body": '{"rows": [{"a": NaN}]}', "type": "application/json", "id": "7"}


def test_a_unix_socket_request(tmp_path):
    path = str(tmp_path / "admin.sock")
    srv = _UnixServer(path, _UnixHandler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        reply = http.get("http://localhost/config/", uds=path)
        assert (reply.status, reply.text) == (200, "GET /config/")
    finally:
        srv.shutdown()
        srv.server_close()
    with pytest.raises(http.Unreachable):
        http.get("http://localhost/config/", uds=path)  # the socket file is left, nobody listens


def test_wait_until_returns_the_seconds_it_waited_once_ready():
    calls = []

    def ready() -> bool:
        calls.append(time.monotonic())
        return len(calls) == 3

    waited = http.wait_until(ready, timeout_s=5, interval_s=0.05, what="the third call")
    assert len(calls) == 3
    assert waited is not None and 0.09 <= waited < 2


def test_wait_until_gives_none_at_its_timeout_after_trying_all_along():
    calls = []
    started = time.monotonic()
    assert (
        http.wait_until(lambda: calls.append(1) and False, timeout_s=0.4, interval_s=0.05, what="never")
        is None
    )
    assert 0.35 <= time.monotonic() - started < 2
    assert len(calls) >= 4


def test_wait_until_passes_on_what_the_check_raises_at_once():
    calls = []

    def ready() -> bool:
        calls.append(1)
        raise RuntimeError("the server exited with code 3")

    with pytest.raises(RuntimeError, match="exited with code 3"):
        http.wait_until(ready, timeout_s=10, interval_s=0.05, what="a dead server")
    assert calls == [1]


def test_wait_until_notes_progress_while_it_waits(caplog):
    caplog.set_level("INFO", logger="include.modelops.platform.http")
    http.wait_until(
        lambda: False, timeout_s=0.5, interval_s=0.05, what="the slow thing", progress_every_s=0.1
    )
    assert any("Waiting for the slow thing" in r.getMessage() for r in caplog.records)


def test_answers_counts_any_status_under_the_bound(server):
    assert http.answers(f"{server}/fails") is False  # 500 is not up
    assert http.answers(f"{server}/fails", below=600) is True
    assert http.answers(f"{server}/x", below=300) is True


def test_each_request_opens_its_own_connection():
    """A pooled connection to a server the rollout killed would fail the next health check."""
    srv = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    port = srv.server_address[1]
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    assert http.get(f"http://127.0.0.1:{port}/a").ok
    srv.shutdown()
    srv.server_close()
    # The same port, a new server: the next request must reach it, not a dead pooled socket.
    again = ThreadingHTTPServer(("127.0.0.1", port), _Handler)
    threading.Thread(target=again.serve_forever, daemon=True).start()
    try:
        assert http.get(f"http://127.0.0.1:{port}/b").text == "GET /b"
    finally:
        again.shutdown()
        again.server_close()
