"""`make demo` as a user runs it: twice, in a fresh state folder, reading only what it prints."""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.e2e.userenv import user_env

PROJECT_ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.e2e


def _env(state: Path) -> dict[str, str]:
    return user_env(state)


def demo(state: Path, command: str = "demo") -> subprocess.CompletedProcess:
    # The default size, as `make demo` runs it: at 20k rows the slices hold too few frauds for the
    # reference spec's slice-gap rule to be stable.
    return subprocess.run(
        [sys.executable, "-m", "include.modelops.cli", command],
        env=_env(state),
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=1200,
    )


def _query(db: Path, sql: str, *args) -> list[tuple]:
    with sqlite3.connect(db, timeout=30) as con:
        return con.execute(sql, args).fetchall()


def _registry(state: Path) -> tuple[list[tuple], list[tuple]]:
    db = state / "mlflow" / "mlflow.db"
    return (
        _query(db, "SELECT name, version, current_stage FROM model_versions ORDER BY name, version"),
        _query(db, "SELECT name, alias, version FROM registered_model_aliases ORDER BY name, alias"),
    )


def _rollout_records(state: Path) -> dict[str, str]:
    return {p.name: p.read_text() for p in sorted((state / "rollout").glob("*/v*.json"))}


def _up_acts_on_no_stale_event(state: Path) -> None:
    """`make up` after the demo sequence: its scheduler starts the runs the Asset events of those
    `airflow dags test` runs queued; each is recognised as stale and skipped with its reason, and
    nothing is trained, registered or rolled out. Ctrl-C then stops everything `make up` started."""
    from include.modelops.platform.local_stack import free_port

    registry, records = _registry(state), _rollout_records(state)
    db = state / "airflow" / "airflow.db"
    before = {r[0] for r in _query(db, "SELECT run_id FROM dag_run")}
    up = subprocess.Popen(
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
    try:
        deadline, settled_since, new = time.monotonic() + 300, None, []
        while time.monotonic() < deadline and up.poll() is None:
            new = [
                r
                for r in _query(db, "SELECT dag_id, run_id, run_type, state FROM dag_run")
                if r[1] not in before
            ]
            if new and all(r[3] in ("success", "failed") for r in new):
                settled_since = settled_since or time.monotonic()
                if time.monotonic() - settled_since > 20:  # and nothing new for a while
                    break
            else:
                settled_since = None
            time.sleep(2)
    finally:
        up.send_signal(signal.SIGINT)  # Ctrl-C
        out, _ = up.communicate(timeout=180)
    assert up.returncode == 0 and "Stopped Airflow and MLflow" in out, out[-3000:]
    # The monitoring DAG's own schedule may start its daily run too: asked for, and checked below by
    # the registry staying as it was (it must not retrain). Every other run is an Asset event's.
    triggered = [r for r in new if not (r[2] == "scheduled" and r[0].endswith("_monitoring"))]
    assert triggered, "no run started from the queued Asset events: " + out[-3000:]
    assert {r[2] for r in triggered} == {"asset_triggered"} and all(r[3] == "success" for r in new), new
    for dag_id, run_id, _, _ in triggered:
        tasks = dict(
            _query(
                db, "SELECT task_id, state FROM task_instance WHERE dag_id = ? AND run_id = ?", dag_id, run_id
            )
        )
        assert "success" not in {s for t, s in tasks.items() if t not in ("check_trigger", "summarize")}, (
            tasks
        )
        assert "skipped" in tasks.values(), tasks
    # the registry and every rollout record as the demo sequence left them
    assert _registry(state) == registry
    assert _rollout_records(state) == records


def test_demo_twice_makes_a_champion_then_rolls_out_a_new_candidate_and_a_bad_one_is_rolled_back(
    tmp_path_factory,
):
    # A short folder: the test's own name would make the state path deeper than a user's .state/.
    state = tmp_path_factory.mktemp("demo") / "state"

    first = demo(state)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    assert "Outcome: v1 is the new champion" in first.stdout
    for line in (
        "validate_dataset       success",
        "smoke_serve_bento      success",
        "Model card",
        "Bento",
        "fraud_detection_service:v1",
        "Stopped the MLflow server",
    ):
        assert line in first.stdout, line

    second = demo(state)
    # 0: v2 reached production; 3: it did not (rejected by the gate or rolled back), v1 still serves
    assert second.returncode in (0, 3), second.stdout[-3000:] + second.stderr[-3000:]
    assert "new data: 67 days" in second.stdout
    assert "vs champion" in second.stdout  # the comparison, with its reason
    promoted = "Outcome: v2 is the new champion" in second.stdout
    assert promoted == (second.returncode == 0), second.stdout[-3000:]
    assert promoted or "Outcome: not promoted (champion v1 kept)" in second.stdout
    # a candidate that passed the gate is rolled out under traffic, its stage tables printed
    assert "Rollout of v2:" in second.stdout or "REJECTED" in second.stdout
    champion = "2" if promoted else "1"

    # make demo-bad-canary: a candidate that answers 500 is rolled back by itself; the champion stays
    bad = demo(state, "demo-bad-canary")
    assert bad.returncode == 0, bad.stdout[-3000:] + bad.stderr[-3000:]
    assert (
        f"Outcome: not promoted (champion v{champion} kept): v3 was rolled back at canary_10: error_rate"
        in bad.stdout
    )
    assert f"Registry: champion v{champion}, challenger none" in bad.stdout
    # everything it started, it stopped
    leftovers = subprocess.run(["pgrep", "-f", str(state)], capture_output=True, text=True).stdout.split()
    assert leftovers == []

    _up_acts_on_no_stale_event(state)
    leftovers = subprocess.run(["pgrep", "-f", str(state)], capture_output=True, text=True).stdout.split()
    assert leftovers == []
