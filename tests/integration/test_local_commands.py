"""The local commands keep to this checkout: its own MLflow store, free ports, nothing left running.

Another checkout's `make up` holds 127.0.0.1:5000 and :8080 here (played by a recording HTTP
server when those ports are free; when something else already holds them, that is the case too).
"""

from __future__ import annotations

import contextlib
import http.server
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil
import pytest

PROJECT_ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.integration


class _Recorder(http.server.BaseHTTPRequestHandler):
    hits: list[str] = []

    def _answer(self) -> None:
        _Recorder.hits.append(f"{self.command} {self.server.server_port}{self.path}")
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(b'{"status": "another checkout"}')

    do_GET = do_POST = _answer

    def log_message(self, *args) -> None:  # keep test output clean
        pass


@pytest.fixture(scope="module")
def other_checkout():
    """Hold 5000 and 8080 like another checkout's `make up` would (where they are free)."""
    servers = []
    for port in (5000, 8080):
        with contextlib.suppress(OSError):  # already held by something else: the same situation
            servers.append(http.server.ThreadingHTTPServer(("127.0.0.1", port), _Recorder))
    for s in servers:
        threading.Thread(target=s.serve_forever, daemon=True).start()
    _Recorder.hits.clear()
    yield _Recorder.hits
    for s in servers:
        s.shutdown()
        s.server_close()


def _env(state: Path) -> dict[str, str]:
    env = {
        **os.environ,
        "MODELOPS_STATE_DIR": str(state),
        "PYTHONPATH": f"{PROJECT_ROOT}:{PROJECT_ROOT / 'plugins'}",
    }
    for leaked in ("MLFLOW_TRACKING_URI", "MODELOPS_SPECS_DIR"):  # set session-wide by the shared stack
        env.pop(leaked, None)
    return env


def test_audit_reads_this_checkouts_store_not_whatever_answers_on_5000(tmp_path, other_checkout):
    res = subprocess.run(
        [sys.executable, "-m", "include.modelops.cli", "audit", "--model", "fraud_detection"],
        env=_env(tmp_path / "state"),
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert res.returncode == 1
    assert f"no MLflow store at {tmp_path / 'state' / 'mlflow' / 'mlflow.db'}" in res.stdout
    assert other_checkout == []  # never asked the other checkout's servers


def test_tracking_without_a_configured_server_says_what_to_set(monkeypatch):
    from include.modelops.platform import tracking

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    with pytest.raises(RuntimeError, match="MLFLOW_TRACKING_URI is not set"):
        tracking.client()


def _dag_is_unpaused(up_output: str, dag_id: str, timeout_s: float = 180) -> bool:
    """Ask the REST API of the Airflow that `make up` printed (as the README does) whether a DAG is paused."""
    import re

    import requests

    m = re.search(r"Airflow UI\s+(http://127.0.0.1:\d+)\s+login: (\S+) / (\S+)", up_output)
    assert m, up_output[-2000:]
    base, user, password = m.groups()
    token = requests.post(
        f"{base}/auth/token", json={"username": user, "password": password}, timeout=30
    ).json()["access_token"]
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:  # the DAG processor may not have parsed the file yet
        res = requests.get(
            f"{base}/api/v2/dags/{dag_id}", headers={"Authorization": f"Bearer {token}"}, timeout=30
        )
        if res.status_code == 200:
            return res.json()["is_paused"] is False
        time.sleep(3)
    raise AssertionError(f"{dag_id} never appeared in {base}")


def test_up_moves_off_taken_ports_unpauses_and_leaves_nothing_on_sigterm(tmp_path, other_checkout):
    state = tmp_path / "state"
    proc = subprocess.Popen(
        [sys.executable, "-m", "include.modelops.cli", "up"],
        env=_env(state),
        cwd=PROJECT_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines: list[str] = []
    deadline = time.monotonic() + 420
    assert proc.stdout is not None
    for line in proc.stdout:
        lines.append(line)
        if line.startswith("Ctrl-C stops both") or time.monotonic() > deadline:
            break
    out = "".join(lines)
    try:
        assert "Ctrl-C stops both" in out, out[-3000:]
        assert "Port 5000 is taken" in out and "Port 8080 is taken" in out
        assert "Unpaused fraud_detection_training" in out
        assert _dag_is_unpaused(out, "fraud_detection_training")
        children = psutil.Process(proc.pid).children(recursive=True)
        assert len(children) >= 2  # MLflow and Airflow's components
        proc.send_signal(signal.SIGTERM)
        rest, _ = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:  # a failed assertion above: stop everything `make up` started
            started = psutil.Process(proc.pid).children(recursive=True)
            proc.send_signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=60)
            for child in started:
                with contextlib.suppress(psutil.NoSuchProcess):
                    child.kill()
            if proc.poll() is None:
                proc.kill()
    assert "Stopped Airflow and MLflow" in rest
    time.sleep(2)
    alive = [c for c in children if c.is_running() and c.status() != psutil.STATUS_ZOMBIE]
    assert alive == [], [c.cmdline() for c in alive]
    assert other_checkout == []
