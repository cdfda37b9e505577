"""Every local command stops everything it started: `make up` with a live rollout deployment, MLflow.

Real processes throughout: `python -m include.modelops.cli up` (Airflow standalone, MLflow), a
rollout deployment made by a process that carries `make up`'s environment (as a task of its
scheduler does: stable and canary `bentoml serve`, each a circusd with a worker, behind the Caddy
splitter and its supervisor), then SIGINT (Ctrl-C) to `up`.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import psutil
import pytest

from include.modelops.platform import processes

PROJECT_ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.integration

# The cheapest service `bentoml serve` runs: no model, no MLflow; the backend does not care what it serves.
SERVICE = textwrap.dedent("""
    import bentoml


    @bentoml.service(workers=1)
    class Echo:
        @bentoml.api
        def predict(self, x: int = 0) -> int:
            return x
""")

DEPLOY = textwrap.dedent("""
    import sys
    from include.modelops.rollout.local import LocalBackend

    backend = LocalBackend("echo", workers=1)
    backend.deploy("stable", "1", sys.argv[1])
    backend.deploy("canary", "2", sys.argv[1])
    backend.set_canary_percent(10)
    print(backend.endpoint(), flush=True)
""")


def _env(state: Path) -> dict[str, str]:
    env = {
        **os.environ,
        "MODELOPS_STATE_DIR": str(state),
        "PYTHONPATH": f"{PROJECT_ROOT}:{PROJECT_ROOT / 'plugins'}",
        "BENTOML_HOME": str(state / "bentoml"),
        "AIRFLOW_HOME": str(state / "airflow"),
        "MODELOPS_SERVE_WORKERS": "1",
    }
    for leaked in ("MLFLOW_TRACKING_URI", "MODELOPS_SPECS_DIR", "MODELOPS_OWNER"):
        env.pop(leaked, None)
    return env


def _alive(p: psutil.Process) -> bool:
    try:
        return p.is_running() and p.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def _mentions(p: psutil.Process, state: Path) -> bool:
    """Does the process have the state folder in its command line or environment?"""
    try:
        text = " ".join(p.cmdline()) + " " + " ".join(f"{k}={v}" for k, v in p.environ().items())
    except psutil.Error:
        return False
    return str(state) in text


def _of_state(state: Path) -> list[psutil.Process]:
    """The processes that name the state folder, and their parents up to (not including) this test
    and init: a ``bentoml serve`` arbiter rewrites its title over its environment, its workers don't."""
    me = os.getpid()
    found = {p for p in psutil.process_iter() if p.pid != me and _alive(p) and _mentions(p, state)}
    for p in list(found):
        with contextlib.suppress(psutil.Error):
            for parent in p.parents():
                if parent.pid in (1, me) or parent.pid in {a.pid for a in psutil.Process(me).parents()}:
                    break
                found.add(parent)
    return sorted((p for p in found if _alive(p)), key=lambda p: p.pid)


def test_up_stops_airflow_mlflow_and_every_deployment_on_ctrl_c(tmp_path):
    state = tmp_path / "state"
    service = tmp_path / "echo"
    service.mkdir()
    (service / "service.py").write_text(SERVICE)
    (service / "bentofile.yaml").write_text('service: "service:Echo"\n')
    from include.modelops.platform.local_stack import free_port

    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "include.modelops.cli",
            "up",
            "--airflow-port",
            str(free_port()),
            "--mlflow-port",
            str(free_port()),
        ],
        env=_env(state),
        cwd=PROJECT_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines: list[str] = []
    deployer = None
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line)
            if line.startswith("Ctrl-C stops both"):
                break
        assert "Ctrl-C stops both" in "".join(lines), "".join(lines)[-3000:]
        # A task of `up`'s scheduler has `up`'s environment: Airflow standalone's, inherited.
        airflow = next(c for c in psutil.Process(proc.pid).children() if "standalone" in c.cmdline())
        task_env = airflow.environ()
        assert "MODELOPS_OWNER" in task_env
        deployer = subprocess.run(
            [sys.executable, "-c", DEPLOY, str(service)],
            env=task_env,
            cwd=PROJECT_ROOT,
            capture_output=True,
            text=True,
            timeout=240,
        )
        assert deployer.returncode == 0, deployer.stdout[-2000:] + deployer.stderr[-3000:]
        tree = psutil.Process(proc.pid).children(recursive=True)
        # They outlive the "task" that started them: none is in `up`'s tree any more.
        served = [p for p in _of_state(state) if p not in tree and p.pid != proc.pid]
        names = [" ".join(p.cmdline()) for p in served]
        assert sum("caddy run" in n for n in names) == 1, names
        assert sum(n.strip() == "circusd" for n in names) == 2, names  # each `bentoml serve`, titled circusd
        assert sum("include.modelops.rollout.splitter" in n for n in names) == 1, names  # Caddy's supervisor
        assert sum("_bentoml_impl.worker" in n for n in names) >= 2, names

        proc.send_signal(signal.SIGINT)
        rest, _ = proc.communicate(timeout=180)
    finally:
        if proc.poll() is None:  # a failed assertion above: stop everything `make up` started
            proc.send_signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=120)
        for p in _of_state(state):  # never leave them to the next test, whatever happened
            with contextlib.suppress(psutil.Error):
                p.kill()
    assert proc.returncode == 0, rest[-3000:]
    assert "Stopped Airflow and MLflow" in rest and "rollout deployment of echo" in rest, rest[-3000:]
    left = [p for p in tree + served if _alive(p)] + _of_state(state)
    assert left == [], [p.cmdline() for p in left]
    assert "ignored SIGTERM" not in rest, rest[-3000:]


def test_mlflow_server_stops_on_sigterm_alone(tmp_path, caplog):
    """No SIGKILL: MLflow's job runner (seven huey consumers, idle ones poll every 10 s) is not started."""
    from include.modelops.platform import local_stack

    state = tmp_path / "state"
    port = local_stack.free_port()
    uri = f"http://127.0.0.1:{port}"
    proc = local_stack.start_mlflow(state, port, local_stack.stack_env(state, uri))
    try:
        tree = [psutil.Process(proc.pid), *psutil.Process(proc.pid).children(recursive=True)]
        commands = [" ".join(p.cmdline()) for p in tree]
        assert not [c for c in commands if "huey" in c or "_job_runner" in c], commands
        with caplog.at_level(logging.WARNING, logger="include.modelops.platform.local_stack"):
            ended = processes.stop_process(proc, timeout_s=10)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert ended == "terminated"
    assert "ignored SIGTERM" not in caplog.text
    assert not [p for p in tree if _alive(p)]
