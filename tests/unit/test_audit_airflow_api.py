"""The audit's REST reader (governance/audit/airflow_runs.py) against a local stand-in for Airflow's API."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

import pytest

from include.modelops.governance import audit
from include.modelops.platform.local_stack import free_port

RUNS = [
    {
        "dag_run_id": f"manual__{i}",
        "state": "success" if i % 2 else "failed",
        "start_date": f"2026-12-01T10:{i:02d}:00.123456Z",
        "end_date": f"2026-12-01T10:{i:02d}:30Z",
        "conf": {"reason": f"run {i}"} if i % 3 else None,
    }
    for i in range(130)  # more than one page
]


class _Airflow(BaseHTTPRequestHandler):
    seen: list[str] = []

    def log_message(self, *args):
        pass

    def _json(self, status: int, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_POST(self):  # noqa: N802
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        if body == {"username": "auditor", "password": "s3cret"}:
            self._json(201, {"access_token": "tok"})
        else:
            self._json(401, {"detail": "Invalid credentials"})

    def do_GET(self):  # noqa: N802
        url = urlparse(self.path)
        _Airflow.seen.append(self.path)
        if self.headers.get("Authorization") != "Bearer tok":
            return self._json(401, {"detail": "Not authenticated"})
        if url.path == "/api/v2/dags/fraud_training/dagRuns":
            q = parse_qs(url.query)
            offset, limit = int(q["offset"][0]), int(q["limit"][0])
            return self._json(200, {"dag_runs": RUNS[offset : offset + limit], "total_entries": len(RUNS)})
        return self._json(404, {"detail": "DAG not found"})


@pytest.fixture(scope="module")
def airflow_url():
    srv = ThreadingHTTPServer(("127.0.0.1", 0), _Airflow)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{srv.server_address[1]}"
    srv.shutdown()
    srv.server_close()


def test_every_run_of_every_page_with_its_conf(airflow_url):
    api = audit.AirflowApi(airflow_url, username="auditor", password="s3cret")
    runs, notes = audit.read_dag_runs_api(["fraud_training", "fraud_never_parsed"], api)

    assert notes == []  # a DAG the API does not know has no runs, not an error
    assert len(runs) == 130
    run = runs["manual__7"]
    assert run == {
        "dag_id": "fraud_training",
        "run_id": "manual__7",
        "state": "success",
        "start_date": "2026-12-01T10:07:00+00:00",
        "end_date": "2026-12-01T10:07:30+00:00",
        "conf": {"reason": "run 7"},
    }
    assert runs["manual__6"]["conf"] == {}


def test_credentials_refused_are_a_note_not_an_error(airflow_url):
    runs, notes = audit.read_dag_runs_api(
        ["fraud_training"], audit.AirflowApi(airflow_url, username="x", password="y")
    )
    assert runs == {} and len(notes) == 1 and "refused the user 'x'" in notes[0]

    runs, notes = audit.read_dag_runs_api(["fraud_training"], audit.AirflowApi(airflow_url, token="stale"))
    assert runs == {} and "refused the credentials" in notes[0] and "HTTP 401" in notes[0]

    runs, notes = audit.read_dag_runs_api(["fraud_training"], audit.AirflowApi(airflow_url))
    assert runs == {} and "MODELOPS_AIRFLOW_API_TOKEN" in notes[0]


def test_an_api_that_does_not_answer_is_a_note():
    api = audit.AirflowApi(f"http://127.0.0.1:{free_port()}", token="tok", timeout_s=2)
    runs, notes = audit.read_dag_runs_api(["fraud_training"], api)
    assert runs == {} and "did not answer" in notes[0]
