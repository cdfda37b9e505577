"""The embedded default: Airflow, MLflow and BentoML on one machine, all state under one folder.

Used by ``make demo`` / ``make up`` and by the integration tests, so both run the same
stack: an MLflow tracking server (SQLite + local artifacts) and Airflow (SQLite) with
``airflow dags test`` or ``airflow standalone``. Every process started here is stopped
by whoever started it (see :func:`mlflow_server`).
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

from include.modelops.platform import http
from include.modelops.platform.processes import stop_process
from include.modelops.settings import PROJECT_ROOT, get_settings

log = logging.getLogger(__name__)


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port on ``host`` that is free right now."""
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


#: Files of the local stack that hold secrets or state: readable by their owner only.
PRIVATE_FILES = (
    "airflow/airflow.db",
    "airflow/simple_auth_manager_passwords.json.generated",
    "mlflow/mlflow.db",
)
#: umask of every process the local stack starts: the files they create are their owner's alone.
PRIVATE_UMASK = 0o077
_WILDCARD_HOSTS = ("0.0.0.0", "::", "")


def secure_state_dir(state_dir: Path, inference_log: str | None = None) -> None:
    """Make the state folder (and a local inference log folder) 0700 and its secret and state files 0600.

    New files are private through :data:`PRIVATE_UMASK`; this also closes the ones an older
    version (or a process started outside the stack) left readable.
    """
    state_dir = Path(state_dir).resolve()
    state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(state_dir, 0o700)
    if inference_log and "://" not in inference_log:
        folder = Path(inference_log)
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(folder, 0o700)
    for name in PRIVATE_FILES:
        with contextlib.suppress(FileNotFoundError):
            os.chmod(state_dir / name, 0o600)


def bind_hostname() -> str:
    """Airflow's ``hostname_callable`` in the local stack: the bind host, where the log servers listen."""
    return os.environ.get("MODELOPS_BIND_HOST") or "127.0.0.1"


def bind_log_servers() -> None:
    """In ``airflow scheduler`` and ``airflow triggerer``: serve logs on ``MODELOPS_BIND_HOST`` only.

    Airflow 3.3's ``serve_logs`` passes ``host=""`` (every interface) to uvicorn; the
    replacement is the same call with the host. Called by ``local_airflow/airflow_local_settings.py``.
    """
    host = os.environ.get("MODELOPS_BIND_HOST") or "127.0.0.1"
    if host in _WILDCARD_HOSTS or sys.argv[1:2] not in (["scheduler"], ["triggerer"]):
        return
    import airflow.utils.serve_logs as package

    package.serve_logs = serve_logs_on_bind_host


def serve_logs_on_bind_host(port: int | None = None) -> None:
    """Airflow's log server (``airflow.utils.serve_logs.serve_logs``), bound to ``MODELOPS_BIND_HOST``."""
    import uvicorn
    from airflow.configuration import conf

    with contextlib.suppress(ImportError):
        from setproctitle import setproctitle

        setproctitle("airflow serve-logs")
    port = port or conf.getint("logging", "WORKER_LOG_SERVER_PORT")
    host = os.environ.get("MODELOPS_BIND_HOST") or "127.0.0.1"
    log.info("Starting log server on http://%s:%d", host, port)
    uvicorn.run(
        "airflow.utils.serve_logs.log_server:get_app",
        factory=True,
        host=host,
        port=port,
        log_level=conf.get("logging", "uvicorn_logging_level", fallback="info").lower(),
        log_config=None,
        access_log=False,
    )


