"""`make traffic` against a real `bentoml serve` of a real bento: labels land, and join the inference log.

A small model is trained with the project's scikit-learn trainer on generated transactions,
registered in a SQLite MLflow store, built into a bento and served on a free localhost port.
The generator then runs for a few seconds (through the CLI, as `make traffic` runs it) with the
latest training run's holdout as its rows.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from include.modelops.settings import PROJECT_ROOT
from include.modelops.spec import load_spec
from tests.conftest import mlflow_uris_restored

pytestmark = pytest.mark.integration

SPEC_PATH = PROJECT_ROOT / "include" / "models" / "fraud_detection.yaml"


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory, bentoml_store: Path):
    """A served bento of a freshly trained model; yields its URL, state folder, holdout and spec."""
    import mlflow

    from include.modelops.data.example import generate_transactions
    from include.modelops.data.reading import read_dataset
    from include.modelops.serving.bento import build_bento
    from include.modelops.serving.smoke import serve_bento
    from include.modelops.training import sklearn_trainer

    root = tmp_path_factory.mktemp("traffic")
    spec = load_spec(SPEC_PATH)
    with mlflow_uris_restored(), pytest.MonkeyPatch.context() as mp:
        mp.setenv("MODELOPS_STATE_DIR", str(root / "state"))
        mp.setenv("BENTOML_HOME", str(bentoml_store))  # one store per process (see conftest)
        mp.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{root}/mlflow.db")
        mp.setenv("MODELOPS_INFERENCE_LOG_URL", str(root / "state" / "inference_log"))
        mp.setenv("MODELOPS_GIT_COMMIT", "test")
        generate_transactions(root / "data", rows=3000, days=10, seed=11)
        frame = read_dataset(root / "data")
        train, holdout = frame.iloc[:2500], frame.iloc[2500:].reset_index(drop=True)
        run_dir = root / "state" / "runs" / spec.name / "manual__1"
        run_dir.mkdir(parents=True)
        holdout.to_parquet(run_dir / "holdout.parquet", index=False)

        # Both URIs: an earlier test in this session may have pointed the registry at the shared stack.
        mlflow.set_tracking_uri(f"sqlite:///{root}/mlflow.db")
        mlflow.set_registry_uri(f"sqlite:///{root}/mlflow.db")
        experiment = mlflow.create_experiment("traffic-test", artifact_location=(root / "artifacts").as_uri())
        with mlflow.start_run(experiment_id=experiment):
            model = sklearn_trainer.fit(spec, train, params={"max_iter": 30})
            model_uri = sklearn_trainer.log_model(model, spec, train.head(50))
        version = mlflow.register_model(model_uri, spec.name).version
        tag = build_bento(spec, str(version), f"models:/{spec.name}/{version}")

        with serve_bento(tag, log_dir=root / "serve") as served:
            yield {
                "url": served.url,
                "root": root,
                "holdout": holdout,
                "spec": spec,
                "version": str(version),
                "proc": served.proc,
                "log": served.log_path,
            }


@pytest.fixture(scope="module")
def traffic_run(served):
    """Four seconds of traffic through the CLI: 15 requests/s of 2 holdout rows, labels 1 s later."""
    from include.modelops import cli

    summary_file = served["root"] / "summary.json"
    rc = cli.main(
        [
            "traffic",
            "--url",
            served["url"],
            "--rate",
            "15",
            "--duration",
            "4",
            "--count",
            "1000",
            "--rows-per-request",
            "2",
            "--label-delay",
            "1",
            "--progress-every",
            "1",
            "--json",
            str(summary_file),
        ]
    )
    return {"rc": rc, "summary": json.loads(summary_file.read_text())}


def test_every_request_is_answered(traffic_run, served):
    summary = traffic_run["summary"]
    assert traffic_run["rc"] == 0, Path(served["log"]).read_text()[-3000:]
    assert 55 <= summary["sent"] <= 61
    assert summary["answered"] == summary["sent"], summary["errors"]
    assert summary["4xx"] == summary["5xx"] == summary["connection_errors"] == 0
    assert summary["latency_ms_p50"] > 0 and summary["latency_ms_p99"] >= summary["latency_ms_p95"]


def test_label_feed_holds_one_true_label_per_answered_row(traffic_run, served):
    from include.modelops.serving.label_feed import read_labels

    labels = read_labels(served["spec"].name)
    summary = traffic_run["summary"]
    assert summary["labels_written"] == summary["rows_answered"] == 2 * summary["answered"]
    assert len(labels) == summary["rows_answered"]
    assert not labels.duplicated(["request_id", "row_index"]).any()
    assert sorted(labels["row_index"].unique().tolist()) == [0, 1]
    assert labels["request_id"].nunique() == summary["answered"]
    assert set(labels["label"].unique()) <= {0, 1}
