"""Open doors (issue 17): what `make up` binds, who can read the state, what a REST trigger may read,
the body limit of every route, and who may mark shadow traffic."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from include.modelops import settings
from include.modelops.pipelines import training as steps
from include.modelops.platform import local_stack, processes
from include.modelops.spec import ModelSpecError


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


# --- what binds where -------------------------------------------------------------------------


def test_make_up_binds_the_airflow_api_server_to_loopback_by_default(tmp_path, monkeypatch):
    monkeypatch.delenv("MODELOPS_BIND_HOST", raising=False)
    env = local_stack.stack_env(tmp_path, "http://127.0.0.1:5000", api_port=8181)
    assert env["AIRFLOW__API__HOST"] == "127.0.0.1"
    assert env["MODELOPS_BIND_HOST"] == "127.0.0.1"
    # tasks report the host the log servers listen on, so the UI can still read a running task's log
    assert env["AIRFLOW__CORE__HOSTNAME_CALLABLE"] == "include.modelops.platform.local_stack.bind_hostname"
    assert str(Path(local_stack.__file__).parent / "local_airflow") in env["PYTHONPATH"].split(os.pathsep)


def test_the_bind_host_setting_opens_airflow_to_the_network(tmp_path, monkeypatch):
    monkeypatch.setenv("MODELOPS_BIND_HOST", "0.0.0.0")
    assert settings.get_settings().bind_host == "0.0.0.0"
    env = local_stack.stack_env(tmp_path, "http://127.0.0.1:5000", api_port=8181)
    assert env["AIRFLOW__API__HOST"] == "0.0.0.0"
    assert "AIRFLOW__CORE__HOSTNAME_CALLABLE" not in env
    assert env["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"] == "http://127.0.0.1:8181/execution/"


def _listening(pid: int, port: int, timeout_s: float = 60) -> set[str]:
    import psutil

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        procs = [psutil.Process(pid), *psutil.Process(pid).children(recursive=True)]
        addrs = {
            c.laddr.ip
            for p in procs
            for c in p.net_connections("inet")
            if c.status == psutil.CONN_LISTEN and c.laddr.port == port
        }
        if addrs:
            return addrs
        time.sleep(0.3)
    raise AssertionError(f"nothing listened on port {port} after {timeout_s} s")


@pytest.mark.parametrize("component", ["scheduler", "triggerer"])
def test_the_log_servers_of_make_up_listen_on_loopback_only(tmp_path, monkeypatch, component):
    monkeypatch.delenv("MODELOPS_BIND_HOST", raising=False)
    env = local_stack.stack_env(tmp_path, "http://127.0.0.1:5000")
    port = local_stack.free_port()
    # What `airflow scheduler` / `airflow triggerer` do once Airflow has started (and run its local settings).
    code = (
        f"import sys; sys.argv = ['airflow', {component!r}]\n"
        "import airflow.settings as s; s.import_local_settings()\n"
        f"from airflow.utils.serve_logs import serve_logs; serve_logs(port={port})\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code],
        env=env,
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        assert _listening(proc.pid, port) == {"127.0.0.1"}
    finally:
        processes.stop_process(proc, timeout_s=5)


# --- who can read what ------------------------------------------------------------------------


def test_the_state_folder_and_its_secrets_are_their_owners_alone(tmp_path):
    state = tmp_path / "state"
    for name in local_stack.PRIVATE_FILES:
        (state / name).parent.mkdir(parents=True, exist_ok=True)
        (state / name).write_text("x")
        os.chmod(state / name, 0o644)
    os.chmod(state, 0o755)
    log_folder = tmp_path / "inference_log"
    local_stack.secure_state_dir(state, str(log_folder))
    assert _mode(state) == 0o700
    assert _mode(log_folder) == 0o700
    assert {name: _mode(state / name) for name in local_stack.PRIVATE_FILES} == {
        name: 0o600 for name in local_stack.PRIVATE_FILES
    }


def test_airflow_db_made_by_the_stack_is_readable_by_its_owner_only(tmp_path):
    env = local_stack.stack_env(tmp_path / "state", "http://127.0.0.1:5000")
    os.umask(old := os.umask(0o022))  # the test process's own umask is left as it was
    local_stack.migrate_airflow_db(env)
    db = tmp_path / "state" / "airflow" / "airflow.db"
    assert _mode(db) == 0o600
    assert _mode(db.parent) & 0o077 == 0
    assert old == os.umask(old)


def test_the_shadow_secret_is_generated_once_into_a_private_file(tmp_path, monkeypatch):
    monkeypatch.setenv("MODELOPS_STATE_DIR", str(tmp_path))
    monkeypatch.delenv("MODELOPS_SHADOW_TOKEN", raising=False)
    token = settings.shadow_token()
    assert len(token) >= 32 and settings.shadow_token() == token
    path = tmp_path / "secrets" / "shadow_token"
    assert path.read_text() == token and _mode(path) == 0o600 and _mode(path.parent) == 0o700
    monkeypatch.setenv("MODELOPS_SHADOW_TOKEN", "from-the-deployment")
    assert settings.shadow_token() == "from-the-deployment"


# --- what a REST trigger may read -------------------------------------------------------------


@pytest.fixture
def spec_with_own_data(reference_spec, tmp_path, monkeypatch):
    monkeypatch.setenv("MODELOPS_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.delenv("MODELOPS_DATA_ROOTS", raising=False)
    own = tmp_path / "own"
    own.mkdir()
    return reference_spec.model_copy(
        update={"data": reference_spec.data.model_copy(update={"path": str(own / "train.parquet")})}
    )


def test_a_run_may_read_data_next_to_the_specs_or_under_the_state_data_folder(spec_with_own_data, tmp_path):
    assert (
        steps.run_data_path(spec_with_own_data, str(tmp_path / "own" / "april")) == tmp_path / "own" / "april"
    )
    under_state = tmp_path / "state" / "data" / "may.parquet"
    assert steps.run_data_path(spec_with_own_data, str(under_state)) == under_state


def test_a_run_conf_data_path_is_never_expanded_from_the_workers_environment(spec_with_own_data, monkeypatch):
    monkeypatch.setenv("MODELOPS_TEST_SECRET_TOKEN", "s3cr3t-value")
    for raw in ("${MODELOPS_TEST_SECRET_TOKEN}/data", "${MODELOPS_STATE_DIR}/data/x", "~/data"):
        with pytest.raises(ModelSpecError, match="only in spec files") as info:
            steps.run_data_path(spec_with_own_data, raw)
        assert "s3cr3t-value" not in str(info.value)


@pytest.mark.parametrize("raw", ["../../etc/passwd", "/etc/passwd"])
def test_a_run_conf_data_path_outside_the_data_roots_is_refused(spec_with_own_data, tmp_path, raw):
    with pytest.raises(ModelSpecError, match="outside the data roots") as info:
        steps.run_data_path(spec_with_own_data, raw)
    assert "MODELOPS_DATA_ROOTS" in str(info.value) and str(tmp_path / "own") in str(info.value)


def test_a_link_out_of_a_data_root_is_refused(spec_with_own_data, tmp_path):
    (tmp_path / "own" / "escape").symlink_to("/etc")
    with pytest.raises(ModelSpecError, match="resolves to /etc/passwd"):
        steps.run_data_path(spec_with_own_data, str(tmp_path / "own" / "escape" / "passwd"))


def test_data_roots_setting_replaces_the_default_roots(spec_with_own_data, tmp_path, monkeypatch):
    shared = tmp_path / "shared"
    monkeypatch.setenv("MODELOPS_DATA_ROOTS", os.pathsep.join([str(shared), str(tmp_path / "other")]))
    assert steps.run_data_path(spec_with_own_data, str(shared / "june")) == shared / "june"
    with pytest.raises(ModelSpecError, match="outside the data roots"):
        steps.run_data_path(spec_with_own_data, str(tmp_path / "own" / "april"))


def test_a_secret_in_a_spec_files_path_is_masked_where_it_is_shown(reference_spec, monkeypatch):
    monkeypatch.setenv("MODELOPS_TEST_API_TOKEN", "s3cr3t-value")
    data = reference_spec.data.model_copy(update={"path": "/data/${MODELOPS_TEST_API_TOKEN}/x"})
    assert str(data.resolved_path()) == "/data/s3cr3t-value/x"  # the task still reads the real path
    assert data.display_path() == "/data/***/x"


# --- the body limit of every route ------------------------------------------------------------


@pytest.fixture
def guarded_client():
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route
    from starlette.testclient import TestClient

    from include.modelops.serving.request_guard import RequestGuard

    async def echo_size(request: Request) -> JSONResponse:
        return JSONResponse({"bytes": len(await request.body())})

    app = Starlette(
        routes=[
            Route("/predict", echo_size, methods=["POST"]),
            Route("/model_info", echo_size, methods=["POST"]),
            Route("/metrics", echo_size, methods=["GET"]),
        ]
    )
    app.add_middleware(RequestGuard, path="/predict", max_body_bytes=10_000, max_other_body_bytes=1_000)
    return TestClient(app)


def test_a_large_body_to_any_route_is_refused_before_the_route_reads_it(guarded_client):
    big = b"{" + b" " * 5_000 + b"}"
    for path in ("/model_info", "/metrics"):
        method = (
            guarded_client.post
            if path != "/metrics"
            else (lambda p, **kw: guarded_client.request("GET", p, **kw))
        )
        res = method(path, content=big, headers={"Content-Type": "application/json"})
        assert res.status_code == 413, path
        assert res.json()["detail"][0]["type"] == "body_too_large" and res.headers["x-request-id"]


def test_a_chunked_body_over_the_limit_is_cut_off_on_any_route(guarded_client):
    def chunks():
        for _ in range(50):
            yield b" " * 100

    res = guarded_client.post("/model_info", content=chunks(), headers={"Content-Type": "application/json"})
    assert res.status_code == 413


def test_small_bodies_still_reach_every_route(guarded_client):
    assert guarded_client.post("/model_info", content=b"{}").json() == {"bytes": 2}
    assert guarded_client.get("/metrics").json() == {"bytes": 0}
    assert guarded_client.post(
        "/predict", content=b" " * 5_000, headers={"Content-Type": "application/json"}
    ).json() == {"bytes": 5_000}


# --- who may mark shadow traffic --------------------------------------------------------------


def test_only_the_deployments_shadow_secret_marks_a_request_as_shadow():
    from include.modelops.serving.request_guard import is_shadow

    assert is_shadow("the-secret", "the-secret")
    assert not is_shadow("1", "the-secret")  # what a client sent to hide from monitoring
    assert not is_shadow(None, "the-secret")
    assert not is_shadow("", "")  # no secret configured: nothing is shadow


def test_the_splitters_admin_socket_moves_to_a_shorter_path_when_its_own_is_too_long(tmp_path, monkeypatch):
    """A deep MODELOPS_STATE_DIR (a CI checkout, a pytest worker's folder) must not stop a rollout."""
    import stat

    from include.modelops.rollout import local

    state = tmp_path / "state"
    monkeypatch.setenv("MODELOPS_STATE_DIR", str(state))
    model_dir = state / "rollout" / "fraud_detection"
    own = len(str(model_dir / "admin.sock").encode())
    # Whatever this machine's temporary folder: first as if the model's own path just fits...
    monkeypatch.setattr(local, "_MAX_SOCKET_PATH", own)
    assert local.admin_socket_path("fraud_detection", model_dir) == model_dir / "admin.sock"

    # ... then as if the state folder were deep: the model's own path one byte over what a socket allows.
    monkeypatch.setattr(local, "_MAX_SOCKET_PATH", own - 1)
    sock = local.admin_socket_path("fraud_detection", model_dir)
    assert sock.parent == state.resolve() / "sockets" and sock.suffix == ".sock"
    assert len(str(sock).encode()) <= local._MAX_SOCKET_PATH
    assert stat.S_IMODE(sock.parent.stat().st_mode) == 0o700  # no other user can reach it
    assert local.admin_socket_path("fraud_detection", model_dir) == sock  # the same every time
    assert local.admin_socket_path("churn", state / "rollout" / "churn") != sock  # one per model
