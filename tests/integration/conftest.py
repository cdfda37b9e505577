"""A real local stack for integration tests: an MLflow server, Airflow (SQLite) and BentoML,
all under one temporary state folder, with a small generated dataset and a test copy of the spec."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from include.modelops.platform import processes
from include.modelops.settings import PROJECT_ROOT
from include.modelops.spec import FeatureType, ModelSpec, load_spec
from tests.conftest import REFERENCE_SPEC, mlflow_uris_restored
from tests.integration.airflow_rest import Api

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
        from include.modelops.platform import local_stack

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
        return sorted(
            (mv.version for mv in self.client().search_model_versions(f"name = '{model}'")), key=int
        )

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
    # Training tests promote straight after smoke-serving; rollout tests pass their own section.
    raw.pop("rollout", None)
    for key, value in overrides.items():
        raw[key] = value
    specs_dir.mkdir(parents=True, exist_ok=True)
    (specs_dir / f"{raw['name']}.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    return raw


@pytest.fixture(scope="session")
def stack(tmp_path_factory, monkeypatch_session):
    from include.modelops.data.example import generate_transactions
    from include.modelops.platform import local_stack

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
        processes.stop_process(proc)


# --------------------------------------------------------------------------------------
# One running Airflow (`airflow standalone`: API server, scheduler, dag processor, triggerer)
# for the session's tests that need its REST API (human-in-the-loop answers, queued runs)
# --------------------------------------------------------------------------------------

# Its specs are all written before it starts (a spec added later would wait for a re-parse):
# two manual-approval training specs (test_approval) and one with a paused rollout step
# (test_rollout_api). Short stages: 25% (paused) then 100%, 30 requests each.
STANDALONE_ROLLOUT = {
    "steps": [{"traffic_percent": 25, "pause": True}, 100],
    "min_requests": 30,
    "max_wait_s": 300,
    "check_interval_s": 2,
    "analysis": {
        "min_rows_for_distance": 100,
        "max_score_distance": 0.35,
        "latency_tolerance_ms": 200,
        "max_latency_p95_ratio": 3,
        "max_error_rate": 0.1,
        "max_error_rate_increase": 0.1,
    },
}


@dataclass
class Standalone:
    api: Api
    env: dict[str, str]
    state_dir: Path
    specs_dir: Path


@pytest.fixture(scope="session")
def standalone(stack):
    from include.modelops.platform import local_stack

    state = stack.state_dir / "standalone"
    specs = state / "specs"
    manual = {
        "risk_tier": "medium",
        "approval": {"policy": "manual", "approvers": ["risk_lead"], "timeout_hours": 1},
    }
    write_test_spec(specs, stack.data_dir, name="fraud_manual", **manual)
    write_test_spec(
        specs,
        stack.data_dir,
        name="fraud_timeout",
        risk_tier="medium",
        approval={"policy": "manual", "approvers": ["risk_lead"], "timeout_hours": 0.01},
    )
    monitoring = yaml.safe_load(REFERENCE_SPEC.read_text())["monitoring"]
    write_test_spec(
        specs,
        stack.data_dir,
        name="fraud_paused",
        **manual,
        rollout=STANDALONE_ROLLOUT,
        monitoring={**monitoring, "drift_schedule": None},
    )
    port = local_stack.free_port()
    env = local_stack.stack_env(state, stack.mlflow_uri, specs_dir=specs, api_port=port)
    env.update(
        {
            "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "admin:admin,risk_lead:admin",
            "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
            "AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC": "2",
            "MODELOPS_ROLLOUT_PORT": str(local_stack.free_port()),
            "MODELOPS_SERVE_WORKERS": "1",
            "MODELOPS_GIT_COMMIT": "test",
        }
    )
    local_stack.migrate_airflow_db(env)
    (state / "logs").mkdir(parents=True, exist_ok=True)
    log = open(state / "logs" / "standalone.log", "wb")  # noqa: SIM115
    proc = subprocess.Popen(
        [sys.executable, "-m", "airflow", "standalone"],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        cwd=local_stack.PROJECT_ROOT,
    )
    try:
        local_stack.wait_http(
            f"http://127.0.0.1:{port}/api/v2/monitor/health", 240, proc, "Airflow API server"
        )
        pw_file = Path(env["AIRFLOW_HOME"]) / "simple_auth_manager_passwords.json.generated"
        api = Api(f"http://127.0.0.1:{port}", json.loads(pw_file.read_text()))
        dags = ("fraud_manual_training", "fraud_timeout_training", "fraud_paused_rollout")
        api.wait("DAGs to be parsed", lambda: all(api.call("GET", f"/dags/{d}")[0] == 200 for d in dags), 180)
        yield Standalone(api=api, env=env, state_dir=state, specs_dir=specs)
    finally:
        processes.stop_process(proc, timeout_s=30)
        log.close()


@pytest.fixture(scope="session")
def monkeypatch_session():
    mp = pytest.MonkeyPatch()
    yield mp
    mp.undo()


# --------------------------------------------------------------------------------------
# A tiny registered model and its bento, built once per test module (packaging, serving)
# --------------------------------------------------------------------------------------

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


@pytest.fixture(scope="session")
def bentoml_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One BentoML store for the session: BentoML reads BENTOML_HOME once per process."""
    return tmp_path_factory.mktemp("bentoml")


@pytest.fixture(scope="module")
def state(tmp_path_factory: pytest.TempPathFactory, bentoml_store: Path):
    """MLflow store and state dir in a tmp folder, and the session's BENTOML_HOME."""
    root = tmp_path_factory.mktemp("packaging")
    with mlflow_uris_restored(), pytest.MonkeyPatch.context() as mp:
        mp.setenv("MODELOPS_STATE_DIR", str(root / "state"))
        mp.setenv("BENTOML_HOME", str(bentoml_store))
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
    from include.modelops.serving.bento import build_bento

    started = time.perf_counter()
    tag = build_bento(spec, registered["version"], registered["model_uri"])
    return {"tag": tag, "build_s": time.perf_counter() - started}
