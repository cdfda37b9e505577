"""`make run`'s exit code and last words when the candidate does not reach production."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.e2e.test_own_models import own_frame, own_spec
from tests.e2e.userenv import user_env

PROJECT_ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.e2e


def test_gate_rejection_of_a_first_model_exits_3_and_says_there_is_no_champion(tmp_path):
    state, specs, data = tmp_path / "state", tmp_path / "specs", tmp_path / "team_data" / "churn.parquet"
    specs.mkdir()
    data.parent.mkdir()
    own_frame("binary", 2000, seed=11).to_parquet(data, index=False)
    spec = own_spec("hopeless_churn", "binary", data, "parquet")
    spec["evaluation"]["gate"]["thresholds"] = {"roc_auc": {"min": 0.9999}}  # no model can pass it
    (specs / "hopeless_churn.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    env = user_env(state, specs)

    res = subprocess.run(
        [sys.executable, "-m", "include.modelops.cli", "run", "--model", "hopeless_churn"],
        env=env,
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=1200,
    )

    assert res.returncode == 3, res.stdout[-4000:] + res.stderr[-3000:]
    assert "Outcome: not promoted (no champion yet). REJECTED:" in res.stdout, res.stdout[-3000:]
    assert "vNone" not in res.stdout and "champion kept" not in res.stdout
