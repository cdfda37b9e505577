"""A real local stack for integration tests: an MLflow server, Airflow (SQLite) and BentoML,
all under one temporary state folder, with a small generated dataset and a test copy of the spec."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from tests.conftest import REFERENCE_SPEC

TEST_ROWS, TEST_DAYS = 20_000, 20


@dataclass
class Stack:
    state_dir: Path
    specs_dir: Path
    data_dir: Path
    env: dict[str, str]
    mlflow_uri: str

    def run_dag(self, dag_id: str, conf: dict | None = None, *, model: str = "fraud_detection") -> dict:
        """Run a DAG once with `airflow dags test`; returns the run summary plus rc and log."""
        from include.modelops import local_stack

        summary_path = self.state_dir / "runs" / model / "latest_summary.json"
        summary_path.unlink(missing_ok=True)
        args = ["dags", "test", dag_id]
        if conf:
            args += ["--conf", json.dumps(conf)]
        log_file = self.state_dir / "logs" / f"{dag_id}-{time.strftime('%H%M%S')}-{time.monotonic_ns()}.log"
        res = local_stack.airflow(args, self.env, log_file=log_file, timeout_s=900)
        summary = json.loads(summary_path.read_text()) if summary_path.exists() else {}
        return {**summary, "rc": res.returncode, "log": res.stdout, "log_file": str(log_file)}

    def client(self):
        import mlflow

        return mlflow.MlflowClient(tracking_uri=self.mlflow_uri, registry_uri=self.mlflow_uri)

    def versions(self, model: str = "fraud_detection") -> list[str]:
        return sorted((mv.version for mv in self.client().search_model_versions(f"name = '{model}'")), key=int)

    def alias(self, alias: str, model: str = "fraud_detection") -> str | None:
        try:
            return str(self.client().get_model_version_by_alias(model, alias).version)
        except Exception:
            return None


def write_test_spec(specs_dir: Path, data_dir: Path, **overrides) -> dict:
    raw = yaml.safe_load(REFERENCE_SPEC.read_text())
    raw["data"]["path"] = str(data_dir)
    raw["data"]["min_rows"] = 1000
    raw["evaluation"]["bootstrap_samples"] = 100
    for key, value in overrides.items():
        raw[key] = value
    specs_dir.mkdir(parents=True, exist_ok=True)
    (specs_dir / f"{raw['name']}.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    return raw


@pytest.fixture(scope="session")
def stack(tmp_path_factory, monkeypatch_session):
    from include.modelops import local_stack
    from include.modelops.dataset import generate_transactions

    state = tmp_path_factory.mktemp("stack")
    specs_dir, data_dir = state / "specs", state / "data" / "reference"
    generate_transactions(data_dir, rows=TEST_ROWS, days=TEST_DAYS)
    write_test_spec(specs_dir, data_dir)
    port = local_stack.free_port()
    uri = f"http://127.0.0.1:{port}"
    env = local_stack.stack_env(state, uri, specs_dir=specs_dir, api_port=local_stack.free_port())
    for k in ("MLFLOW_TRACKING_URI", "MODELOPS_STATE_DIR", "MODELOPS_SPECS_DIR"):
        monkeypatch_session.setenv(k, env[k])
    local_stack.migrate_airflow_db(env)
    proc = local_stack.start_mlflow(state, port, env)
    try:
        yield Stack(state_dir=state, specs_dir=specs_dir, data_dir=data_dir, env=env, mlflow_uri=uri)
    finally:
        local_stack.stop_process(proc)


@pytest.fixture(scope="session")
def monkeypatch_session():
    mp = pytest.MonkeyPatch()
    yield mp
    mp.undo()