def stack_env(
    state_dir: Path,
    mlflow_uri: str,
    *,
    specs_dir: Path | None = None,
    api_port: int = 8080,
    bind_host: str | None = None,
) -> dict[str, str]:
    """Environment for every process of the local stack (Airflow CLI, tasks, training, bentoml).

    Airflow's API server and log servers listen on ``bind_host`` (default: the
    ``MODELOPS_BIND_HOST`` setting, ``127.0.0.1``).
    """
    state_dir = Path(state_dir).resolve()
    bind_host = bind_host or get_settings().bind_host
    reach = "127.0.0.1" if bind_host in _WILDCARD_HOSTS else bind_host  # where this machine's clients connect
    if ":" in reach:
        reach = f"[{reach}]"
    env = dict(os.environ)
    env.update(
        {
            # `airflow standalone` starts its components as `airflow ...` from PATH: use this venv's,
            # also when the venv is not activated (make runs .venv/bin/python directly).
            "PATH": os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")]),
            # local_airflow holds the airflow_local_settings hook that binds the log servers.
            "PYTHONPATH": os.pathsep.join(
                [
                    str(PROJECT_ROOT),
                    str(PROJECT_ROOT / "plugins"),
                    str(Path(__file__).parent / "local_airflow"),
                    *filter(None, [os.environ.get("PYTHONPATH")]),
                ]
            ),
            "MODELOPS_BIND_HOST": bind_host,
            "AIRFLOW__API__HOST": bind_host,
            "MODELOPS_STATE_DIR": str(state_dir),
            "MLFLOW_TRACKING_URI": mlflow_uri,
            "BENTOML_HOME": str(state_dir / "bentoml"),
            "AIRFLOW_HOME": str(state_dir / "airflow"),
            "AIRFLOW__CORE__DAGS_FOLDER": str(PROJECT_ROOT / "dags"),
            "AIRFLOW__CORE__PLUGINS_FOLDER": str(PROJECT_ROOT / "plugins"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            # Model DAGs are this project's to run: a DAG first seen by `airflow dags test` must not sit
            # paused, or a later REST trigger would queue forever.
            "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
            "AIRFLOW__CORE__UNIT_TEST_MODE": "False",
            "AIRFLOW__API__PORT": str(api_port),
            "AIRFLOW__API__BASE_URL": f"http://{reach}:{api_port}",
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://{reach}:{api_port}/execution/",
            "AIRFLOW__LOGGING__LOGGING_LEVEL": "INFO",
            "MODELOPS_AIRFLOW_UI_URL": f"http://{reach}:{api_port}",
            # Keep third-party tools from writing outside the project or phoning home.
            "GX_ANALYTICS_ENABLED": "False",
            "BENTOML_DO_NOT_TRACK": "True",
            "MLFLOW_DISABLE_TELEMETRY": "true",
            "DO_NOT_TRACK": "true",
            "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
            # "🏃 View run ... at: http://127.0.0.1:<port>/...": links to a server that stops with the command
            "MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT": "true",
            "XDG_CACHE_HOME": str(state_dir / "cache"),
            "MPLCONFIGDIR": str(state_dir / "cache" / "matplotlib"),
            "TQDM_DISABLE": "1",
        }
    )
    if bind_host not in _WILDCARD_HOSTS:
        # Tasks record this as their host; the API server fetches a running task's log from it.
        env["AIRFLOW__CORE__HOSTNAME_CALLABLE"] = "include.modelops.platform.local_stack.bind_hostname"
    if specs_dir:
        env["MODELOPS_SPECS_DIR"] = str(Path(specs_dir).resolve())
    return env


def wait_http(url: str, timeout_s: float, proc: subprocess.Popen | None = None, what: str = "server") -> None:
    """Wait until ``url`` answers (any status under 500); raise if ``proc`` exits first or at ``timeout_s``."""

    def up() -> bool:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{what} exited with code {proc.returncode} before it was ready")
        return http.answers(url)

    if http.wait_until(up, timeout_s=timeout_s, what=f"{what} at {url}") is None:
        raise TimeoutError(f"{what} not ready at {url} after {timeout_s:.0f} s")


def start_mlflow(state_dir: Path, port: int, env: dict[str, str]) -> subprocess.Popen:
    """Start an MLflow tracking server (SQLite backend, proxied local artifacts) and wait until ready."""
    secure_state_dir(state_dir)
    root = Path(state_dir).resolve() / "mlflow"
    (root / "artifacts").mkdir(parents=True, exist_ok=True)
    logs = Path(state_dir).resolve() / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    # MLflow's job runner (GenAI evaluation jobs, trace roll-ups: nothing this project uses) adds seven
    # huey consumers whose idle workers sleep up to 10 s between polls, so a SIGTERM took up to 15 s.
    env = {
        **env,
        "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": env.get("MLFLOW_SERVER_ENABLE_JOB_EXECUTION", "false"),
    }
    cmd = [
        sys.executable,
        "-m",
        "mlflow",
        "server",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--backend-store-uri",
        f"sqlite:///{root / 'mlflow.db'}",
        "--artifacts-destination",
        str(root / "artifacts"),
        "--workers",
        "1",
    ]
    out = open(logs / "mlflow.log", "ab")  # noqa: SIM115 - handed to the child process
    log.info("Starting MLflow on http://127.0.0.1:%d (log %s)", port, logs / "mlflow.log")
    proc = subprocess.Popen(
        cmd, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True, umask=PRIVATE_UMASK
    )
    try:
        wait_http(f"http://127.0.0.1:{port}/health", 120, proc, "MLflow server")
    except BaseException:  # also Ctrl-C or SIGTERM while it starts: nothing else would stop it
        stop_process(proc)
        raise
    return proc


@contextlib.contextmanager
def mlflow_server(state_dir: Path, port: int | None = None) -> Iterator[str]:
    """Run an MLflow server for the duration of the block; yields its tracking URI."""
    port = port or free_port()
    uri = f"http://127.0.0.1:{port}"
    proc = start_mlflow(state_dir, port, stack_env(state_dir, uri))
    try:
        yield uri
    finally:
        stop_process(proc)


def airflow(
    args: list[str],
    env: dict[str, str],
    *,
    log_file: Path | None = None,
    echo: bool = False,
    timeout_s: float | None = None,
) -> subprocess.CompletedProcess:
    """Run an ``airflow`` CLI command in the stack's environment."""
    cmd = [sys.executable, "-m", "airflow", *args]
    if log_file is None:
        return subprocess.run(
            cmd,
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout_s,
            cwd=PROJECT_ROOT,
            umask=PRIVATE_UMASK,
        )
    log_file.parent.mkdir(parents=True, exist_ok=True)
    with open(log_file, "w") as fh:
        # Its own session, so that stopping it (Ctrl-C, SIGTERM, a timeout) reaches every process it
        # started, the tasks' servers included (stop_process), not only the ones still in its group.
        proc = subprocess.Popen(
            cmd,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            cwd=PROJECT_ROOT,
            umask=PRIVATE_UMASK,
            start_new_session=True,
        )
        assert proc.stdout is not None
        try:
            for line in proc.stdout:
                fh.write(line)
                if echo and _is_progress_line(line):
                    print("   " + _shorten(line), flush=True)
            rc = proc.wait(timeout_s)
        except BaseException:  # KeyboardInterrupt (Ctrl-C, SIGTERM), the timeout
            stop_process(proc)
            raise
    return subprocess.CompletedProcess(cmd, rc, log_file.read_text(), "")


def migrate_airflow_db(env: dict[str, str]) -> None:
    """Create or upgrade Airflow's SQLite metadata DB (quick when up to date)."""
    res = airflow(["db", "migrate"], env)
    if res.returncode != 0:
        raise RuntimeError(f"airflow db migrate failed:\n{res.stdout[-3000:]}\n{res.stderr[-3000:]}")
    secure_state_dir(Path(env["MODELOPS_STATE_DIR"]))


#: Output no user can act on: progress bars, links to an MLflow server that stops with the command.
NOISE = ("🏃 View run ", "🧪 View experiment at", "it/s]", "s/it]", "\r")


def _is_progress_line(line: str) -> bool:
    keys = (
        "include.modelops",
        "modelops.train",
        "[train]",
        "Marking task as",
        "Task finished",
        "state=",
        "Data validation failed",
        "Gate decision",
    )
    return (
        any(k in line for k in keys)
        and "DEBUG" not in line
        and not any(n in line.rstrip("\n") for n in NOISE)
    )


def _shorten(line: str, width: int = 160) -> str:
    line = line.rstrip()
    return line if len(line) <= width else line[: width - 1] + "…"


def quiet_output() -> None:
    """In this process and the ones it starts: no progress bars, no run links, no warnings users can't act on."""
    import warnings

    os.environ.setdefault("TQDM_DISABLE", "1")
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")
    for category in (FutureWarning, UserWarning, DeprecationWarning):
        warnings.filterwarnings(
            "ignore", category=category, module=r"(mlflow|pydantic|starlette|bentoml)(\.|$)"
        )
