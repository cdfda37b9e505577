"""Packaging a registered model as a bento, and serving it: real MLflow store, real BentoML.

Everything lives in this module's tmp folder: BENTOML_HOME, the MLflow SQLite store and
its artifacts, the build contexts. A tiny scikit-learn pipeline is trained on synthetic
rows shaped like the fraud spec, logged the way the trainer logs it, registered, built
into a bento (fixtures ``spec``, ``state``, ``registered``, ``built`` in conftest.py) and
smoke-served on a free localhost port.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import pytest

from include.modelops.spec import ModelSpec

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def smoke_report(spec: ModelSpec, registered: dict, built: dict):
    from include.modelops.serving.contract import request_rows
    from include.modelops.serving.smoke import smoke_serve

    rows = request_rows(spec, registered["holdout"])
    assert rows[0]["distance_from_home_km"] is None
    return smoke_serve(spec, built["tag"], rows, registered["expected"].tolist(), timeout_s=180)


def test_bento_is_tagged_and_labelled_with_the_model_version(spec, registered, built):
    import bentoml

    from include.modelops.serving.bento import bento_tag

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


def test_bento_of_a_sklearn_model_carries_no_torch_or_pytest(built):
    import bentoml

    requirements = (
        Path(bentoml.bentos.get(built["tag"]).path) / "env" / "python" / "requirements.txt"
    ).read_text()
    names = {line.split("==", 1)[0].strip().lower() for line in requirements.splitlines() if line.strip()}
    assert "scikit-learn" in names
    assert "torch" not in names and "pytest" not in names, requirements


def test_building_twice_reuses_the_bento_and_the_model(spec, registered, built, caplog):
    import bentoml

    from include.modelops.serving.bento import build_bento, import_model

    created = bentoml.bentos.get(built["tag"]).info.creation_time
    with caplog.at_level(logging.INFO, logger="include.modelops.serving.bento"):
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
    from include.modelops.serving.smoke import TrainServeSkewError, check_smoke_report

    check_smoke_report(smoke_report)  # the real report passes
    skewed = {**smoke_report, "ok": False, "max_abs_diff": 0.03}
    expected_message = r"(?s)fraud_detection_service:v\d+.*0\.03.*tolerance 1e-06"
    with pytest.raises(TrainServeSkewError, match=expected_message):
        check_smoke_report(skewed)


def test_changed_inputs_under_the_same_version_rebuild_the_bento(spec, registered, built, caplog):
    """Runs last: it replaces the module's bento, then builds the original back."""
    import bentoml

    from include.modelops.serving.bento import build_bento
    from include.modelops.spec import DecisionThreshold

    stricter = spec.model_copy(
        update={"evaluation": spec.evaluation.model_copy(update={"threshold": DecisionThreshold(value=0.9)})}
    )
    with caplog.at_level(logging.INFO, logger="include.modelops.serving.bento"):
        tag = build_bento(stricter, registered["version"], registered["model_uri"])
    assert tag == built["tag"]
    assert "rebuilding it" in caplog.text
    labels = bentoml.bentos.get(tag).info.labels
    assert labels["spec_hash"] == stricter.spec_hash() != spec.spec_hash()
    build_bento(spec, registered["version"], registered["model_uri"])
    assert bentoml.bentos.get(tag).info.labels["spec_hash"] == spec.spec_hash()


def test_smoke_serve_logs_to_its_own_inference_log_not_production(spec, smoke_report):
    from include.modelops.serving.inference_log import read_window
    from include.modelops.settings import get_settings

    # 1 request of all 100 rows, then each row alone (a valid row must be a 200 whatever its batch);
    # the invalid row is not scored
    assert smoke_report["logged_rows"] == smoke_report["rows"] * 2
    smoke = read_window(spec.name, root=smoke_report["inference_log"])
    assert set(smoke.variant) == {"smoke"}
    production = read_window(spec.name, root=get_settings().inference_log_url)
    assert production.empty
