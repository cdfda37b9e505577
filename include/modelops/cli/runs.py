"""Running a model's DAGs from the command line: the training run, its rollout, the servers they need.

``run_training`` is ``airflow dags test`` of a model's training DAG (and, when its candidate passed,
``run_rollout`` of its rollout DAG under generated traffic) with a real Airflow and MLflow; both the
product commands (``run``) and the demo scripts (``demo``, ``demo-drift``, ``demo-bad-canary``) use it.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import time

from include.modelops.cli.report import EXIT_FAILED, print_summary, say
from include.modelops.platform import http, processes
from include.modelops.rollout.record import read_record
from include.modelops.settings import get_settings

DEFAULT_MODEL = "fraud_detection"
UI_MLFLOW_PORT, UI_AIRFLOW_PORT = 5000, 8080  # where `make up` serves the UIs


def stop_on_signals(*, ignore: bool = False) -> None:
    """Make SIGTERM and SIGINT raise ``KeyboardInterrupt``, so the ``finally`` blocks stop every child.

    ``ignore=True`` (in the clean-up itself): ignore both, so a second Ctrl-C does not leave the
    processes not stopped yet running.

    SIGINT is set explicitly too: a command started in the background by a non-interactive
    shell (``nohup make serve &`` in a script, a CI job) inherits SIGINT *ignored*, and Python
    then leaves it ignored, so ``kill -INT`` (or Ctrl-C reaching the script) would do nothing.
    """
    import signal

    def handler(signum, frame):  # noqa: ARG001 - signal handler signature
        raise KeyboardInterrupt

    if ignore:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        return
    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, signal.default_int_handler)


def mlflow_server_for_run(running: contextlib.ExitStack, *, say_mlflow_stopped: bool = True) -> str | None:
    """Start a temporary MLflow server on this checkout's store unless MLFLOW_TRACKING_URI is set.

    Returns the started server's URI (stopped with ``running``), or None when a URI is configured.
    The command's first call also makes ``running`` stop, last, everything the command started
    that is still running (rollout deployments, servers its tasks started: rollout.local.stop_started).
    """
    from include.modelops.platform import local_stack

    if processes.claim_processes():
        stop_on_signals()  # SIGTERM too unwinds ``running``
        running.callback(say_stopped, stop_started_processes)
    if os.environ.get("MLFLOW_TRACKING_URI"):
        return None
    s = get_settings()
    port = local_stack.free_port()
    uri = f"http://127.0.0.1:{port}"
    say(f"==> Starting MLflow tracking server on {uri} (store: {s.state_dir / 'mlflow'})")
    proc = local_stack.start_mlflow(s.state_dir, port, local_stack.stack_env(s.state_dir, uri))
    if say_mlflow_stopped:
        running.callback(say, "==> Stopped the MLflow server")
    running.callback(processes.stop_process, proc)
    return uri


def stop_started_processes() -> list[str]:
    """Stop what this command started (``rollout.local.stop_started``; imported late: it pulls in serving)."""
    from include.modelops.rollout.local import stop_started

    return stop_started()


def say_stopped(stop) -> None:
    """Run ``stop`` (rollout.local.stop_started) and say what it stopped, if anything."""
    stopped = stop()
    if stopped:
        say("==> Stopped " + ", ".join(stopped))


def mlflow_for_reading(running: contextlib.ExitStack) -> str | None:
    """A tracking URI to read the registry from: the configured one if it answers (or is a
    local file or database store); unset, or a local server that does not answer, a temporary
    server on this checkout's store (stopped with ``running``). None, after printing why, when
    there is nothing to read."""
    import urllib.parse

    from include.modelops.platform import local_stack

    s = get_settings()
    uri = s.mlflow_tracking_uri
    db = s.state_dir / "mlflow" / "mlflow.db"
    if not uri:
        # This checkout's own store, never whatever happens to answer on a well-known port.
        if not db.exists():
            say(
                f"There is no MLflow store at {db} yet: run `make demo` or `make run MODEL=...` first "
                f"(or set MLFLOW_TRACKING_URI to read another server)."
            )
            return None
        print(f"(reading this checkout's MLflow store {db} through a temporary server)", file=sys.stderr)
        return running.enter_context(local_stack.mlflow_server(s.state_dir))
    if not uri.startswith(("http://", "https://")):
        return uri
    if http.answers(f"{uri.rstrip('/')}/health", timeout=3):
        return uri
    local = urllib.parse.urlparse(uri).hostname in ("127.0.0.1", "localhost")
    if not local:
        say(f"MLflow at {uri} does not answer: check MLFLOW_TRACKING_URI and the server.")
        return None
    if not db.exists():
        say(f"No MLflow server answers at {uri} and there is no local store at {db}: run `make demo` first.")
        return None
    print(f"(no MLflow server at {uri}: reading {db} through a temporary one)", file=sys.stderr)
    return running.enter_context(local_stack.mlflow_server(s.state_dir))


def run_training(spec, conf: dict[str, str], *, t_start: float, again: str) -> int:
    """``airflow dags test`` of the model's training DAG with ``conf``; prints the step summary.

    Uses the MLflow server at ``MLFLOW_TRACKING_URI`` when the user set one, else starts this
    checkout's own (SQLite store under the state folder) on a free port for the run.

    Interrupted (Ctrl-C, SIGTERM: ``KeyboardInterrupt``), it stops the ``airflow dags test`` process,
    marks the runs it left queued or running failed in the metadata DB (their running tasks failed),
    so that no guard waits on them, and returns 130.
    """
    import contextlib
    import os

    from include.modelops.platform import local_stack

    s = get_settings()
    summary_path = s.runs_dir / spec.name / "latest_summary.json"
    summary_path.unlink(missing_ok=True)  # never report an earlier run's outcome as this one's
    with contextlib.ExitStack() as running:
        uri = mlflow_server_for_run(running)
        if uri is None:
            uri = os.environ["MLFLOW_TRACKING_URI"]
            say(f"==> Using the MLflow server at {uri} (MLFLOW_TRACKING_URI)")
        env = local_stack.stack_env(s.state_dir, uri)
        # Links in cards and reports point at the MLflow UI that `make up` serves, not this short-lived server.
        env.setdefault("MODELOPS_MLFLOW_UI_URL", f"http://127.0.0.1:{UI_MLFLOW_PORT}")
        say(f"==> Airflow metadata DB: {env['AIRFLOW_HOME']}")
        local_stack.migrate_airflow_db(env)
        stamp = time.strftime("%Y%m%d-%H%M%S")
        log_file = s.state_dir / "logs" / f"run-{spec.dag_id}-{stamp}.log"
        cmd = ["dags", "test", spec.dag_id]
        if conf:
            cmd += ["--conf", json.dumps(conf)]
            say(f"==> Run conf: {json.dumps(conf)}")
        say(f"==> airflow {' '.join(cmd[:3])}   (full log: {log_file})")
        t0 = time.perf_counter()
        since = time.time() - 1
        try:
            res = local_stack.airflow(cmd, env, log_file=log_file, echo=True)
            dag_s = time.perf_counter() - t0
            summary = json.loads(summary_path.read_text()) if summary_path.exists() else None
            rollout = None
            if (
                summary
                and spec.rollout is not None
                and res.returncode == 0
                and not summary.get("failed_steps")
            ):
                smoke = summary["steps"].get("smoke_serve_bento") or {}
                version = ((summary["steps"].get("register_candidate") or {}).get("result") or {}).get(
                    "version"
                )
                if smoke.get("state") == "success" and version:
                    rollout = run_rollout(spec, str(version), env, stamp=stamp)
                    summary["champion_version"] = rollout.get("champion")
        except KeyboardInterrupt:
            _fail_interrupted_runs(
                [spec.dag_id, *([spec.rollout_dag_id] if spec.rollout else [])], env, since
            )
            say(f"==> Interrupted; full log: {log_file}")
            return 130
    if summary is None:
        say(f"No run summary was written; the DAG run failed early. See {log_file}")
        return 1
    failed = res.returncode != 0 or bool(summary.get("failed_steps"))
    code = print_summary(
        summary,
        dag_s=dag_s,
        total_s=time.perf_counter() - t_start,
        log_file=log_file,
        rollout=rollout,
        failed=failed,
    )
    if code == EXIT_FAILED:
        say(f"The run failed: fix what the failed step's log says, then run `{again}` again.")
    else:
        say(f"Run `{again}` again to train a new candidate against the champion.")
    return code


def _fail_interrupted_runs(dag_ids: list[str], env: dict[str, str], since: float) -> None:
    """Mark the runs of ``dag_ids`` an interrupted ``airflow dags test`` left running as failed."""
    import signal
    import subprocess
    from datetime import UTC, datetime

    # A second Ctrl-C must not cut this short: the run would stay "running" for good.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    started = datetime.fromtimestamp(since, UTC).isoformat()
    for dag_id in dag_ids:
        res = subprocess.run(
            [sys.executable, "-m", "include.modelops.platform.interrupted_runs", dag_id, started],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        runs = res.stdout.split()
        if res.returncode != 0:
            say(
                f"==> Could not mark the interrupted {dag_id} run failed (mark it failed in the UI): "
                f"{res.stderr.strip()[-500:]}"
            )
        elif runs:
            say(f"==> Interrupted: marked {dag_id} run(s) {', '.join(runs)} failed (and their running tasks)")


def run_rollout(spec, version: str, env: dict[str, str], *, stamp: str) -> dict:
    """``airflow dags test <model>_rollout`` for ``version`` under generated traffic, then stop the services.

    The first version has nothing to compare against and needs no traffic; later ones are judged
    on live requests: the traffic generator sends the latest holdout to the model's endpoint
    (10 requests/s, 10 rows each) while the stages run. Every process the rollout started (the
    splitter and the ``bentoml serve`` processes) is stopped afterwards; ``make serve`` serves
    the champion again.
    """
    import subprocess
    import sys

    from include.modelops.platform import local_stack, tracking
    from include.modelops.rollout.local import LocalBackend

    s = get_settings()
    env = {
        **env,
        "MODELOPS_ROLLOUT_PORT": env.get("MODELOPS_ROLLOUT_PORT") or str(local_stack.free_port()),
        # stable and canary share this machine with Airflow and the traffic generator: one worker each
        "MODELOPS_SERVE_WORKERS": env.get("MODELOPS_SERVE_WORKERS") or "1",
    }
    url = f"http://127.0.0.1:{env['MODELOPS_ROLLOUT_PORT']}"
    os.environ["MLFLOW_TRACKING_URI"] = env["MLFLOW_TRACKING_URI"]
    has_champion = tracking.alias_version(spec.name, tracking.CHAMPION) is not None
    log_file = s.state_dir / "logs" / f"run-{spec.rollout_dag_id}-{stamp}.log"
    traffic_log = s.state_dir / "logs" / f"traffic-{spec.name}-{stamp}.log"
    say(
        f"\n==> Rolling out v{version} behind {url}: airflow dags test {spec.rollout_dag_id}   (full log: {log_file})"
    )
    sender = None
    try:
        if has_champion:
            say(f"==> Sending the latest holdout to {url} while the stages run (log: {traffic_log})")
            with traffic_log.open("w") as out:
                sender = subprocess.Popen(
                    [
                        sys.executable,
                        "-m",
                        "include.modelops.cli",
                        "traffic",
                        "--model",
                        spec.name,
                        "--url",
                        url,
                        "--rate",
                        "10",
                        "--count",
                        "1000000",
                        "--duration",
                        "3600",
                        "--rows-per-request",
                        "10",
                        "--label-delay",
                        "5",
                        "--pending",
                        "write",
                        "--ready-timeout",
                        "600",
                    ],
                    env=env,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
        local_stack.airflow(
            ["dags", "test", spec.rollout_dag_id, "--conf", json.dumps({"version": version})],
            env,
            log_file=log_file,
            echo=True,
        )
    finally:
        if sender is not None:
            processes.stop_process(sender)
        with contextlib.suppress(Exception):
            LocalBackend(spec.name).shutdown()
        say("==> Stopped the rollout's services (`make serve` serves the champion)")
    record = read_record(spec.name, version)
    record["champion"] = tracking.alias_version(spec.name, tracking.CHAMPION)
    record["log_file"] = str(log_file)
    return record
