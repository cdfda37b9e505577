"""MLflow bookkeeping is idempotent: a retried task finds the run, version and aliases it made."""

from __future__ import annotations

import pytest

from include.modelops.platform import tracking


@pytest.fixture
def mlflow_store(tmp_path, monkeypatch):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    # Artifacts under tmp_path too: a SQLite store otherwise defaults them to ./mlruns.
    tracking.client().create_experiment("fraud_detection", artifact_location=str(tmp_path / "artifacts"))
    return uri


def logged_model(spec, run_id: str) -> str:
    import mlflow
    from sklearn.dummy import DummyClassifier

    tracking.client()
    with mlflow.start_run(run_id=run_id):
        return mlflow.sklearn.log_model(
            DummyClassifier().fit([[0], [1]], [0, 1]), name="model", serialization_format="cloudpickle"
        ).model_uri


def test_one_mlflow_run_per_dag_run(reference_spec, mlflow_store):
    first = tracking.ensure_run(reference_spec, dag_id="d", dag_run_id="manual__1")
    again = tracking.ensure_run(reference_spec, dag_id="d", dag_run_id="manual__1")
    other = tracking.ensure_run(reference_spec, dag_id="d", dag_run_id="manual__2")
    assert first == again != other


def test_registering_the_same_run_twice_returns_the_same_version(reference_spec, mlflow_store):
    run_id = tracking.ensure_run(reference_spec, dag_id="d", dag_run_id="r1")
    uri = logged_model(reference_spec, run_id)
    v1 = tracking.register_version("fraud_detection", run_id=run_id, model_uri=uri, tags={"a": 1})
    v2 = tracking.register_version("fraud_detection", run_id=run_id, model_uri=uri, tags={"a": 1})
    assert v1 == v2 == "1"


def test_promotion_keeps_the_old_champion_as_previous_and_is_idempotent(reference_spec, mlflow_store):
    versions = []
    for i in (1, 2):
        run_id = tracking.ensure_run(reference_spec, dag_id="d", dag_run_id=f"r{i}")
        versions.append(
            tracking.register_version(
                "fraud_detection", run_id=run_id, model_uri=logged_model(reference_spec, run_id), tags={}
            )
        )
    tracking.promote_to_champion("fraud_detection", versions[0])
    tracking.set_alias("fraud_detection", tracking.CHALLENGER, versions[1])
    result = tracking.promote_to_champion("fraud_detection", versions[1])
    again = tracking.promote_to_champion("fraud_detection", versions[1])  # a retried task
    assert result == again == {"champion": "2", "previous": "1"}
    assert tracking.alias_version("fraud_detection", tracking.CHAMPION) == "2"
    assert tracking.alias_version("fraud_detection", tracking.PREVIOUS) == "1"
    assert tracking.alias_version("fraud_detection", tracking.CHALLENGER) is None
