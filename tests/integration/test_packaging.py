"""Packaging a registered model as a bento, and serving it: real MLflow store, real BentoML.

Everything lives in this module's tmp folder: BENTOML_HOME, the MLflow SQLite store and
its artifacts, the build contexts. A tiny scikit-learn pipeline is trained on synthetic
rows shaped like the fraud spec, logged the way the trainer logs it, registered, built
into a bento and smoke-served on a free localhost port.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from include.modelops.settings import PROJECT_ROOT
from include.modelops.spec import FeatureType, ModelSpec, load_spec

pytestmark = pytest.mark.integration

SPEC_PATH = PROJECT_ROOT / "include" / "models" / "fraud_detection.yaml"


def synthetic_transactions(spec: ModelSpec, n: int, seed: int) -> pd.DataFrame:
    """Rows that satisfy every feature constraint of ``spec``, with a learnable fraud label."""
    rng = np.random.default_rng(seed)
    data: dict[str, object] = {}
    for feature in spec.features:
        if feature.type == FeatureType.numeric:
            values = rng.uniform(feature.min or 0.0, min(feature.max or 1000.0, 5000.0), n)
            if feature.max_null_fraction > 0:
                values[rng.random(n) < feature.max_null_fraction / 2] = np.nan
            data[feature.name] = values.astype("float64")
        elif feature.type == FeatureType.integer:
            low, high = int(feature.min or 0), int(feature.max or 100)
            data[feature.name] = rng.integers(low, high + 1, n).astype("int64")
        elif feature.type == FeatureType.categorical:
            data[feature.name] = rng.choice(feature.categories, n).astype(object)
        else:
            data[feature.name] = rng.random(n) < 0.2
    frame = pd.DataFrame(data)
    risk = (
        frame["amount"] / 2500
        + frame["merchant_category"].isin(["gaming", "cash_advance"]) * 1.5
        + frame["is_international"] * 1.0
        - 2.5
    )
    frame[spec.target.name] = (rng.random(n) < 1 / (1 + np.exp(-risk))).astype(int)
    return frame


@pytest.fixture(scope="module")
def spec() -> ModelSpec:
    return load_spec(SPEC_PATH)


@pytest.fixture(scope="module")
def state(tmp_path_factory: pytest.TempPathFactory):
    """BENTOML_HOME, MLflow store and state dir in a tmp folder, set before bentoml is imported."""
    root = tmp_path_factory.mktemp("packaging")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MODELOPS_STATE_DIR", str(root / "state"))
        mp.setenv("BENTOML_HOME", str(root / "bentoml"))
        mp.setenv("BENTOML_DO_NOT_TRACK", "True")
        mp.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{root}/mlflow.db")
        mp.setenv("MODELOPS_GIT_COMMIT", "test")
        mp.setenv("MLFLOW_DISABLE_TELEMETRY", "true")
        yield root


@pytest.fixture(scope="module")
def registered(spec: ModelSpec, state: Path):
    """Train, log and register a pipeline as the sklearn trainer does; return its URI and holdout."""
    import mlflow
    import mlflow.sklearn
    from mlflow.models import infer_signature
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline, make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    from include.modelops.scoring import feature_frame, score

    frame = synthetic_transactions(spec, 600, seed=7)
    train, holdout = frame.iloc[:500], frame.iloc[500:].reset_index(drop=True)
    holdout.loc[0, "distance_from_home_km"] = np.nan  # a null must survive the round trip
    x_train = feature_frame(spec, train)

    pipeline = Pipeline(
        [
            (
                "features",
                ColumnTransformer(
                    [
                        (
                            "numeric",
                            make_pipeline(SimpleImputer(strategy="median"), StandardScaler()),
                            spec.numeric_features,
                        ),
                        ("categorical", OneHotEncoder(handle_unknown="ignore"), spec.categorical_features),
                        ("boolean", "passthrough", spec.boolean_features),
                    ]
                ),
            ),
            ("model", LogisticRegression(max_iter=500)),
        ]
    ).fit(x_train, train[spec.target.name])

    # Both URIs: an earlier test in this session may have pointed the registry at the shared stack.
    mlflow.set_tracking_uri(f"sqlite:///{state}/mlflow.db")
    mlflow.set_registry_uri(f"sqlite:///{state}/mlflow.db")
    experiment_id = mlflow.create_experiment(
        "packaging-test", artifact_location=(state / "artifacts").as_uri()
    )
    with mlflow.start_run(experiment_id=experiment_id):
        info = mlflow.sklearn.log_model(
            pipeline,
            name="model",
            signature=infer_signature(x_train, pipeline.predict_proba(x_train)),
            input_example=x_train.head(3),
            pyfunc_predict_fn="predict_proba",
            # MLflow 3 saves sklearn models with skops, which refuses types it does not
            # know; OneHotEncoder's dtype parameter is one.
            skops_trusted_types=["numpy.dtype"],
        )
    version = mlflow.register_model(info.model_uri, spec.name).version
    model_uri = f"models:/{spec.name}/{version}"
    expected = score(spec, mlflow.pyfunc.load_model(model_uri), holdout)
    return {"version": str(version), "model_uri": model_uri, "holdout": holdout, "expected": expected}


@pytest.fixture(scope="module")
def built(spec: ModelSpec, registered: dict, state: Path):
    from include.modelops.packaging import build_bento

    started = time.perf_counter()
    tag = build_bento(spec, registered["version"], registered["model_uri"])
    return {"tag": tag, "build_s": time.perf_counter() - started}


@pytest.fixture(scope="module")
def smoke_report(spec: ModelSpec, registered: dict, built: dict):
    from include.modelops.packaging import request_rows, smoke_serve

    rows = request_rows(spec, registered["holdout"])
    assert rows[0]["distance_from_home_km"] is None
    return smoke_serve(spec, built["tag"], rows, registered["expected"].tolist(), timeout_s=180)


def test_bento_is_tagged_and_labelled_with_the_model_version(spec, registered, built):
    import bentoml

    from include.modelops.packaging import bento_tag

    version = registered["version"]
    assert built["tag"] == bento_tag(spec.name, version) == f"fraud_detection_service:v{version}"
    bento = bentoml.bentos.get(built["tag"])
    labels = bento.info.labels
    assert labels["model"] == spec.name
    assert labels["model_version"] == registered["version"]
    assert labels["spec_hash"] == spec.spec_hash()
    assert labels["mlflow_model_uri"] == registered["model_uri"]
    assert [str(m.tag) for m in bento.info.all_models] == [f"fraud_detection:v{registered['version']}"]
    src = Path(bento.path) / "src"
    assert (src / "include" / "modelops" / "scoring.py").exists()
    assert json.loads((src / "bento_model.json").read_text())["spec"]["name"] == spec.name
    requirements = (Path(bento.path) / "env" / "python" / "requirements.txt").read_text()
    assert "scikit-learn==" in requirements and "mlflow==" in requirements


def test_building_twice_reuses_the_bento_and_the_model(spec, registered, built, caplog):
    import bentoml

    from include.modelops.packaging import build_bento, import_model

    created = bentoml.bentos.get(built["tag"]).info.creation_time
    with caplog.at_level(logging.INFO, logger="include.modelops.packaging"):
        started = time.perf_counter()
        again = build_bento(spec, registered["version"], registered["model_uri"])
        rebuild_s = time.perf_counter() - started
    assert again == built["tag"]
    assert bentoml.bentos.get(again).info.creation_time == created
    assert "reusing it" in caplog.text
    model_tag = import_model(spec.name, registered["version"], registered["model_uri"])
    assert model_tag == f"fraud_detection:v{registered['version']}"
    print(f"\nbuild {built['build_s']:.1f} s, idempotent rebuild {rebuild_s:.1f} s")


def test_served_scores_equal_offline_scores(smoke_report):
    print(
        f"\nstartup {smoke_report['startup_s']:.1f} s,"
        f" single-row latency p50 {smoke_report['latency_ms_p50']} ms,"
        f" p95 {smoke_report['latency_ms_p95']} ms, max |diff| {smoke_report['max_abs_diff']:.2e}"
    )
    assert smoke_report["ok"], smoke_report["errors"]
    assert smoke_report["rows"] == 100
    assert smoke_report["max_abs_diff"] <= 1e-6
    json.dumps(smoke_report)  # goes to XCom and an artifact as is


def test_invalid_request_gets_400_naming_the_field(smoke_report):
    assert smoke_report["invalid_request_status"] == 400
    assert smoke_report["invalid_request_field"] == "amount"
    locations = [error["loc"] for error in smoke_report["invalid_request_detail"]["detail"]]
    assert any("amount" in loc for loc in locations), locations


def test_service_exposes_prometheus_metrics(smoke_report):
    assert smoke_report["metrics_ok"]


def test_skewed_scores_fail_the_check(smoke_report):
    from include.modelops.packaging import TrainServeSkewError, check_smoke_report

    check_smoke_report(smoke_report)  # the real report passes
    skewed = {**smoke_report, "ok": False, "max_abs_diff": 0.03}
    expected_message = r"(?s)fraud_detection_service:v\d+.*0\.03.*tolerance 1e-06"
    with pytest.raises(TrainServeSkewError, match=expected_message):
        check_smoke_report(skewed)


def test_changed_inputs_under_the_same_version_rebuild_the_bento(spec, registered, built, caplog):
    """Runs last: it replaces the module's bento, then builds the original back."""
    import bentoml

    from include.modelops.packaging import build_bento

    stricter = spec.model_copy(
        update={"evaluation": spec.evaluation.model_copy(update={"decision_threshold": 0.9})}
    )
    with caplog.at_level(logging.INFO, logger="include.modelops.packaging"):
        tag = build_bento(stricter, registered["version"], registered["model_uri"])
    assert tag == built["tag"]
    assert "rebuilding it" in caplog.text
    labels = bentoml.bentos.get(tag).info.labels
    assert labels["spec_hash"] == stricter.spec_hash() != spec.spec_hash()
    build_bento(spec, registered["version"], registered["model_uri"])
    assert bentoml.bentos.get(tag).info.labels["spec_hash"] == spec.spec_hash()
