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

from include.modelops.platform.processes import pids_with_env
from include.modelops.rollout.record import read_record, write_record
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

    from include.modelops.data.example import generate_transactions
    from include.modelops.data.reading import read_dataset
    from include.modelops.serving.contract import request_rows

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
        payload = json.dumps({"rows": request_rows(spec, frame.head(3))}).encode()
        yield {
            "spec": spec,
            "root": root,
            "v1": (v1, build(spec, v1)),
            "v2": (v2, build(spec, v2)),
            "payload": payload,
        }


@pytest.fixture
def backend(versions):
    from include.modelops.rollout.local import LocalBackend

    b = LocalBackend(versions["spec"].name, workers=1)
    try:
        yield b
    finally:
        b.shutdown()


def post(url: str, payload: bytes) -> tuple[int, str]:
    request = urllib.request.Request(
        f"{url}/predict", data=payload, method="POST", headers={"Content-Type": "application/json"}
    )
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
    while (
        pids_with_env("BENTOML_HOME", canary.home) or backend.health("canary").alive
    ) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not backend.health("canary").alive and backend.state().canary_percent == 50

    assert answered_by(backend, url, versions["payload"], 30) == {"stable": 30}


def _endpoint_answers(url: str, payload: bytes) -> bool:
    try:
        return post(url, payload)[0] == 200
    except OSError:
        return False


def test_a_killed_splitter_is_restarted_by_its_supervisor_and_a_stage_check_fails_while_it_is_down(
    versions, backend, monkeypatch
):
    """Caddy killed with SIGKILL while clients send requests: its supervisor starts it again from the
    deployment state (same port, same weights), no Airflow task involved; a stage poke while the
    endpoint does not answer fails with the router as its reason."""
    import threading

    from include.modelops.platform.processes import process_alive
    from include.modelops.rollout import stages

    (v1, tag1), (v2, tag2) = versions["v1"], versions["v2"]
    model = versions["spec"].name
    backend.deploy("stable", v1, tag1)
    backend.deploy("canary", v2, tag2)
    backend.set_canary_percent(25)
    url, before = backend.endpoint(), backend.state().splitter
    r0 = before["restarts"]  # counted over the model's life (earlier tests killed it too)

    results: list[bool] = []
    stop = threading.Event()

    def clients() -> None:
        while not stop.is_set():
            results.append(_endpoint_answers(url, versions["payload"]))

    sender = threading.Thread(target=clients, daemon=True)
    sender.start()
    try:
        deadline = time.monotonic() + 30
        while not results and time.monotonic() < deadline:
            time.sleep(0.05)
        os.kill(before["pid"], signal.SIGKILL)
        while time.monotonic() < deadline and not (False in results and results[-1]):
            time.sleep(0.05)
    finally:
        stop.set()
        sender.join(15)
    deadline = time.monotonic() + 30
    while backend.state().splitter.get("restarts", 0) < r0 + 1 and time.monotonic() < deadline:
        time.sleep(0.1)
    after = backend.state().splitter
    assert results[-1], "the endpoint did not answer again after its splitter was killed"
    assert after["restarts"] == r0 + 1 and after["pid"] != before["pid"] and after["port"] == before["port"]
    assert after["supervisor_pid"] == before["supervisor_pid"] and after["last_outage_s"] is not None
    assert (
        backend.endpoint() == url and backend.state().splitter["restarts"] == r0 + 1
    )  # nothing else restarted it
    assert answered_by(backend, url, versions["payload"], 40) == {"stable": 30, "canary": 10}  # same weights
    log_text = (backend.dir / "logs" / "caddy.log").read_text()
    assert f"caddy pid {before['pid']} exited (signal 9)" in log_text and "caddy restarted as pid" in log_text

    # A stage of a rollout: its first poke enters it (and sees the endpoint answer)...
    monkeypatch.setenv("MODELOPS_SPECS_DIR", str(SPEC_PATH.parent))  # the bundled spec, with its rollout
    monkeypatch.setenv(
        "MODELOPS_STATE_DIR", str(backend.dir.parent.parent)
    )  # the record next to the backend's
    write_record(
        model,
        v2,
        {
            "model": model,
            "version": v2,
            "stable_version": v1,  # noqa: SLF001
            "first_deployment": False,
            "status": "running",
            "stages": [],
        },
    )
    assert stages.check_stage(model, v2, 0, backend=backend)["done"] is False
    assert read_record(model, v2)["stages"][0]["router"] == {"restarts_at_start": r0 + 1, "restarts": 0}
    # ...then the splitter dies while its supervisor cannot restart it (stopped): the next poke fails.
    supervisor = after["supervisor_pid"]
    os.kill(supervisor, signal.SIGSTOP)
    try:
        os.kill(after["pid"], signal.SIGKILL)
        deadline = time.monotonic() + 10
        while process_alive(after["pid"], after["pid_start"]) and time.monotonic() < deadline:
            time.sleep(0.05)
        with pytest.raises(stages.RolloutFailed, match="the traffic splitter did not answer"):
            stages.check_stage(model, v2, 0, backend=backend)
    finally:
        os.kill(supervisor, signal.SIGCONT)
    deadline = time.monotonic() + 30
    while not _endpoint_answers(url, versions["payload"]) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _endpoint_answers(url, versions["payload"]) and backend.state().splitter["restarts"] == r0 + 2

    # Stopping the backend stops the supervisor first: nothing starts Caddy again.
    state = backend.state().splitter
    backend.shutdown()
    assert not process_alive(state["supervisor_pid"], state["supervisor_pid_start"])
    assert not process_alive(state["pid"], state["pid_start"]) and not _endpoint_answers(
        url, versions["payload"]
    )


def test_the_splitters_admin_api_is_an_owner_only_unix_socket_and_listens_on_no_tcp_port(versions, backend):
    import stat

    import psutil

    (v1, tag1) = versions["v1"]
    backend.deploy("stable", v1, tag1)
    sp = backend.state().splitter
    mode = os.stat(sp["admin"]).st_mode
    assert stat.S_ISSOCK(mode) and stat.S_IMODE(mode) == 0o600
    assert stat.S_IMODE(os.stat(backend.dir).st_mode) == 0o700
    listening = {
        c.laddr.port
        for c in psutil.Process(sp["pid"]).net_connections(kind="inet")
        if c.status == psutil.CONN_LISTEN
    }
    assert listening == {sp["port"]}  # the endpoint only: no TCP admin port
    backend.set_canary_percent(0)  # weights still move, over the socket
