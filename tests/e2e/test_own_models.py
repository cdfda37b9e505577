"""A data engineer's own models, start to finish, as `make demo` / `make run` / `make serve` /
`make traffic` run them.

Specs the project never saw, on data made with scikit-learn's generators: PyTorch models of two
task types whose tables differ in shape (categoricals with nulls, whole numbers stored as floats
with nulls in integer and boolean features; neither), in a CSV file and a Parquet file. Each goes
from raw data to a champion through the real training DAG (`airflow dags test`), bento smoke test
included; the champions are served by `make serve` and answer `make traffic` with no error; the
user's data is never written.

What the other e2e files cover, so it is not run twice: scikit-learn champions of every task type
(a folder of date partitions run as `make demo` twice, a regression model run on other data with
a reason, a multiclass one from a CSV) served and sent traffic, in tests/e2e/test_drafted_specs.py;
every trainer x task type x table shape through the trainer, gate and the service's row
conversion, in tests/integration/test_every_trainer_and_table.py.
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
import yaml

from tests.e2e.serving import serve_and_send_traffic
from tests.e2e.userenv import user_env

PROJECT_ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.e2e

SEGMENTS = ["retail", "business", "public"]


def own_frame(task: str, n: int, seed: int) -> pd.DataFrame:
    """Rows of a made-up business table: numeric signal, a categorical, a boolean, time and ids."""
    from sklearn.datasets import make_classification, make_regression

    rng = np.random.default_rng(seed)
    if task == "regression":
        X, y = make_regression(n_samples=n, n_features=5, n_informative=4, noise=10.0, random_state=seed)
        target = y.round(3)
    else:
        classes = 2 if task == "binary" else 3
        X, y = make_classification(
            n_samples=n,
            n_features=5,
            n_informative=4,
            n_redundant=0,
            n_classes=classes,
            class_sep=1.2,
            random_state=seed,
        )
        target = y if task == "binary" else np.array(["bronze", "gold", "silver"])[y]
    frame = pd.DataFrame(X, columns=[f"signal_{i}" for i in range(5)])
    frame["segment"] = rng.choice(SEGMENTS, n)
    frame["has_contract"] = rng.random(n) < 0.4
    frame["tenure_months"] = rng.integers(0, 120, n)
    frame["event_time"] = pd.Timestamp("2026-03-01") + pd.to_timedelta(
        rng.integers(0, 30 * 24 * 3600, n), "s"
    )
    frame["customer_id"] = [f"c{i:06d}" for i in rng.integers(0, 10**6, n)]
    frame["y"] = target
    return frame.sort_values("event_time").reset_index(drop=True)


def with_gaps(frame: pd.DataFrame, seed: int) -> pd.DataFrame:
    """The same table as a warehouse export often has it: whole numbers as floats, nulls in them."""
    rng = np.random.default_rng(seed)
    out = frame.copy()
    out["tenure_months"] = out["tenure_months"].astype("float64")
    out["has_contract"] = out["has_contract"].astype(object)
    for col in ("tenure_months", "has_contract", "signal_0"):
        out.loc[rng.random(len(out)) < 0.08, col] = None
    return out


def own_spec(
    name: str,
    task: str,
    data: Path,
    fmt: str,
    *,
    framework: str = "sklearn",
    categoricals: bool = True,
    nulls: bool = False,
) -> dict:
    task_name, metric, thresholds, classes = {
        "binary": ("binary_classification", "roc_auc", {"roc_auc": {"min": 0.7}}, [0, 1]),
        "multiclass": (
            "multiclass_classification",
            "macro_f1",
            {"macro_f1": {"min": 0.5}},
            ["bronze", "gold", "silver"],
        ),
        "regression": ("regression", "rmse", {"r2": {"min": 0.5}}, None),
    }[task]
    gaps = {"max_null_fraction": 0.2} if nulls else {}
    features = [
        {"name": f"signal_{i}", "type": "numeric", "min": -50, "max": 50, **(gaps if i == 0 else {})}
        for i in range(5)
    ]
    features += [{"name": "segment", "type": "categorical", "categories": SEGMENTS}] if categoricals else []
    features += [
        {"name": "has_contract", "type": "boolean", **gaps},
        {"name": "tenure_months", "type": "integer", "min": 0, "max": 200, **gaps},
    ]
    training = (
        {"framework": "sklearn", "params": {"max_iter": 60}}
        if framework == "sklearn"
        else {"framework": "torch", "params": {"epochs": 40, "hidden_sizes": [64, 32], "patience": 6}}
    )
    return {
        "name": name,
        "description": f"A {task} model on a team's own table.",
        "owner": {"team": "data-eng", "email": "data-eng@example.com"},
        "task": task_name,
        "risk_tier": "low",
        "data": {"path": str(data), "format": fmt, "min_rows": 500},
        "target": {"name": "y", **({"classes": classes} if classes else {})},
        "time_column": "event_time",
        "entity_id": "customer_id",
        "segment_columns": ["segment"] if categoricals else [],
        "features": features,
        "training": training,
        "evaluation": {
            "primary_metric": metric,
            "bootstrap_samples": 50,
            "gate": {"thresholds": thresholds, "max_drop_vs_champion": 0.5, "min_margin_over_baseline": 0.05},
        },
        "approval": {"policy": "auto", "approvers": ["admin"]},
    }


def checksums(path: Path) -> dict[str, str]:
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    return {str(p): hashlib.sha256(p.read_bytes()).hexdigest() for p in files}


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    """A user's checkout state: their specs, and their data in a folder of their own."""
    root = tmp_path_factory.mktemp("own")
    state, specs, user_data = root / "state", root / "specs", root / "team_data"
    specs.mkdir()
    user_data.mkdir()
    with_gaps(own_frame("multiclass", 2000, seed=6), seed=6).to_csv(user_data / "tiers_gaps.csv", index=False)
    own_frame("regression", 2000, seed=7).to_parquet(user_data / "spend_torch.parquet", index=False)
    for name, task, data, fmt, shape in [
        # PyTorch, one table shape each: categoricals with nulls; neither.
        (
            "tier_torch",
            "multiclass",
            user_data / "tiers_gaps.csv",
            "csv",
            {"framework": "torch", "categoricals": True, "nulls": True},
        ),
        (
            "spend_torch",
            "regression",
            user_data / "spend_torch.parquet",
            "parquet",
            {"framework": "torch", "categoricals": False, "nulls": False},
        ),
    ]:
        (specs / f"{name}.yaml").write_text(
            yaml.safe_dump(own_spec(name, task, data, fmt, **shape), sort_keys=False)
        )
    env = user_env(state, specs)
    return {"state": state, "data": user_data, "env": env, "before": checksums(user_data)}


