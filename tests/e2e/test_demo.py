"""`make demo` as a user runs it: twice, in a fresh state folder, reading only what it prints."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

PROJECT_ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.e2e


def demo(state: Path, command: str = "demo") -> subprocess.CompletedProcess:
    env = {**os.environ, "MODELOPS_STATE_DIR": str(state), "PYTHONPATH": f"{PROJECT_ROOT}:{PROJECT_ROOT / 'plugins'}"}
    env.pop("MLFLOW_TRACKING_URI", None)
    env.pop("MODELOPS_SPECS_DIR", None)
    # The default size, as `make demo` runs it: at 20k rows the slices hold too few frauds for the
    # reference spec's slice-gap rule to be stable.
    return subprocess.run([sys.executable, "-m", "include.modelops.cli", command], env=env,
                          cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=1200)


def test_demo_twice_makes_a_champion_then_rolls_out_a_new_candidate_and_a_bad_one_is_rolled_back(tmp_path):
    state = tmp_path / "state"

    first = demo(state)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    assert "Outcome: v1 is the new champion" in first.stdout
    for line in ("validate_dataset       success", "smoke_serve_bento      success", "Model card", "Bento",
                 "fraud_detection_service:v1", "Stopped the MLflow server"):
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
    assert (f"Outcome: not promoted (champion v{champion} kept): v3 was rolled back at canary_10: error_rate"
            in bad.stdout)
    assert f"Registry: champion v{champion}, challenger none" in bad.stdout
    # everything it started, it stopped
    leftovers = subprocess.run(["pgrep", "-f", str(state)], capture_output=True, text=True).stdout.split()
    assert leftovers == []
