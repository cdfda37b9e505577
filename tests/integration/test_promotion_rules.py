"""Promotion rules with real training, a real Airflow (`airflow dags test`) and a real MLflow server."""

from __future__ import annotations

import numpy as np
import pytest

from include.modelops.data.reading import read_dataset
from tests.integration.conftest import write_test_spec

pytestmark = pytest.mark.integration


def _label_noise(df, mask, seed):
    out = df.copy()
    out.loc[mask, "is_fraud"] = np.random.default_rng(seed).permutation(out.loc[mask, "is_fraud"].to_numpy())
    return out


def test_candidate_better_overall_but_worse_on_one_slice_is_rejected_naming_it(stack):
    write_test_spec(
        stack.specs_dir,
        stack.data_dir,
        name="fraud_slices",
        evaluation={
            "primary_metric": "roc_auc",
            "bootstrap_samples": 100,
            "gate": {
                "thresholds": {"roc_auc": {"min": 0.7}},
                "max_drop_vs_champion": 0.005,
                "min_margin_over_baseline": 0.1,
                "slices": {"max_drop_vs_champion": 0.05, "max_gap": None, "min_rows": 200},
            },
        },
    )
    df = read_dataset(stack.data_dir).sort_values("event_time").reset_index(drop=True)
    train = (df["event_time"] <= df["event_time"].quantile(0.8)).to_numpy()  # the holdout stays clean
    south = (df["region"] == "south").to_numpy()
    rng = np.random.default_rng(0)
    # Champion: noisy labels everywhere but the south region, so it is weak overall and strong in south.
    champion_data = _label_noise(df, train & ~south & (rng.random(len(df)) < 0.7), seed=1)
    # Candidate: clean labels except in the south region, so it is better overall and worse in south.
    candidate_data = _label_noise(df, train & south, seed=2)
    for name, frame in (("champion", champion_data), ("candidate", candidate_data)):
        (stack.state_dir / "data" / f"slices_{name}").mkdir(parents=True, exist_ok=True)
        frame.to_parquet(stack.state_dir / "data" / f"slices_{name}" / "part-0000.parquet", index=False)

    first = stack.run_dag(
        "fraud_slices_training",
        {"data_path": str(stack.state_dir / "data" / "slices_champion")},
        model="fraud_slices",
    )
    assert first["rc"] == 0, first["log"][-3000:]
    champion = stack.alias("champion", model="fraud_slices")
    assert champion is not None

    second = stack.run_dag(
        "fraud_slices_training",
        {"data_path": str(stack.state_dir / "data" / "slices_candidate")},
        model="fraud_slices",
    )

    assert second["rc"] == 0, second["log"][-3000:]
    evaluated = second["steps"]["evaluate_candidate"]["result"]
    assert evaluated["passed"] is False
    import json
    from pathlib import Path

    decision = json.loads(Path(evaluated["decision_path"]).read_text())
    checks = {c["name"]: c for c in decision["checks"]}
    overall = [c for name, c in checks.items() if "champion" in name and "slice" not in name]
    assert overall and all(c["passed"] for c in overall), overall  # better overall...
    south = [c for name, c in checks.items() if "region=south" in name]
    assert south and not south[0]["passed"], checks.keys()  # ...but worse in south
    assert "region=south" in evaluated["summary"]
    assert stack.alias("champion", model="fraud_slices") == champion


def test_high_risk_model_without_intended_use_is_blocked_naming_the_section(stack):
    write_test_spec(
        stack.specs_dir,
        stack.data_dir,
        name="fraud_high_risk",
        risk_tier="high",
        intended_use="",
        approval={"policy": "manual", "approvers": ["risk_lead", "cro"], "timeout_hours": 1},
    )

    run = stack.run_dag("fraud_high_risk_training", model="fraud_high_risk")

    assert run["rc"] != 0
    assert run["failed_steps"] == ["approve"]
    assert "cannot be promoted" in run["log"] and "intended_use" in run["log"]
    assert run["steps"]["approve_2"]["state"] == "upstream_failed"  # high risk: two approvals wired
    assert stack.alias("champion", model="fraud_high_risk") is None
    card = run["steps"]["generate_model_card"]["result"]
    assert any("intended_use" in m for m in card["missing_evidence"])
