"""The onboarding path for a team's own table: `make draft-spec` → fill in the TODOs →
`make check-specs` → `make run`, for each task type, without touching the team's data.

The drafted champion is then served (`make serve`) and answers `make traffic` with no error.
The data is made with scikit-learn's generators and stored the ways users store it: a
folder of date partitions (binary), a CSV file with text labels (multiclass) and a single
Parquet file (regression). Only the TODO text fields of the drafts are edited, as the
draft asks; every inferred value (types, ranges, categories, task, metric, gate, time
column, entity id) is used as drafted.

The ways a user starts a run are spread over the three (each full run costs a minute or two):
the binary model runs as `make demo MODEL=...` twice (the demo reads the team's data as it is,
and the second run is compared with the first champion); the regression model runs as
`make run DATA=<another file> REASON=...`; the multiclass one as a plain `make run`.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tests.e2e.serving import serve_and_send_traffic
from tests.e2e.userenv import user_env

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
    team_table("regression", 2_000, seed=14).to_parquet(data / "spend_april.parquet", index=False)
    env = user_env(root / "state", root / "specs")
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


def assert_new_champion(res: subprocess.CompletedProcess, version: int = 1) -> None:
    assert res.returncode == 0, res.stdout[-4000:] + res.stderr[-3000:]
    assert f"Outcome: v{version} is the new champion" in res.stdout, res.stdout[-3000:]
    assert "smoke_serve_bento      success" in res.stdout


@pytest.mark.parametrize(
    ("model", "data", "task", "how"),
    [
        ("account_churn", "accounts", "binary_classification", "demo"),
        ("account_tier", "tiers.csv", "multiclass_classification", "run"),
        ("account_spend", "spend.parquet", "regression", "run --data spend_april.parquet"),
    ],
)
def test_a_drafted_spec_takes_the_teams_data_to_a_champion(project, model, data, task, how):
    drafted = cli(
        project, "draft-spec", "--data", str(project["data"] / data), "--target", "y", "--name", model
    )
    assert drafted.returncode == 0, drafted.stdout + drafted.stderr
    assert f"task          {task}" in drafted.stdout
    spec_file = project["specs"] / f"{model}.yaml"
    fill_in_todos(spec_file)
    checked = cli(project, "check-specs")
    assert checked.returncode == 0 and f"ok  {model}: {task}" in checked.stdout, checked.stdout

    if how == "demo":
        first = cli(project, "demo", "--model", model)
        assert "reads its data from" in first.stdout and "Generating" not in first.stdout
    elif how == "run":
        first = cli(project, "run", "--model", model)
    else:  # `make run DATA=... REASON=...`: another file of the same table, and why
        other = project["data"] / how.split("--data ", 1)[1]
        first = cli(project, "run", "--model", model, "--data", str(other), "--reason", "april refresh")
        assert '"data_path": "' + str(other) in first.stdout  # the run conf is shown
        summary = json.loads((project["root"] / "state" / "runs" / model / "latest_summary.json").read_text())
        assert summary["steps"]["validate_dataset"]["result"]["data_path"] == str(other)

    assert_new_champion(first)
    # the task logs carry what happened, not third-party deprecation noise
    task_log = Path(first.stdout.split("(full log: ", 1)[1].split(")", 1)[0]).read_text()
    assert "evaluate_candidate" in task_log
    assert task_log.count("DeprecatedImportWarning") == 0
    assert task_log.count("[py.warnings]") < 20
    # `make serve` + `make traffic`: a drafted spec's champion answers every row of its holdout (a drafted
    # `integer` over whole-number floats once served a 500 to every row without a null).
    serve_and_send_traffic(project["env"], project["root"] / "state", model)
    assert checksums(project["data"]) == project["before"]

    if how == "demo":  # the second demo: a new candidate, compared with v1 on the same data
        second = cli(project, "demo", "--model", model)
        # 0: v2 is the new champion; 3: not promoted (e.g. the gate found it no better), v1 kept
        assert second.returncode in (0, 3), second.stdout[-4000:]
        expected = (
            "Outcome: v2 is the new champion"
            if second.returncode == 0
            else "Outcome: not promoted (champion v1 kept)"
        )
        assert expected in second.stdout, second.stdout[-3000:]
        assert "Generating" not in second.stdout
        assert "vs champion" in second.stdout  # a real comparison with v1 on the same data
        assert checksums(project["data"]) == project["before"]


def test_every_process_it_started_is_gone(project):
    leftovers = subprocess.run(["pgrep", "-f", str(project["root"])], capture_output=True, text=True)
    assert leftovers.stdout.split() == []
