"""The onboarding path for a team's own table: `make draft-spec` → fill in the TODOs →
`make check-specs` → `make run`, for each task type, without touching the team's data.

The drafted champion is then served (`make serve`) and answers `make traffic` with no error.
The data is made with scikit-learn's generators and stored the ways users store it: a
folder of date partitions (binary), a CSV file with text labels (multiclass) and a single
Parquet file (regression). Only the TODO text fields of the drafts are edited, as the
draft asks; every inferred value (types, ranges, categories, task, metric, gate, time
column, entity id) is used as drafted.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tests.e2e.serving import serve_and_send_traffic

PROJECT_ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.e2e


def team_table(task: str, rows: int, seed: int) -> pd.DataFrame:
    from sklearn.datasets import make_classification, make_regression

    rng = np.random.default_rng(seed)
    if task == "regression":
        X, y = make_regression(n_samples=rows, n_features=5, n_informative=4, noise=10.0, random_state=seed)
    else:
        n_classes = 2 if task == "binary" else 3
        X, y = make_classification(
            n_samples=rows,
            n_features=5,
            n_informative=4,
            n_redundant=0,
            n_classes=n_classes,
            class_sep=1.2,
            random_state=seed,
        )
        if task == "multiclass":
            y = np.array(["bronze", "gold", "silver"])[y]
    frame = pd.DataFrame(X, columns=[f"signal_{i}" for i in range(5)])
    frame["account_id"] = [f"acct_{i:05d}" for i in rng.integers(0, rows // 6, rows)]
    frame["event_time"] = pd.Timestamp("2026-03-01") + pd.to_timedelta(
        np.sort(rng.integers(0, 30 * 86_400, rows)), unit="s"
    )
    frame["segment"] = rng.choice(["retail", "business", "public"], rows)
    frame["has_contract"] = rng.random(rows) < 0.4
    frame["tenure_months"] = rng.integers(0, 120, rows)
    frame["visits"] = rng.integers(0, 40, rows).astype("float64")  # whole numbers stored as floats
    frame["free_text"] = [f"ticket {i}: {rng.integers(10**9)}" for i in range(rows)]
    frame.loc[rng.random(rows) < 0.05, "signal_2"] = np.nan
    frame["y"] = y
    return frame


def checksums(path: Path) -> dict[str, str]:
    return {
        str(p): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(path.rglob("*")) if p.is_file()
    }


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    root = tmp_path_factory.mktemp("drafted")
    data = root / "team_data"
    binary = team_table("binary", 2_000, seed=11)
    for day, part in binary.groupby(binary["event_time"].dt.strftime("%Y-%m-%d")):
        (data / "accounts" / f"event_date={day}").mkdir(parents=True)
        part.to_parquet(data / "accounts" / f"event_date={day}" / "part-0000.parquet", index=False)
    team_table("multiclass", 2_000, seed=12).to_csv(data / "tiers.csv", index=False)
    team_table("regression", 2_000, seed=13).to_parquet(data / "spend.parquet", index=False)
    env = {
        **os.environ,
        "MODELOPS_STATE_DIR": str(root / "state"),
        "MODELOPS_SPECS_DIR": str(root / "specs"),
        "BENTOML_HOME": str(root / "state" / "bentoml"),
        "PYTHONPATH": f"{PROJECT_ROOT}:{PROJECT_ROOT / 'plugins'}",
    }
    env.pop("MLFLOW_TRACKING_URI", None)
    return {"root": root, "data": data, "specs": root / "specs", "env": env, "before": checksums(data)}


def cli(project: dict, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "include.modelops.cli", *args],
        env=project["env"],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=1200,
    )


def fill_in_todos(spec_file: Path) -> None:
    """What the draft asks of the user: replace each TODO text (comments left as they are)."""
    lines = spec_file.read_text().splitlines()
    edited = [line if line.lstrip().startswith("#") else line.replace("TODO", "Reviewed") for line in lines]
    spec_file.write_text("\n".join(edited) + "\n")


@pytest.mark.parametrize(
    ("model", "data", "task"),
    [
        ("account_churn", "accounts", "binary_classification"),
        ("account_tier", "tiers.csv", "multiclass_classification"),
        ("account_spend", "spend.parquet", "regression"),
    ],
)
def test_a_drafted_spec_takes_the_teams_data_to_a_champion(project, model, data, task):
    drafted = cli(
        project, "draft-spec", "--data", str(project["data"] / data), "--target", "y", "--name", model
    )
    assert drafted.returncode == 0, drafted.stdout + drafted.stderr
    assert f"task          {task}" in drafted.stdout
    spec_file = project["specs"] / f"{model}.yaml"
    fill_in_todos(spec_file)
    checked = cli(project, "check-specs")
    assert checked.returncode == 0 and f"ok  {model}: {task}" in checked.stdout, checked.stdout

    first = cli(project, "run", "--model", model)

    assert first.returncode == 0, first.stdout[-4000:] + first.stderr[-3000:]
    assert "Outcome: v1 is the new champion" in first.stdout, first.stdout[-3000:]
    assert "smoke_serve_bento      success" in first.stdout
    # the task logs carry what happened, not third-party deprecation noise
    task_log = Path(first.stdout.split("(full log: ", 1)[1].split(")", 1)[0]).read_text()
    assert "evaluate_candidate" in task_log
    assert task_log.count("DeprecatedImportWarning") == 0
    assert task_log.count("[py.warnings]") < 20
    # `make serve` + `make traffic`: a drafted spec's champion answers every row of its holdout (a drafted
    # `integer` over whole-number floats once served a 500 to every row without a null).
    serve_and_send_traffic(project["env"], project["root"] / "state", model)
    assert checksums(project["data"]) == project["before"]


def test_every_process_it_started_is_gone(project):
    leftovers = subprocess.run(["pgrep", "-f", str(project["root"])], capture_output=True, text=True)
    assert leftovers.stdout.split() == []
