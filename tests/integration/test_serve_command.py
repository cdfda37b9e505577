"""`make serve` (``python -m include.modelops.cli serve``): serves the champion with the log on,
and SIGTERM or Ctrl-C leaves no process behind.

The champion is the module's tiny bento (fixtures in conftest.py), registered in a SQLite
MLflow store with the ``champion`` alias and the bento tag, as the training DAG leaves it.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import psutil
import pytest

from include.modelops.platform.local_stack import free_port
from include.modelops.settings import PROJECT_ROOT

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def champion(spec, registered, built, state: Path) -> dict:
    import mlflow

    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{state}/mlflow.db")
    client.set_registered_model_alias(spec.name, "champion", registered["version"])
    client.set_model_version_tag(spec.name, registered["version"], "modelops.bento_tag", built["tag"])
    return {"version": registered["version"], "tag": built["tag"]}


def serve_command(state: Path, port: int, log_root: Path) -> subprocess.Popen:
    env = {
        **os.environ,
        "PYTHONPATH": f"{PROJECT_ROOT}{os.pathsep}{PROJECT_ROOT / 'plugins'}",
        "PORT": str(port),
        "MODELOPS_INFERENCE_LOG_URL": str(log_root),
        "PYTHONUNBUFFERED": "1",
    }
    return subprocess.Popen(
        [sys.executable, "-m", "include.modelops.cli", "serve", "--model", "fraud_detection"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=PROJECT_ROOT,
    )


def wait_for_line(proc: subprocess.Popen, needle: str, timeout_s: float = 180) -> list[str]:
    lines: list[str] = []
    deadline = time.monotonic() + timeout_s
    assert proc.stdout is not None
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line and proc.poll() is not None:
            break
        lines.append(line)
        if needle in line:
            return lines
    raise AssertionError(f"{needle!r} not printed; output:\n{''.join(lines)}")


@pytest.mark.parametrize("stop_signal", [signal.SIGTERM, signal.SIGINT])
def test_serve_answers_logs_and_leaves_no_process_after_a_signal(spec, champion, state, stop_signal):
    from include.modelops.serving.contract import example_row
    from include.modelops.serving.inference_log import read_window

    port = free_port()
    log_root = state / f"serve_cmd_log_{stop_signal.name}"
    proc = serve_command(state, port, log_root)
    try:
        lines = wait_for_line(proc, "Ctrl-C stops it.")
        output = "".join(lines)
        assert f"http://127.0.0.1:{port}" in output
        assert str(log_root) in output and "read_window" in output  # where the log lands and how to read it
        children = psutil.Process(proc.pid).children(recursive=True)
        assert children, "bentoml serve was not started"

        body = json.dumps({"rows": [example_row(spec)]}).encode()
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/predict",
            data=body,
            method="POST",
            headers={"Content-Type": "application/json", "X-Request-ID": "via-make"},
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            assert response.status == 200

        proc.send_signal(stop_signal)
        rest = proc.communicate(timeout=60)[0]
        assert proc.returncode == 0, rest
        assert "Stopped" in rest
        time.sleep(0.5)
        survivors = [c for c in children if c.is_running() and c.status() != psutil.STATUS_ZOMBIE]
        assert not survivors, [(c.pid, c.cmdline()[:4]) for c in survivors]
        assert "via-make" in set(read_window(spec.name, root=str(log_root)).request_id)
    finally:
        if proc.poll() is None:  # a failed assertion above: stop the command and the server it started
            for child in psutil.Process(proc.pid).children(recursive=True):
                with contextlib.suppress(psutil.Error):
                    child.kill()
            proc.kill()
            proc.wait(10)


def test_serve_says_so_when_the_port_is_taken(champion, state):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        proc = serve_command(state, port, state / "unused_log")
        out = proc.communicate(timeout=60)[0]
    assert proc.returncode == 2
    assert f"Port {port} on 127.0.0.1 is taken" in out and f"PORT={port + 1}" in out