def cli(project: dict, *args: str) -> subprocess.CompletedProcess:
    res = subprocess.run(
        [sys.executable, "-m", "include.modelops.cli", *args],
        env=project["env"],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=1200,
    )
    return res


def summary(project: dict, model: str) -> dict:
    return json.loads((project["state"] / "runs" / model / "latest_summary.json").read_text())


def assert_champion(res: subprocess.CompletedProcess, model: str, version: int) -> None:
    out = res.stdout
    assert res.returncode == 0, out[-4000:] + res.stderr[-3000:]
    assert f"Outcome: v{version} is the new champion" in out, out[-3000:]
    assert "smoke_serve_bento      success" in out
    assert f"{model}_service:v{version}" in out


def test_run_rejects_a_data_path_that_does_not_exist(project):
    res = cli(project, "run", "--model", "spend_torch", "--data", str(project["data"] / "nope.parquet"))
    assert res.returncode == 2
    assert "no such file or folder" in res.stdout


@pytest.mark.parametrize("model", ["tier_torch", "spend_torch"])
def test_a_torch_model_becomes_champion_on_either_table_shape(project, model):
    res = cli(project, "run", "--model", model)
    assert_champion(res, model, 1)
    task_log = Path(res.stdout.split("(full log: ", 1)[1].split(")", 1)[0]).read_text()
    assert "Torch trainer:" in task_log and "Trained in" in task_log  # the PyTorch trainer ran, to the end
    smoke = summary(project, model)["steps"]["smoke_serve_bento"]["result"]
    assert smoke["ok"] and smoke["max_abs_diff"] <= 1e-5
    assert checksums(project["data"]) == project["before"]


@pytest.mark.parametrize("model", ["tier_torch", "spend_torch"])
def test_every_torch_champion_is_served_and_answers_its_traffic(project, model):
    """`make serve` then `make traffic` on the champion's own holdout: every request answered 200."""
    serve_and_send_traffic(project["env"], project["state"], model)
    assert checksums(project["data"]) == project["before"]


def test_every_process_it_started_is_gone(project):
    leftovers = subprocess.run(["pgrep", "-f", str(project["state"])], capture_output=True, text=True)
    assert leftovers.stdout.split() == []
