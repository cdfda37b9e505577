"""A rollback while the MLflow server is down: traffic first, the registry when MLflow is back.

A real MLflow server (SQLite behind it), real bentos behind the local splitter. The server is
stopped before the rollback: the candidate must be out of the traffic when ``rollback()``
returns, and the registry writes it owes (``challenger`` removed, ``rolled_back`` tags, the
deployment event) must land, none lost, once the server answers again.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time

import pytest

from include.modelops.platform import processes
from include.modelops.rollout.record import read_record
from include.modelops.settings import PROJECT_ROOT
from include.modelops.spec import load_spec
from tests.conftest import mlflow_uris_restored
from tests.integration.rollout_fixtures import build, train_and_register
from tests.integration.test_rollout_backend import answered_by

pytestmark = pytest.mark.integration

SPEC_PATH = PROJECT_ROOT / "include" / "models" / "fraud_detection.yaml"


class Server:
    """The MLflow server, stoppable and startable again on the same port and store."""

    def __init__(self, state, port: int, env: dict[str, str]) -> None:
        self.state, self.port, self.env, self.proc = state, port, env, None

    def start(self) -> None:
        from include.modelops.platform import local_stack

        self.proc = local_stack.start_mlflow(self.state, self.port, self.env)

    def stop(self) -> None:
        if self.proc is not None:
            processes.stop_process(self.proc)
            self.proc = None


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory, bentoml_store):
    import mlflow

    from include.modelops.data.example import generate_transactions
    from include.modelops.data.reading import read_dataset
    from include.modelops.platform import local_stack, tracking
    from include.modelops.serving.contract import request_rows

    root = tmp_path_factory.mktemp("rollout_abort")
    spec = load_spec(SPEC_PATH)
    port = local_stack.free_port()
    uri = f"http://127.0.0.1:{port}"
    server = Server(root / "mlflow-state", port, local_stack.stack_env(root / "mlflow-state", uri))
    server.start()
    try:
        with mlflow_uris_restored(), pytest.MonkeyPatch.context() as mp:
            mp.setenv("MODELOPS_STATE_DIR", str(root / "state"))
            mp.setenv("BENTOML_HOME", str(bentoml_store))  # one store per process (see conftest)
            mp.setenv("MLFLOW_TRACKING_URI", uri)
            mp.setenv("MODELOPS_INFERENCE_LOG_URL", str(root / "state" / "inference_log"))
            mp.setenv("MODELOPS_GIT_COMMIT", "test")
            generate_transactions(root / "data", rows=2000, days=5, seed=7)
            frame = read_dataset(root / "data")
            mlflow.set_tracking_uri(uri)
            mlflow.set_registry_uri(uri)
            experiment = mlflow.create_experiment("rollout-abort-test")
            versions = {}
            for seed in (1, 2):
                version = train_and_register(spec, frame, seed=seed, experiment_id=experiment)
                tracking.set_version_tags(
                    spec.name,
                    version,
                    {"modelops.deployable": "true", "modelops.bento_tag": build(spec, version)},
                )
                versions[seed] = version
            tracking.set_alias(spec.name, tracking.CHAMPION, versions[1])
            tracking.set_alias(spec.name, tracking.CHALLENGER, versions[2])
            payload = request_rows(spec, frame.head(3))
            import json

            yield {
                "spec": spec,
                "server": server,
                "v1": versions[1],
                "v2": versions[2],
                "payload": json.dumps({"rows": payload}).encode(),
            }
    finally:
        server.stop()


def test_a_rollback_with_mlflow_down_moves_traffic_at_once_and_lands_the_registry_writes_later(registry):
    from include.modelops.platform import tracking
    from include.modelops.platform.processes import process_alive
    from include.modelops.rollout import pending, stages
    from include.modelops.rollout.local import LocalBackend

    model, v1, v2, server = registry["spec"].name, registry["v1"], registry["v2"], registry["server"]
    backend = LocalBackend(model, workers=1)
    retry_pid = None
    try:
        stages.prepare(model, v2, dag_run_id="abort-test", backend=backend)
        backend.set_canary_percent(50)
        url = backend.endpoint()
        assert answered_by(backend, url, registry["payload"], 10) == {"stable": 5, "canary": 5}

        server.stop()
        result = stages.rollback(model, v2, reason="aborted by the operator", backend=backend)
        # Traffic is on stable when rollback returns, though the registry did not answer.
        assert answered_by(backend, url, registry["payload"], 20) == {"stable": 20}
        assert result["rolled_back"] and result["registry_pending"] and result["champion"] == v1
        record = read_record(model, v2)
        retry_pid = record["registry_retry_pid"]
        assert record["status"] == "rolled_back" and record["registry_pending"] is True
        assert [p.name for p in pending.pending_files(model)] == [f"registry-pending-v{v2}.json"]
        assert "rolled back" in stages.outcome(model, v2)["message"]

        server.start()  # the retry process lands the writes once the server answers again
        deadline = time.monotonic() + 120
        while pending.pending_files(model) and time.monotonic() < deadline:
            time.sleep(0.5)
        assert not pending.pending_files(model), (backend.dir / "logs" / "registry-retry.log").read_text()[
            -3000:
        ]
        tags = dict(tracking.client().get_model_version(model, v2).tags)
        assert (
            tags[stages.TAG_STATUS] == "rolled_back"
            and "aborted by the operator" in tags[stages.TAG_ROLLED_BACK]
        )
        assert stages.TAG_ROLLED_BACK_AT in tags
        events = [k for k in tags if k.startswith("modelops.deployment.")]
        assert len(events) == 1 and '"rolled back (automatic)"' in tags[events[0]]
        assert tracking.alias_version(model, tracking.CHALLENGER) is None
        assert tracking.alias_version(model, tracking.CHAMPION) == v1
        record = read_record(model, v2)
        assert record["registry_pending"] is False and record["status"] == "rolled_back"
        deadline = time.monotonic() + 30
        while process_alive(retry_pid, None) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not process_alive(retry_pid, None)  # done: the retry process exits
    finally:
        if retry_pid:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(retry_pid, signal.SIGTERM)
        backend.shutdown()
        if server.proc is None:
            server.start()  # the module fixture stops it
