"""The drift report of a window read from the real inference log: Evidently's per-feature
verdicts, prediction drift, data quality against the spec, live performance."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from include.modelops.monitoring.drift import data_quality, drift_report, live_performance
from include.modelops.monitoring.window import LABEL_COLUMN, load_window
from tests.monitoring_traffic import fraud_rows, write_labels, write_predictions

START = datetime(2026, 3, 2, tzinfo=UTC)
END = START + timedelta(days=1)


@pytest.fixture(autouse=True)
def inference_log(tmp_path, monkeypatch):
    monkeypatch.setenv("MODELOPS_INFERENCE_LOG_URL", str(tmp_path / "inference_log"))
    return tmp_path / "inference_log"


def test_window_reads_features_unprefixed_and_joins_arrived_labels():
    rows = fraud_rows(1200, seed=1)
    keys = write_predictions("fraud_detection", rows, START + timedelta(hours=3))
    write_predictions("fraud_detection", rows.head(300), END + timedelta(hours=1))  # next window
    write_predictions("fraud_detection", rows.head(200), START + timedelta(hours=4), variant="canary")
    write_labels("fraud_detection", keys[:400], rows["is_fraud"].to_numpy()[:400], START + timedelta(hours=5))
    w = load_window("fraud_detection", START, END)
    assert len(w.rows) == 1200, "only the stable variant's rows inside [start, end)"
    assert {"amount", "channel", "is_international"} <= set(w.rows.columns)
    assert not any(c.startswith("feature.") for c in w.rows.columns)
    assert w.labelled_rows == 400
    assert w.rows[LABEL_COLUMN].dropna().astype(int).tolist() == rows["is_fraud"].head(400).tolist()


def test_window_without_drift_has_no_drifted_feature(reference_spec, tmp_path):
    write_predictions("fraud_detection", fraud_rows(3000, seed=2), START + timedelta(hours=2))
    w = load_window("fraud_detection", START, END)
    report = drift_report(reference_spec, fraud_rows(5000, seed=3), w.rows, out_dir=tmp_path / "r")
    assert report["top"] == [] and report["share"] == 0.0
    assert set(report["columns"]) == set(reference_spec.feature_names)
    assert (tmp_path / "r" / "drift_report.html").stat().st_size > 10_000


def test_drifted_window_names_the_drifted_features_most_drifted_first(reference_spec, tmp_path):
    write_predictions(
        "fraud_detection",
        fraud_rows(3000, seed=4, drift=True),
        START + timedelta(hours=2),
        scores=np.random.default_rng(1).beta(5, 2, 3000),
    )
    w = load_window("fraud_detection", START, END)
    ref = fraud_rows(5000, seed=3)
    report = drift_report(
        reference_spec,
        ref,
        w.rows,
        out_dir=tmp_path / "r",
        reference_predictions=np.random.default_rng(2).random(len(ref)),
    )
    assert set(report["top"]) == {
        "amount",
        "channel",
        "distance_from_home_km",
        "card_age_days",
        "is_international",
    }
    assert report["share"] == pytest.approx(0.5)
    sev = [report["columns"][c]["severity"] for c in report["top"]]
    assert sev == sorted(sev, reverse=True) and sev[-1] > 1
    assert report["prediction"]["drifted"] is True and report["prediction"]["column"] == "score"


def test_per_feature_method_and_threshold_come_from_the_spec(reference_spec, tmp_path):
    from include.modelops.spec import FeatureDrift

    mon = reference_spec.monitoring.model_copy(
        update={
            "feature_drift": {
                "amount": FeatureDrift(method="psi", threshold=50.0),
                "channel": FeatureDrift(method="chisquare"),
            }
        }
    )
    spec = reference_spec.model_copy(update={"monitoring": mon})
    cur = fraud_rows(3000, seed=4, drift=True)
    report = drift_report(spec, fraud_rows(5000, seed=3), cur, out_dir=tmp_path / "r")
    assert report["columns"]["amount"]["method"] == "psi" and report["columns"]["amount"]["threshold"] == 50.0
    assert report["columns"]["amount"]["drifted"] is False, "a very tolerant threshold keeps amount in bounds"
    assert report["columns"]["channel"]["method"] == "chisquare"
    assert report["columns"]["merchant_category"]["method"] == "jensenshannon", (
        "Evidently's choice above 1000 rows"
    )
    assert "amount" not in report["top"] and "channel" in report["top"]


def test_data_quality_names_out_of_range_unseen_and_missing(reference_spec):
    cur = fraud_rows(1000, seed=5)
    cur.loc[:99, "amount"] = -5.0
    cur.loc[:49, "channel"] = "kiosk"
    cur.loc[:199, "distance_from_home_km"] = None
    q = data_quality(reference_spec, cur)
    assert not q["passed"]
    assert "amount: 10.0% of rows outside [0.0, 50000.0]" in q["failures"]
    assert "channel: 5.0% of rows unseen categories 'kiosk'" in q["failures"]
    assert "distance_from_home_km: 20.0% missing (allowed 5.0%)" in q["failures"]
    assert data_quality(reference_spec, fraud_rows(1000, seed=6))["passed"]


def test_live_performance_against_the_offline_value(reference_spec):
    rows = fraud_rows(2000, seed=7)
    y = rows["is_fraud"].to_numpy()
    rows["score"] = np.random.default_rng(3).random(len(rows))  # a model that lost its signal
    rows[LABEL_COLUMN] = y
    perf = live_performance(reference_spec, rows, label_column=LABEL_COLUMN, offline=0.86)
    assert perf["metric"] == "roc_auc" and perf["labelled_rows"] == 2000
    assert 0.4 < perf["live"] < 0.6 and perf["drop"] == pytest.approx(0.86 - perf["live"])
    rows[LABEL_COLUMN] = None
    assert live_performance(reference_spec, rows, label_column=LABEL_COLUMN, offline=0.86) is None


def test_empty_window_and_corrupt_file(inference_log):
    w = load_window("fraud_detection", START, END)
    assert w.rows.empty and w.skipped_files == []
    write_predictions("fraud_detection", fraud_rows(500, seed=8), START + timedelta(hours=1))
    bad = inference_log / "predictions" / "model=fraud_detection" / "hour=2026-03-02T01" / "part-torn.parquet"
    bad.write_bytes(b"PAR1 not really parquet")
    w = load_window("fraud_detection", START, END)
    assert len(w.rows) == 500 and len(w.skipped_files) == 1 and "part-torn.parquet" in w.skipped_files[0]


def test_labelled_window_becomes_training_rows_in_the_datas_shape(reference_spec, tmp_path):
    from include.modelops.monitoring.window import labelled_training_rows, read_labelled_window

    rows = fraud_rows(600, seed=9)
    keys = write_predictions("fraud_detection", rows, START + timedelta(hours=2))
    write_labels("fraud_detection", keys[:250], rows["is_fraud"].to_numpy()[:250], START + timedelta(hours=2))
    w = load_window("fraud_detection", START, END)
    train_rows = labelled_training_rows(reference_spec, w.rows)
    assert len(train_rows) == 250, "only rows whose label arrived"
    assert list(train_rows.columns) == [*reference_spec.feature_names, "is_fraud", reference_spec.time_column]
    assert train_rows["is_fraud"].astype(int).tolist() == rows["is_fraud"].head(250).tolist()
    train_rows.to_parquet(tmp_path / "labelled.parquet", index=False)
    like = rows.assign(**{reference_spec.time_column: START.replace(tzinfo=None)}).head(3)
    back = read_labelled_window(
        reference_spec, str(tmp_path / "labelled.parquet"), tmp_path / "dl", like=like
    )
    assert back.dtypes.to_dict() == like[list(back.columns)].dtypes.to_dict()
    with pytest.raises(FileNotFoundError, match="does not exist"):
        read_labelled_window(reference_spec, str(tmp_path / "nope.parquet"), tmp_path / "dl", like=like)


def test_large_window_is_compared_on_a_sample_with_the_same_verdicts(reference_spec, tmp_path):
    sampled = reference_spec.model_copy(
        update={"monitoring": reference_spec.monitoring.model_copy(update={"drift_sample_rows": 1500})}
    )
    ref, cur = fraud_rows(5000, seed=3), fraud_rows(6000, seed=5, drift=True)
    full = drift_report(reference_spec, ref, cur, out_dir=tmp_path / "full")
    part = drift_report(sampled, ref, cur, out_dir=tmp_path / "part")
    assert (full["rows"], full["rows_compared"]) == (6000, 6000)
    assert (part["rows"], part["rows_compared"]) == (6000, 1500)
    assert set(part["top"]) == set(full["top"]) and part["top"]


# Every method the spec accepts, by the feature types it applies to (z: two categories).
# empirical_mmd (seconds per column) falls in one round only.
NUMERIC_METHODS = [
    "anderson",
    "cramer_von_mises",
    "ed",
    "es",
    "hellinger",
    "jensenshannon",
    "empirical_mmd",
    "kl_div",
    "ks",
    "mannw",
    "psi",
    "t_test",
    "wasserstein",
]
CATEGORY_METHODS = ["chisquare", "hellinger", "jensenshannon", "kl_div", "psi", "TVD"]
BINARY_METHODS = ["z", "jensenshannon", "chisquare"]


def evidently_test_verdicts(spec, reference, current, *, predictions=None):
    """Drifted flag per column from Evidently's own drift tests (``include_tests=True``), with the
    categoricals handed over as strings: how the step read its verdicts before."""
    from evidently import DataDefinition, Dataset, Report
    from evidently.metrics import ValueDrift
    from evidently.presets import DataDriftPreset

    numeric = [f.name for f in spec.features if f.type.value in ("numeric", "integer")]
    categorical = [f.name for f in spec.features if f.name not in numeric]
    frames = []
    for df, scores in (
        (reference, predictions and predictions[0]),
        (current, predictions and predictions[1]),
    ):
        out = df[spec.feature_names].copy()
        out[numeric] = out[numeric].astype("float64")
        out[categorical] = out[categorical].astype(str)
        if scores is not None:
            out["score"] = scores
        frames.append(out)
    m = spec.monitoring
    metrics = [
        DataDriftPreset(
            columns=spec.feature_names,
            method=m.drift_method,
            threshold=m.drift_threshold,
            per_column_method={f: o.method for f, o in m.feature_drift.items() if o.method} or None,
            per_column_threshold={f: o.threshold for f, o in m.feature_drift.items() if o.threshold} or None,
        )
    ]
    if predictions is not None:
        metrics.append(ValueDrift(column="score"))
    definition = DataDefinition(
        numerical_columns=numeric + (["score"] if predictions is not None else []),
        categorical_columns=categorical,
    )
    np.random.seed(0)  # empirical_mmd permutes with numpy's global generator
    snap = Report(metrics, include_tests=True).run(
        Dataset.from_pandas(frames[1], data_definition=definition),
        Dataset.from_pandas(frames[0], data_definition=definition),
    )
    return {
        t["metric_config"]["params"]["column"]: t["status"] == "FAIL"
        for t in snap.dict()["tests"]
        if t.get("id") == "drift"
    }


def _with_methods(spec, methods: dict[str, str], thresholds: dict[str, float] | None = None):
    from include.modelops.spec import FeatureDrift

    thresholds = thresholds or {}
    drift = {
        f: FeatureDrift(method=methods.get(f), threshold=thresholds.get(f)) for f in {*methods, *thresholds}
    }
    return spec.model_copy(update={"monitoring": spec.monitoring.model_copy(update={"feature_drift": drift})})


def _step(spec, ref, cur, out_dir, **kwargs):
    np.random.seed(0)  # the same draws as the oracle's run, for empirical_mmd
    return drift_report(spec, ref, cur, out_dir=out_dir, **kwargs)


@pytest.mark.parametrize("round_", [0, 1, 2])
def test_verdicts_without_evidently_tests_match_its_tests_for_every_method(reference_spec, tmp_path, round_):
    """Numeric and categorical features, drifted and stable, p-value and distance methods; then the
    same with each threshold set to the column's own score, where the methods' rules differ
    (ks and Cramer-von Mises drift at their threshold, the other p-values only below it; the
    distances drift at it, energy distance only above)."""
    from include.modelops.monitoring.drift import DRIFT_RULES
    from include.modelops.spec import DRIFT_METHODS

    assert set(NUMERIC_METHODS + CATEGORY_METHODS + BINARY_METHODS) == set(DRIFT_RULES) == DRIFT_METHODS
    feats = reference_spec.features
    numeric = [f.name for f in feats if f.type.value in ("numeric", "integer")]
    categorical = [f.name for f in feats if f.type.value == "categorical"]
    methods = {
        f: NUMERIC_METHODS[(len(numeric) * round_ + j) % len(NUMERIC_METHODS)] for j, f in enumerate(numeric)
    }
    methods |= {
        f: CATEGORY_METHODS[(len(categorical) * round_ + j) % len(CATEGORY_METHODS)]
        for j, f in enumerate(categorical)
    }
    methods["is_international"] = BINARY_METHODS[round_]
    ref, cur = fraud_rows(500, seed=3), fraud_rows(400, seed=4, drift=True)

    spec = _with_methods(reference_spec, methods)
    report = _step(spec, ref, cur, tmp_path / "a")
    verdicts = {c: e["drifted"] for c, e in report["columns"].items()}
    assert verdicts == evidently_test_verdicts(spec, ref, cur)
    assert {c: e["method"] for c, e in report["columns"].items()} == methods
    assert any(verdicts.values()) and not all(verdicts.values())
    assert {c for c in numeric if verdicts[c]} and {c for c in numeric if not verdicts[c]}
    assert {c for c in [*categorical, "is_international"] if verdicts[c]}

    at_score = {c: e["score"] for c, e in report["columns"].items() if e["score"] > 0}
    spec = _with_methods(reference_spec, methods, at_score)
    report = _step(spec, ref, cur, tmp_path / "b")
    assert {c: report["columns"][c]["score"] for c in at_score} == at_score, "same data, same scores"
    verdicts = {c: e["drifted"] for c, e in report["columns"].items()}
    assert verdicts == evidently_test_verdicts(spec, ref, cur)
    for c in at_score:
        assert verdicts[c] == (
            methods[c]
            in {"ks", "cramer_von_mises", "hellinger", "jensenshannon", "kl_div", "psi", "wasserstein"}
        ), (c, methods[c])


def test_verdicts_with_evidentlys_own_method_choice_match_its_tests(reference_spec, tmp_path):
    ref, cur = fraud_rows(5000, seed=3), fraud_rows(3000, seed=4, drift=True)
    preds = (np.random.default_rng(2).random(len(ref)), np.random.default_rng(1).beta(5, 2, len(cur)))
    report = _step(
        reference_spec, ref, cur.assign(score=preds[1]), tmp_path / "r", reference_predictions=preds[0]
    )
    verdicts = {c: e["drifted"] for c, e in report["columns"].items()} | {
        "score": report["prediction"]["drifted"]
    }
    assert verdicts == evidently_test_verdicts(reference_spec, ref, cur, predictions=preds)
    assert {e["method"] for e in report["columns"].values()} == {"wasserstein", "jensenshannon"}
    assert report["top"] and len(report["top"]) < len(reference_spec.feature_names)
