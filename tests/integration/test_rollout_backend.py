"""The local rollout backend: real `bentoml serve` processes behind a real Caddy, real HTTP.

Two versions of a model trained with the project's trainer are built into bentos and served as
stable and canary behind one endpoint; the tests read who answered from the splitter's
`X-ModelOps-Upstream` header and from the inference log's `variant` column.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import time
import urllib.request
from collections import Counter
from datetime import UTC, datetime

import pytest

from include.modelops.rollout.local import pids_with_env
from include.modelops.settings import PROJECT_ROOT
from include.modelops.spec import load_spec
from tests.conftest import mlflow_uris_restored
from tests.integration.rollout_fixtures import build, train_and_register

pytestmark = pytest.mark.integration

SPEC_PATH = PROJECT_ROOT / "include" / "models" / "fraud_detection.yaml"


@pytest.fixture(scope="module")
def versions(tmp_path_factory: pytest.TempPathFactory, bentoml_store):
    """Two trained, registered and built versions of the model, and the rows to send."""
    import mlflow

    from include.modelops import packaging
    from include.modelops.dataset import generate_transactions, read_dataset

    root = tmp_path_factory.mktemp("rollout_backend")
    spec = load_spec(SPEC_PATH)
    with mlflow_uris_restored(), pytest.MonkeyPatch.context() as mp:
        mp.setenv("MODELOPS_STATE_DIR", str(root / "state"))
        mp.setenv("BENTOML_HOME", str(bentoml_store))  # one store per process (see conftest)
        mp.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{root}/mlflow.db")
        mp.setenv("MODELOPS_INFERENCE_LOG_URL", str(root / "state" / "inference_log"))
        mp.setenv("MODELOPS_GIT_COMMIT", "test")
        generate_transactions(root / "data", rows=2000, days=5, seed=3)
        frame = read_dataset(root / "data")
        mlflow.set_tracking_uri(f"sqlite:///{root}/mlflow.db")
        mlflow.set_registry_uri(f"sqlite:///{root}/mlflow.db")
        experiment = mlflow.create_experiment("rollout-test", artifact_location=(root / "artifacts").as_uri())
        v1 = train_and_register(spec, frame, seed=1, experiment_id=experiment)
        v2 = train_and_register(spec, frame, seed=2, experiment_id=experiment)
        payload = json.dumps({"rows": packaging.request_rows(spec, frame.head(3))}).encode()
        yield {"spec": spec, "root": root, "v1": (v1, build(spec, v1)), "v2": (v2, build(spec, v2)),
               "payload": payload}


@pytest.fixture
def backend(versions):
    from include.modelops.rollout.local import LocalBackend

    b = LocalBackend(versions["spec"].name, workers=1)
    try:
        yield b
    finally:
        b.shutdown()


def post(url: str, payload: bytes) -> tuple[int, str]:
    request = urllib.request.Request(f"{url}/predict", data=payload, method="POST",
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=10) as r:
            return r.status, r.headers.get("X-ModelOps-Upstream", "")
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers.get("X-ModelOps-Upstream", "")


def answered_by(backend, url: str, payload: bytes, n: int) -> Counter:
    who = Counter()
    for _ in range(n):
        status, upstream = post(url, payload)
        assert status == 200
        who[backend.upstream_variant(upstream)] += 1
    return who


def test_weights_split_requests_live_and_a_restarted_splitter_resumes_them(versions, backend):
    (v1, tag1), (v2, tag2) = versions["v1"], versions["v2"]
    backend.deploy("stable", v1, tag1)
    url = backend.endpoint()
    assert answered_by(backend, url, versions["payload"], 10) == {"stable": 10}

    backend.deploy("canary", v2, tag2)
    assert answered_by(backend, url, versions["payload"], 20) == {"stable": 20}  # a new canary has no traffic
    backend.set_canary_percent(25)
    assert answered_by(backend, url, versions["payload"], 40) == {"stable": 30, "canary": 10}

    # The splitter dies; setting the same share again (a retried task) restarts it on the same
    # endpoint from the state file, with the same weights, and moves nothing.
    os.kill(backend.state().splitter["pid"], signal.SIGKILL)
    backend.set_canary_percent(25)
    assert backend.endpoint() == url and backend.state().canary_percent == 25
    assert answered_by(backend, url, versions["payload"], 40) == {"stable": 30, "canary": 10}

    started = datetime.now(UTC)
    backend.set_canary_percent(0)
    assert answered_by(backend, url, versions["payload"], 20) == {"stable": 20}
    from include.modelops.serving.inference_log import read_window

    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:  # the log is written in the background, about every second
        logged = read_window(versions["spec"].name, start=started)
        if len(logged) >= 60:
            break
        time.sleep(0.5)
    assert set(logged["variant"]) == {"stable"} and set(logged["model_version"]) == {v1}


def test_a_killed_canary_is_seen_dead_and_promotion_restarts_the_version_as_stable(versions, backend):
    (v1, tag1), (v2, tag2) = versions["v1"], versions["v2"]
    backend.deploy("stable", v1, tag1)
    canary = backend.deploy("canary", v2, tag2)
    assert backend.health("canary").ok
    os.killpg(canary.pid, signal.SIGKILL)  # the server crashes; its workers (own sessions) are orphaned
    t0 = time.monotonic()
    while backend.health("canary").alive and time.monotonic() - t0 < 3:
        time.sleep(0.1)
    health = backend.health("canary")
    assert not health.alive and "not running" in health.detail

    backend.deploy("canary", v2, tag2)  # a dead canary is replaced, not reused
    backend.set_canary_percent(100)
    promoted = backend.promote_canary()
    state = backend.state()
    assert set(state.variants) == {"stable"} and state.variants["stable"].version == v2
    assert promoted.pid != canary.pid and state.canary_percent == 0
    assert answered_by(backend, backend.endpoint(), versions["payload"], 5) == {"stable": 5}
    assert pids_with_env("BENTOML_HOME", canary.home) == []  # the crashed server's orphans were stopped too


def test_clients_never_see_a_dead_canary_between_checks(versions, backend):
    """A canary whose processes are all gone refuses connections: the splitter sends its share to
    stable at once (it retries the connection on the next upstream) until the stage's next check
    rolls back. Clients get no 502 in between, however long that is (a pause can last hours)."""
    (v1, tag1), (v2, tag2) = versions["v1"], versions["v2"]
    backend.deploy("stable", v1, tag1)
    canary = backend.deploy("canary", v2, tag2)
    backend.set_canary_percent(50)
    url = backend.endpoint()
    assert answered_by(backend, url, versions["payload"], 10) == {"stable": 5, "canary": 5}

    for pid in [canary.pid, *pids_with_env("BENTOML_HOME", canary.home)]:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    # A killed process drops its environment (so pids_with_env no longer lists it) a moment before
    # it has exited and closed its socket; wait for the backend's own verdict, not for /proc.
    deadline = time.monotonic() + 10
    while (pids_with_env("BENTOML_HOME", canary.home) or backend.health("canary").alive) \
            and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not backend.health("canary").alive and backend.state().canary_percent == 50

    assert answered_by(backend, url, versions["payload"], 30) == {"stable": 30}
