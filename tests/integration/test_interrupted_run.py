"""`make run` interrupted mid-run (Ctrl-C, SIGTERM) leaves no run "running" in Airflow for good: the
run and its running tasks are marked failed, so no guard waits on it, and the command exits 130."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from include.modelops.settings import PROJECT_ROOT

pytestmark = pytest.mark.integration
DAG_ID = "fraud_detection_training"


def _runs(db: Path) -> list[tuple[str, str]]:
    if not db.exists():
        return []
    with sqlite3.connect(db, timeout=30) as con:
        return con.execute("SELECT run_id, state FROM dag_run WHERE dag_id = ?", (DAG_ID,)).fetchall()


def _running_tasks(db: Path, run_id: str) -> list[tuple[str, str]]:
    with sqlite3.connect(db, timeout=30) as con:
        return con.execute(
            "SELECT task_id, state FROM task_instance WHERE dag_id = ? AND run_id = ? AND "
            "state IN ('running', 'queued', 'scheduled', 'up_for_retry', 'up_for_reschedule', "
            "'deferred')",
            (DAG_ID, run_id),
        ).fetchall()


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_interrupted_make_run_marks_its_training_run_failed(stack, signum):
    db = Path(stack.env["AIRFLOW_HOME"]) / "airflow.db"
    before = {run_id for run_id, _ in _runs(db)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "include.modelops.cli", "run", "--model", "fraud_detection"],
        env={**os.environ, **stack.env},
        cwd=PROJECT_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        deadline, new = time.monotonic() + 300, []
        while time.monotonic() < deadline and proc.poll() is None:  # until its DAG run is under way
            new = [(r, s) for r, s in _runs(db) if r not in before and s == "running"]
            if new and _running_tasks(db, new[0][0]):
                break
            time.sleep(0.5)
        assert new and proc.poll() is None, "the run never started: " + (
            proc.stdout.read() if proc.poll() else ""
        )
        # Ctrl-C signals the terminal's foreground group (the command; airflow dags test has its own session)
        os.killpg(proc.pid, signum) if signum == signal.SIGINT else proc.send_signal(signum)
        out, _ = proc.communicate(timeout=180)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    run_id = new[0][0]
    assert proc.returncode == 130, out[-3000:]
    assert dict(_runs(db))[run_id] == "failed", out[-3000:]
    assert _running_tasks(db, run_id) == []
    assert f"marked {DAG_ID} run(s) {run_id} failed" in out
