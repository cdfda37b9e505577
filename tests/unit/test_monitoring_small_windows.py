"""Small windows do not retrain a model on noise: a live metric on few labels carries its bootstrap
interval and needs enough labelled positives before it can trigger, and a window too small for a
drift verdict reports its drift without triggering. Large windows keep their triggers."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pytest

from include.modelops.monitoring.drift import drift_report, live_performance
from include.modelops.monitoring.policy import Decision, PolicyContext, WindowFigures, decide
from include.modelops.monitoring.window import LABEL_COLUMN, load_window
from include.modelops.pipelines import monitoring as steps
from include.modelops.spec import ModelSpec
from tests.monitoring_traffic import write_predictions

COUNTRIES = [f"c{i:02d}" for i in range(40)]
COUNTRY_P = (1.0 / np.arange(1, 41)) / (1.0 / np.arange(1, 41)).sum()  # a long tail, as countries have
LINES = ["books", "toys", "garden", "kitchen", "sport", "music"]
SPEC = ModelSpec.model_validate(
    {
        "name": "shop_returns",
        "description": "Whether an order is returned.",
        "owner": {"team": "t", "email": "t@example.com"},
        "task": "binary_classification",
        "data": {"path": "unused.parquet"},
        "target": {"name": "returned", "classes": [0, 1]},
        "features": [
            {"name": "basket_value", "type": "numeric"},
            {"name": "delivery_km", "type": "numeric"},
            {"name": "items", "type": "integer"},
            {"name": "hour", "type": "integer"},
            {"name": "country", "type": "categorical", "categories": COUNTRIES},
            {"name": "product_line", "type": "categorical", "categories": LINES},
            {"name": "payment", "type": "categorical", "categories": ["card", "invoice", "wallet"]},
            {"name": "is_member", "type": "boolean"},
        ],
        "evaluation": {"primary_metric": "roc_auc", "bootstrap_samples": 100},
    }
)
T0 = datetime(2026, 3, 2, tzinfo=UTC)


def orders(n: int, seed: int, *, drift: bool = False, positive_rate: float = 0.015) -> pd.DataFrame:
    """Orders of the training distribution (``drift``: dearer, farther, other countries and lines)."""
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "basket_value": rng.lognormal(np.log(40), 0.7, n) * (2.5 if drift else 1.0),
            "delivery_km": rng.gamma(2.0, 150 if drift else 30, n),
            "items": rng.poisson(6 if drift else 3, n),
            "hour": rng.integers(0, 24, n),
            "country": rng.choice(COUNTRIES, n, p=COUNTRY_P[::-1] if drift else COUNTRY_P),
            "product_line": rng.choice(LINES, n, p=[0.5, 0.3, 0.05, 0.05, 0.05, 0.05] if drift else None),
            "payment": rng.choice(["card", "invoice", "wallet"], n, p=[0.6, 0.3, 0.1]),
            "is_member": rng.random(n) < 0.4,
            "returned": (rng.random(n) < positive_rate).astype("int64"),
        }
    )


@pytest.fixture(autouse=True)
def inference_log(tmp_path, monkeypatch):
    monkeypatch.setenv("MODELOPS_INFERENCE_LOG_URL", str(tmp_path / "inference_log"))


def labelled_window(
    n: int, *, positive_rate: float, seed: int, separation: float = 1.5, invert: bool = False
) -> pd.DataFrame:
    """A window's rows with the model's scores and the labels that arrived; ``invert``: a broken model."""
    rows = orders(n, seed=seed, positive_rate=positive_rate)
    y = rows.pop("returned").to_numpy()
    rng = np.random.default_rng(seed + 1)
    logit = np.log(positive_rate / (1 - positive_rate)) + separation * ((1 - y) if invert else y)
    rows["score"] = 1 / (1 + np.exp(-(logit + rng.standard_normal(n))))
    rows[LABEL_COLUMN] = y
    return rows


def decision_for(
    spec: ModelSpec,
    rows: pd.DataFrame,
    *,
    offline: float | None = None,
    drift: dict | None = None,
    status: str = "checked",
) -> tuple[Decision, dict]:
    """The window's figures as ``monitor_window`` publishes them, then the policy's decision on them."""
    perf = live_performance(spec, rows, label_column=LABEL_COLUMN, offline=offline) if offline else None
    summary = {
        "rows": len(rows),
        "labelled_rows": int(rows[LABEL_COLUMN].notna().sum()) if LABEL_COLUMN in rows else 0,
        "skipped_files": [],
        "status": status,
        "drift": drift,
        "quality": None,
        "performance": perf,
    }
    figures = steps._figures(summary)
    fig = WindowFigures.from_figures(
        f"{T0.isoformat()}/{(T0 + timedelta(days=1)).isoformat()}", T0 + timedelta(days=1), figures
    )
    return decide(spec.monitoring, fig, PolicyContext(now=T0 + timedelta(days=1))), figures


def with_monitoring(**update) -> ModelSpec:
    return SPEC.model_copy(update={"monitoring": SPEC.monitoring.model_copy(update=update)})


def clean_window_just_past_the_threshold() -> tuple[pd.DataFrame, float, float]:
    """2,000 rows, about 30 positives, a sound model; the offline value is set so that noise alone puts
    the point drop just past the 0.05 threshold (what a clean small window does)."""
    rows = labelled_window(2000, positive_rate=0.015, seed=26)  # 30 positives
    live = live_performance(SPEC, rows, label_column=LABEL_COLUMN, offline=None)["live"]
    return rows, live, live + 0.055


def test_live_metric_carries_a_seeded_interval_around_its_point_value():
    rows, live, offline = clean_window_just_past_the_threshold()
    perf = live_performance(SPEC, rows, label_column=LABEL_COLUMN, offline=offline)
    assert perf["ci_low"] < perf["live"] < perf["ci_high"]
    assert perf["ci_high"] - perf["ci_low"] > 0.05, "30 positives leave the roc_auc wide open"
    assert perf["drop_least"] == pytest.approx(offline - perf["ci_high"], abs=1e-6)
    assert perf["rarest_class"] == 30 and perf["rarest_class"] == int(rows[LABEL_COLUMN].sum())
    again = live_performance(SPEC, rows, label_column=LABEL_COLUMN, offline=offline)
    assert (again["ci_low"], again["ci_high"]) == (perf["ci_low"], perf["ci_high"]), (
        "seeded: the same interval"
    )


def test_clean_window_with_30_positives_near_the_threshold_does_not_retrain():
    rows, live, offline = clean_window_just_past_the_threshold()
    d, figures = decision_for(SPEC, rows, offline=offline)
    assert figures["metric_drop"] >= SPEC.monitoring.metric_drop_threshold, (
        "the point drop alone would trigger"
    )
    assert d.outcome == "no_action" and not d.triggered
    assert "monitoring.min_labelled_positives_for_metric is 50" in d.reason
    assert f"{figures['labelled_rarest_class']} labelled rows of the rarest class" in d.reason


def test_interval_reaching_within_the_threshold_does_not_retrain_even_with_enough_positives():
    rows, live, offline = clean_window_just_past_the_threshold()
    d, figures = decision_for(with_monitoring(min_labelled_positives_for_metric=10), rows, offline=offline)
    assert figures["metric_drop"] >= 0.05 and figures["metric_drop_least"] < 0.05
    assert d.outcome == "no_action" and not d.triggered
    assert "95% interval" in d.reason and "not a trigger" in d.reason


def test_truly_broken_model_with_enough_positives_still_retrains():
    rows = labelled_window(
        2000, positive_rate=0.1, seed=12, invert=True
    )  # ~200 positives, scores upside down
    d, figures = decision_for(SPEC, rows, offline=0.85)
    assert figures["labelled_rarest_class"] >= 50 and figures["metric_drop_least"] >= 0.05
    assert d.outcome == "retrain" and d.triggers == ["performance"]
    assert "95% interval" in d.reason and "at least" in d.reason


def test_without_an_interval_the_point_drop_decides_as_before():
    rows, live, offline = clean_window_just_past_the_threshold()
    spec = with_monitoring(min_labelled_positives_for_metric=10, metric_bootstrap_samples=0)
    d, figures = decision_for(spec, rows, offline=offline)
    assert "metric_drop_least" not in figures
    assert d.outcome == "retrain" and d.triggers == ["performance"]


def replay(n: int, seed: int, tmp_path, *, drift: bool = False) -> tuple[Decision, dict]:
    """``n`` rows logged as one day's traffic, read back as the monitoring DAG reads its window,
    compared with a 20,000-row reference of the training distribution, then decided."""
    write_predictions(
        SPEC.name, orders(n, seed=seed, drift=drift).drop(columns=["returned"]), T0 + timedelta(hours=2)
    )
    w = load_window(SPEC.name, T0, T0 + timedelta(days=1))
    assert len(w.rows) == n
    report = drift_report(SPEC, orders(20_000, seed=1), w.rows, out_dir=tmp_path / "report")
    return decision_for(SPEC, w.rows, drift=report)


def test_small_clean_replay_reports_its_drift_but_does_not_retrain(tmp_path):
    d, figures = replay(200, seed=1003, tmp_path=tmp_path)
    assert figures["drift_share"] >= SPEC.monitoring.drift_share_threshold, (
        "on 200 rows Evidently's distances flag clean traffic (why the minimum exists)"
    )
    assert d.outcome == "no_action" and not d.triggered
    assert "200 rows, monitoring.min_rows_for_drift is 1000" in d.reason
    assert d.notes and "cannot trigger" in d.notes[0]


def test_genuinely_drifted_large_window_still_retrains(tmp_path):
    d, figures = replay(3000, seed=7, tmp_path=tmp_path, drift=True)
    assert figures["drift_share"] >= 0.5
    assert d.outcome == "retrain" and d.triggers == ["drift"]
    assert "min_rows_for_drift" not in d.reason
