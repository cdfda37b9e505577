"""`make audit` against a real stack: the training DAG's records in MLflow and Airflow, read back
by the CLI in its own process, as a reviewer would run it."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from tests.conftest import PROJECT_ROOT
from tests.integration.conftest import write_test_spec

pytestmark = pytest.mark.integration
# A model of its own, so the audit sees exactly the runs made here, whatever ran before.
MODEL = "fraud_audit"
DAG_ID = f"{MODEL}_training"


@pytest.fixture(scope="module")
def audited(stack):
    write_test_spec(stack.specs_dir, stack.data_dir, name=MODEL)
    run = stack.run_dag(DAG_ID, model=MODEL)
    assert run["rc"] == 0, run["log"][-4000:]
    return run


def line_of(lines: list[str], kind: str, *needles: str) -> int:
    """Index of the first timeline line of ``kind`` that contains every needle."""
    for i, line in enumerate(lines):
        if re.match(rf"^\d{{4}}-\d\d-\d\d \d\d:\d\d:\d\d  {kind}\s", line) and all(
            n in line for n in needles
        ):
            return i
    raise AssertionError(f"no {kind} line with {needles} in:\n" + "\n".join(lines))


def test_champion_audit_shows_its_evidence_in_order(stack, audited):
    champion = stack.alias("champion", model=MODEL)
    assert champion is not None
    dag_run_id = stack.client().get_model_version(MODEL, champion).tags["modelops.dag_run_id"]

    res = subprocess.run(
        [sys.executable, "-m", "include.modelops.cli", "audit", "--model", MODEL, "--version", champion],
        env=stack.env,
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )

    assert res.returncode == 0, res.stdout + res.stderr
    lines = res.stdout.splitlines()
    started = line_of(lines, "dag_run", dag_run_id, "started")  # read from Airflow's DB through its CLI
    validation = line_of(lines, "validation", "Data validation passed")
    gate = line_of(lines, "gate", "Gate passed")
    approval = line_of(lines, "approval", "APPROVED by policy:auto")
    alias = line_of(lines, "alias", f"Alias champion -> v{champion}")
    assert started < validation < gate < approval < alias
    assert f"v{champion} is in production: alias champion" in res.stdout
    assert f"{DAG_ID} / {dag_run_id} (success)" in res.stdout
    assert "Evidence          complete" in res.stdout
    assert "Airflow:" not in res.stdout  # no "could not read Airflow" note


def test_unknown_version_is_one_line_and_exit_code_1(stack, audited):
    res = subprocess.run(
        [
            sys.executable,
            "-m",
            "include.modelops.cli",
            "audit",
            "--model",
            MODEL,
            "--version",
            "999",
            "--no-airflow",
        ],
        env=stack.env,
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert res.returncode == 1
    assert res.stdout.strip().startswith(f"{MODEL} has no version 999. Versions: ")
