"""Command line for the embedded default, behind the Makefile targets.

    python -m include.modelops.cli data [--rows N] [--variant V]    # make data
    python -m include.modelops.cli demo [--model NAME]               # make demo
    python -m include.modelops.cli run --model NAME [--data P] [--reason R]   # make run
    python -m include.modelops.cli check-specs                       # make check-specs
    python -m include.modelops.cli traffic [--rate R --count N ...]  # make traffic
    python -m include.modelops.cli demo-bad-canary [--fault F]       # make demo-bad-canary

``demo`` starts an MLflow server, runs the model's training DAG once with
``airflow dags test`` (a real Airflow, SQLite metadata DB), prints a summary of every
step and where to look, and stops what it started.

Exit codes of ``demo``, ``run`` and ``demo-drift`` (whether the candidate reached production):
0 promoted (it is the champion now), 1 the run failed (a step failed, or the rollout did not
complete), 2 a usage error (unknown model, bad spec, missing ``--data``), 3 not promoted
(rejected by the gate or an approver, or rolled back): the champion, if any, is unchanged.
``demo-bad-canary`` exits 0 when the broken candidate was rolled back, as it should be.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import sys
import time
from pathlib import Path

from include.modelops.platform import processes
from include.modelops.platform.tags import TAG_BENTO_TAG, TAG_DEPLOYABLE, TAG_FAULT
from include.modelops.rollout.record import read_record
from include.modelops.settings import get_settings

DEFAULT_MODEL = "fraud_detection"
# Exit codes: did the candidate reach production? (documented in `make help` and the README)
EXIT_PROMOTED, EXIT_FAILED, EXIT_USAGE, EXIT_NOT_PROMOTED = 0, 1, 2, 3
UI_MLFLOW_PORT, UI_AIRFLOW_PORT = 5000, 8080  # where `make up` serves the UIs


def _print(msg: str = "") -> None:
    print(msg, flush=True)


def cmd_data(args: argparse.Namespace) -> int:
    from include.modelops.data.example import generate_transactions

    out = Path(args.out) if args.out else get_settings().state_dir / "data" / "fraud_transactions"
    try:
        info = generate_transactions(
            out, rows=args.rows, days=args.days, seed=args.seed, variant=args.variant
        )
    except ValueError as exc:  # unknown variant, or --out is a folder that is not a dataset
        _print(f"error: {exc}")
        return 2
    _print(
        f"Wrote {info['rows']:,} rows ({info['positive_rate']:.2%} fraud, variant {info['variant']}) "
        f"in {info['files']} daily partitions to {info['path']}"
    )
    return 0


def cmd_check_specs(args: argparse.Namespace) -> int:
    from include.modelops.spec import ModelSpecError, load_all_specs

    try:
        specs = load_all_specs()
    except ModelSpecError as exc:
        _print(str(exc))
        return 1
    for s in specs:
        _print(f"ok  {s.name}: {s.task.value}, {len(s.features)} features, DAG {s.dag_id}")
    return 0


def _bundled_example_data(spec, state_dir: Path) -> Path | None:
    """The data folder the demo may (re)generate: the bundled example's, inside the state folder.

    Only the reference fraud model gets generated data, and only where the generator owns the
    folder; every other model's data is the user's and is read, never written.
    """
    from include.modelops.data.example import is_generated_dataset

    if spec.name != DEFAULT_MODEL:
        return None
    data_dir = spec.data.resolved_path()
    inside_state = data_dir.is_relative_to(state_dir / "data")
    if inside_state and (not data_dir.exists() or is_generated_dataset(data_dir)):
        return data_dir
    return None


def cmd_draft_spec(args: argparse.Namespace) -> int:
    """Draft include/models/<name>.yaml from a dataset; reads the data, never writes next to it."""
    from include.modelops.data.spec_draft import (
        DEFAULT_SAMPLE_ROWS,
        SpecDraftError,
        draft_spec,
        write_spec_draft,
    )

    try:
        draft = draft_spec(
            args.data,
            args.target,
            args.name,
            fmt=args.format,
            sample_rows=args.sample_rows or DEFAULT_SAMPLE_ROWS,
        )
        path = write_spec_draft(draft, args.out, force=args.force)
    except SpecDraftError as exc:
        _print(f"error: {exc}")
        return 2
    _print(f"Drafted {path} from {draft.data_path}:")
    for line in draft.summary_lines():
        _print(f"  {line}")
    _print(f"Next: review it, replace each TODO, then `make check-specs` and `make run MODEL={draft.name}`.")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from include.modelops.spec import ModelSpecError, load_spec_by_name

    _stop_on_signals()  # SIGTERM too ends the run cleanly: the run is marked failed (_run_training)
    s = get_settings()
    try:
        spec = load_spec_by_name(args.model)
    except ModelSpecError as exc:
        _print(str(exc))
        return 2
    t_start = time.perf_counter()
    data_dir = _bundled_example_data(spec, s.state_dir)
    if data_dir is not None:
        from include.modelops.data.example import generate_transactions

        counter = s.state_dir / "demo" / f"{spec.name}.runs"
        counter.parent.mkdir(parents=True, exist_ok=True)
        runs_before = int(counter.read_text()) if counter.exists() else 0
        if not data_dir.exists() or runs_before:
            # Each later demo run "receives" a week more of transactions, so the new candidate is
            # trained on fresh data and compared with the champion on the latest window.
            days = 60 + 7 * runs_before
            rows = args.rows * days // 60
            what = (
                "the reference dataset"
                if not data_dir.exists()
                else f"new data: {days} days, the latest 7 unseen"
            )
            _print(f"==> Generating {what} ({rows:,} rows) into {data_dir}")
            generate_transactions(data_dir, rows=rows, days=days, seed=42 + runs_before)
        counter.write_text(str(runs_before + 1))
    else:
        _print(
            f"==> {spec.name} reads its data from {spec.data.resolved_path()} as it is "
            f"(the demo generates data only for the bundled example, in its own folder)"
        )
    return _run_training(spec, {}, t_start=t_start, again=f"make demo MODEL={spec.name}")


def cmd_run(args: argparse.Namespace) -> int:
    """Run one model's training DAG locally (real Airflow, as the demo does) with a run conf."""
    from include.modelops.spec import ModelSpecError, load_spec_by_name

    _stop_on_signals()  # SIGTERM too ends the run cleanly: the run is marked failed (_run_training)
    try:
        spec = load_spec_by_name(args.model)
    except ModelSpecError as exc:
        _print(str(exc))
        return 2
    conf: dict[str, str] = {}
    if args.data:
        data = Path(args.data).expanduser().resolve()
        if not data.exists():
            _print(f"error: DATA={args.data}: no such file or folder ({data})")
            return 2
        conf["data_path"] = str(data)
    if args.reason:
        conf["reason"] = args.reason
    again = f"make run MODEL={spec.name}" + (f" DATA={args.data}" if args.data else "")
    return _run_training(spec, conf, t_start=time.perf_counter(), again=again)


def _run_training(spec, conf: dict[str, str], *, t_start: float, again: str) -> int:
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
        uri = _mlflow_server_for_run(running)
        if uri is None:
            uri = os.environ["MLFLOW_TRACKING_URI"]
            _print(f"==> Using the MLflow server at {uri} (MLFLOW_TRACKING_URI)")
        env = local_stack.stack_env(s.state_dir, uri)
        # Links in cards and reports point at the MLflow UI that `make up` serves, not this short-lived server.
        env.setdefault("MODELOPS_MLFLOW_UI_URL", f"http://127.0.0.1:{UI_MLFLOW_PORT}")
        _print(f"==> Airflow metadata DB: {env['AIRFLOW_HOME']}")
        local_stack.migrate_airflow_db(env)
        stamp = time.strftime("%Y%m%d-%H%M%S")
        log_file = s.state_dir / "logs" / f"run-{spec.dag_id}-{stamp}.log"
        cmd = ["dags", "test", spec.dag_id]
        if conf:
            cmd += ["--conf", json.dumps(conf)]
            _print(f"==> Run conf: {json.dumps(conf)}")
        _print(f"==> airflow {' '.join(cmd[:3])}   (full log: {log_file})")
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
                    rollout = _run_rollout(spec, str(version), env, stamp=stamp)
                    summary["champion_version"] = rollout.get("champion")
        except KeyboardInterrupt:
            _fail_interrupted_runs(
                [spec.dag_id, *([spec.rollout_dag_id] if spec.rollout else [])], env, since
            )
            _print(f"==> Interrupted; full log: {log_file}")
            return 130
    if summary is None:
        _print(f"No run summary was written; the DAG run failed early. See {log_file}")
        return 1
    failed = res.returncode != 0 or bool(summary.get("failed_steps"))
    code = _print_summary(
        summary,
        dag_s=dag_s,
        total_s=time.perf_counter() - t_start,
        log_file=log_file,
        rollout=rollout,
        failed=failed,
    )
    if code == EXIT_FAILED:
        _print(f"The run failed: fix what the failed step's log says, then run `{again}` again.")
    else:
        _print(f"Run `{again}` again to train a new candidate against the champion.")
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
            _print(
                f"==> Could not mark the interrupted {dag_id} run failed (mark it failed in the UI): "
                f"{res.stderr.strip()[-500:]}"
            )
        elif runs:
            _print(
                f"==> Interrupted: marked {dag_id} run(s) {', '.join(runs)} failed (and their running tasks)"
            )


def _run_rollout(spec, version: str, env: dict[str, str], *, stamp: str) -> dict:
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
    _print(
        f"\n==> Rolling out v{version} behind {url}: airflow dags test {spec.rollout_dag_id}   (full log: {log_file})"
    )
    sender = None
    try:
        if has_champion:
            _print(f"==> Sending the latest holdout to {url} while the stages run (log: {traffic_log})")
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
        _print("==> Stopped the rollout's services (`make serve` serves the champion)")
    record = read_record(spec.name, version)
    record["champion"] = tracking.alias_version(spec.name, tracking.CHAMPION)
    record["log_file"] = str(log_file)
    return record


def _print_rollout(rollout: dict) -> None:
    from include.modelops.rollout.analysis import Analysis, Check, render_table

    _print(f"\nRollout of v{rollout.get('version')}: {rollout.get('status', 'not started')}")
    if rollout.get("first_deployment"):
        _print("  first version: deployed at 100% after a health check; there was nothing to compare against")
    for stage in rollout.get("stages", []):
        result = stage.get("analysis")
        if result:
            table = render_table(
                Analysis(
                    [Check(**c) for c in result["checks"]],
                    result["canary_requests"],
                    result["stable_requests"],
                ),
                title=f"  stage {stage['name']} ({stage['traffic_percent']}% canary): {stage['outcome']}",
            )
            _print("\n".join(f"    {line}" if i else line for i, line in enumerate(table.splitlines())))
        else:
            _print(f"  stage {stage['name']}: {stage['outcome']} {stage.get('reason') or ''}")
    _print(f"  Airflow log       {rollout.get('log_file')}")


def cmd_demo_bad_canary(args: argparse.Namespace) -> int:
    """Roll out a deliberately broken candidate of the champion and show it rolled back by itself."""
    from include.modelops.platform import local_stack, tracking
    from include.modelops.rollout.faults import register_faulty_candidate
    from include.modelops.serving.bento import build_bento
    from include.modelops.spec import ModelSpecError, load_spec_by_name

    try:
        spec = load_spec_by_name(args.model)
    except ModelSpecError as exc:
        _print(str(exc))
        return 2
    if spec.rollout is None:
        _print(f"{spec.name} has no rollout section in its spec; add `rollout: {{}}` to roll out in stages")
        return 2
    s = get_settings()
    stamp = time.strftime("%Y%m%d-%H%M%S")
    with contextlib.ExitStack() as running:
        uri = _mlflow_server_for_run(running) or os.environ["MLFLOW_TRACKING_URI"]
        env = local_stack.stack_env(s.state_dir, uri)
        # The bento is built here and served by the rollout's tasks: one store for both.
        os.environ.update(MLFLOW_TRACKING_URI=uri, BENTOML_HOME=env["BENTOML_HOME"])
        env.setdefault("MODELOPS_MLFLOW_UI_URL", f"http://127.0.0.1:{UI_MLFLOW_PORT}")
        local_stack.migrate_airflow_db(env)
        champion = tracking.alias_version(spec.name, tracking.CHAMPION)
        if champion is None:
            _print(f"{spec.name} has no champion to protect yet: run `make demo` first")
            return 2
        _print(f"==> Registering a candidate that wraps champion v{champion} with the fault {args.fault!r}")
        version = register_faulty_candidate(
            spec,
            champion,
            args.fault,
            experiment_id=tracking.experiment_id(spec.name),
            workdir=tracking.scratch_dir(),
        )
        tag = build_bento(spec, version, f"models:/{spec.name}/{version}")
        tracking.set_version_tags(
            spec.name, version, {TAG_DEPLOYABLE: "true", TAG_BENTO_TAG: tag, TAG_FAULT: args.fault}
        )
        tracking.set_alias(spec.name, tracking.CHALLENGER, version)
        rollout = _run_rollout(spec, version, env, stamp=stamp)
        _print_rollout(rollout)
        aliases = {a: tracking.alias_version(spec.name, a) for a in (tracking.CHAMPION, tracking.CHALLENGER)}
    rolled_back = rollout.get("status") == "rolled_back"
    _print("")
    if rolled_back:
        stage = (rollout.get("failure") or {}).get("stage")
        _print(
            f"Outcome: not promoted (champion v{aliases['champion']} kept): v{version} was rolled back "
            f"{f'at {stage}' if stage else 'before its first stage'}: {rollout.get('reason')}"
        )
        _print(
            f"Registry: champion v{aliases['champion']}, challenger {aliases['challenger'] or 'none'}; "
            f"see `make audit MODEL={spec.name} VERSION={version}`"
        )
    else:
        _print(
            f"Outcome: the broken v{version} was NOT rolled back ({rollout.get('status')}); see "
            f"{rollout.get('log_file')}"
        )
    return 0 if rolled_back else 1


def _port_or_free(port: int, what: str) -> int:
    """``port`` when it is free, else a free one (another checkout's `make up` may hold the default)."""
    import socket

    from include.modelops.platform import local_stack

    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
            return port
        except OSError:
            pass
    other = local_stack.free_port()
    _print(f"==> Port {port} is taken (another `make up`?); {what} uses {other} instead")
    return other


def _stop_on_signals(*, ignore: bool = False) -> None:
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


def cmd_up(args: argparse.Namespace) -> int:
    """Airflow standalone (API server + UI, scheduler, triggerer, dag processor) and MLflow, until Ctrl-C."""
    import subprocess

    from include.modelops.platform import local_stack
    from include.modelops.spec import ModelSpecError, load_all_specs

    _stop_on_signals()
    processes.claim_processes()  # every process started from here on carries this command's mark
    s = get_settings()
    airflow_port = _port_or_free(args.airflow_port, "Airflow")
    mlflow_port = _port_or_free(args.mlflow_port, "MLflow")
    uri = f"http://127.0.0.1:{mlflow_port}"
    env = local_stack.stack_env(s.state_dir, uri, api_port=airflow_port)
    env["MODELOPS_MLFLOW_UI_URL"] = uri
    mlflow = airflow = None
    try:
        local_stack.migrate_airflow_db(env)
        mlflow = local_stack.start_mlflow(s.state_dir, mlflow_port, env)
        # DAGs first seen by `make demo` / `make run` (airflow dags test) may be paused: a REST
        # trigger would then queue forever. Every model's DAGs are this project's to run. Done
        # before Airflow starts (no other writer on the metadata DB); DAGs not parsed yet are
        # created unpaused (AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION=False in stack_env).
        try:
            dag_ids = [spec.dag_id for spec in load_all_specs()]
        except ModelSpecError:
            dag_ids = []
        if dag_ids:
            pattern = "^(" + "|".join(dag_ids) + ")$"
            res = local_stack.airflow(["dags", "unpause", "--treat-dag-id-as-regex", "-y", pattern], env)
            _print(
                "==> Unpaused " + ", ".join(dag_ids)
                if res.returncode == 0
                else f"==> Could not unpause the DAGs (run `airflow dags unpause <dag_id>` or use the UI): "
                f"{res.stderr.strip()[-300:]}"
            )
        log_file = s.state_dir / "logs" / "airflow-standalone.log"
        _print(f"==> Starting Airflow standalone (log {log_file})")
        airflow = subprocess.Popen(
            [sys.executable, "-m", "airflow", "standalone"],
            env=env,
            start_new_session=True,
            stdout=open(log_file, "ab"),  # noqa: SIM115
            stderr=subprocess.STDOUT,
            umask=local_stack.PRIVATE_UMASK,
        )
        local_stack.wait_http(
            f"{env['AIRFLOW__API__BASE_URL']}/api/v2/monitor/health", 300, airflow, "Airflow API server"
        )
        local_stack.secure_state_dir(s.state_dir, s.inference_log_url)
        pw_file = Path(env["AIRFLOW_HOME"]) / "simple_auth_manager_passwords.json.generated"
        login = json.loads(pw_file.read_text()) if pw_file.exists() else {}
        _print(
            f"\nAirflow UI   {env['AIRFLOW__API__BASE_URL']}   login: "
            + ", ".join(f"{u} / {p}" for u, p in login.items())
        )
        _print(f"MLflow UI    {uri}")
        _print(
            f"REST API     POST http://127.0.0.1:{airflow_port}/auth/token, then "
            f"/api/v2/dags/<dag_id>/dagRuns with a bearer token (see README)"
        )
        _print("Ctrl-C stops both, and every rollout deployment and server their DAG runs started.")
        airflow.wait()
    except KeyboardInterrupt:
        pass
    finally:
        _stop_on_signals(ignore=True)  # a second Ctrl-C must not cut the clean-up short
        if airflow is not None:
            processes.stop_process(airflow, timeout_s=30)
        if mlflow is not None:
            processes.stop_process(mlflow)
        _print("==> Stopped Airflow and MLflow")
        _say_stopped(_stop_started)
    return 0


def _port_is_free(host: str, port: int) -> bool:
    import socket

    with socket.socket() as sock:
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def cmd_serve(args: argparse.Namespace) -> int:
    """Serve the bento of the model's champion (tag recorded on the version), with the inference log on.

    Ctrl-C or SIGTERM stops the server and every process it started (after it flushed its log).
    """
    import contextlib
    import os

    from include.modelops.serving.smoke import ServeStartupError, serve_bento

    _stop_on_signals()
    processes.claim_processes()
    s = get_settings()
    host = "127.0.0.1"
    if not _port_is_free(host, args.port):
        _print(
            f"Port {args.port} on {host} is taken (another `make serve`?). "
            f"Pick another one: `make serve PORT={args.port + 1}`."
        )
        return 2
    try:
        with contextlib.ExitStack() as running:
            uri = _mlflow_for_reading(running)
            if uri is None:
                return 1
            os.environ["MLFLOW_TRACKING_URI"] = uri
            from include.modelops.platform import tracking

            version = tracking.alias_version(args.model, tracking.CHAMPION)
            tag = tracking.version_info(args.model, version)["tags"].get(TAG_BENTO_TAG) if version else None
        if not tag:
            _print(f"{args.model} has no champion with a bento yet: run `make demo` first.")
            return 1
        variant = s.serve_variant
        log_url = s.inference_log_url if s.inference_log_enabled else None
        _print(f"==> Starting {tag} (champion v{version}, variant {variant}) on http://{host}:{args.port}")
        with serve_bento(tag, host=host, port=args.port, log_dir=s.state_dir / "logs" / "serve") as served:
            _print(
                f"\nServing {args.model} v{version}   http://{host}:{args.port}   (ready in {served.startup_s:.0f} s)"
            )
            _print(
                f"  predict      curl -s -X POST http://{host}:{args.port}/predict -H 'Content-Type: application/json' "
                f"-d '{{\"rows\": [...]}}'   (API docs: http://{host}:{args.port}/docs)"
            )
            _print(f"  metrics      http://{host}:{args.port}/metrics")
            _print(f"  server log   {served.log_path}")
            if log_url:
                _print(f"  inference log  {log_url}/predictions/model={args.model}/hour=<UTC hour>/*.parquet")
                _print(
                    f'  read it      .venv/bin/python -c "from include.modelops.serving.inference_log import '
                    f"read_window; print(read_window('{args.model}'))\""
                )
            else:
                _print("  inference log  off (MODELOPS_INFERENCE_LOG=off)")
            _print("Ctrl-C stops it.")
            served.proc.wait()
            _print(f"bentoml serve exited with code {served.proc.returncode}; see {served.log_path}")
            return 1
    except KeyboardInterrupt:
        _print("\n==> Stopped (the inference log was flushed)")
        return 0
    except ServeStartupError as exc:
        _print(str(exc))
        return 1
    finally:
        _say_stopped(_stop_started)  # anything left of the server (a worker that left its group)


def _mlflow_server_for_run(running: contextlib.ExitStack, *, say_stopped: bool = True) -> str | None:
    """Start a temporary MLflow server on this checkout's store unless MLFLOW_TRACKING_URI is set.

    Returns the started server's URI (stopped with ``running``), or None when a URI is configured.
    The command's first call also makes ``running`` stop, last, everything the command started
    that is still running (rollout deployments, servers its tasks started: rollout.local.stop_started).
    """
    from include.modelops.platform import local_stack

    if processes.claim_processes():
        _stop_on_signals()  # SIGTERM too unwinds ``running``
        running.callback(_say_stopped, _stop_started)
    if os.environ.get("MLFLOW_TRACKING_URI"):
        return None
    s = get_settings()
    port = local_stack.free_port()
    uri = f"http://127.0.0.1:{port}"
    _print(f"==> Starting MLflow tracking server on {uri} (store: {s.state_dir / 'mlflow'})")
    proc = local_stack.start_mlflow(s.state_dir, port, local_stack.stack_env(s.state_dir, uri))
    if say_stopped:
        running.callback(_print, "==> Stopped the MLflow server")
    running.callback(processes.stop_process, proc)
    return uri


def _stop_started() -> list[str]:
    """Stop what this command started (``rollout.local.stop_started``; imported late: it pulls in serving)."""
    from include.modelops.rollout.local import stop_started

    return stop_started()


def _say_stopped(stop) -> None:
    """Run ``stop`` (rollout.local.stop_started) and say what it stopped, if anything."""
    stopped = stop()
    if stopped:
        _print("==> Stopped " + ", ".join(stopped))


def _mlflow_for_reading(running: contextlib.ExitStack) -> str | None:
    """A tracking URI to read the registry from: the configured one if it answers (or is a
    local file or database store); unset, or a local server that does not answer, a temporary
    server on this checkout's store (stopped with ``running``). None, after printing why, when
    there is nothing to read."""
    import urllib.parse
    import urllib.request

    from include.modelops.platform import local_stack

    s = get_settings()
    uri = s.mlflow_tracking_uri
    db = s.state_dir / "mlflow" / "mlflow.db"
    if not uri:
        # This checkout's own store, never whatever happens to answer on a well-known port.
        if not db.exists():
            _print(
                f"There is no MLflow store at {db} yet: run `make demo` or `make run MODEL=...` first "
                f"(or set MLFLOW_TRACKING_URI to read another server)."
            )
            return None
        print(f"(reading this checkout's MLflow store {db} through a temporary server)", file=sys.stderr)
        return running.enter_context(local_stack.mlflow_server(s.state_dir))
    if not uri.startswith(("http://", "https://")):
        return uri
    try:
        with urllib.request.urlopen(f"{uri.rstrip('/')}/health", timeout=3) as r:
            if r.status < 500:
                return uri
    except OSError:
        pass
    local = urllib.parse.urlparse(uri).hostname in ("127.0.0.1", "localhost")
    if not local:
        _print(f"MLflow at {uri} does not answer: check MLFLOW_TRACKING_URI and the server.")
        return None
    if not db.exists():
        _print(
            f"No MLflow server answers at {uri} and there is no local store at {db}: run `make demo` first."
        )
        return None
    print(f"(no MLflow server at {uri}: reading {db} through a temporary one)", file=sys.stderr)
    return running.enter_context(local_stack.mlflow_server(s.state_dir))


def cmd_audit(args: argparse.Namespace) -> int:
    """Print the lifecycle of a model (or one version) from MLflow and Airflow; read-only."""
    import contextlib
    import os

    from include.modelops.governance import audit
    from include.modelops.platform import local_stack

    s = get_settings()

    with contextlib.ExitStack() as running:
        uri = _mlflow_for_reading(running)
        if uri is None:
            return 1
        if uri != s.mlflow_tracking_uri:  # a temporary server on this checkout's store
            os.environ["MLFLOW_TRACKING_URI"] = uri
            # Links should point where `make up` serves MLflow, not at this short-lived server.
            os.environ.setdefault("MODELOPS_MLFLOW_UI_URL", f"http://127.0.0.1:{UI_MLFLOW_PORT}")
        env = local_stack.stack_env(s.state_dir, uri)
        try:
            text = audit.report(args.model, args.version, airflow_env=None if args.no_airflow else env)
        except audit.AuditError as exc:
            _print(str(exc))
            return 1
    print(text, end="", flush=True)
    return 0


def cmd_traffic(args: argparse.Namespace) -> int:
    """Send rows to a serving endpoint at a set rate; write their true labels after a delay."""
    import numpy as np

    from include.modelops.serving import traffic
    from include.modelops.spec import ModelSpecError, load_spec_by_name

    try:
        spec = load_spec_by_name(args.model)
        cfg = traffic.TrafficConfig(
            url=args.url,
            rate=args.rate,
            count=args.count,
            duration_s=args.duration,
            rows_per_request=args.rows_per_request,
            label_delay_s=args.label_delay,
            label_jitter_s=args.label_jitter,
            pending=args.pending,
            timeout_s=args.timeout,
            max_in_flight=args.max_in_flight,
            progress_every_s=args.progress_every,
            send_entity_ids=not args.no_entity_ids,
            seed=args.seed,
        )
        cfg.check()
        drift = traffic.parse_drift(args.drift, spec)
        base_url = traffic.check_local_url(cfg.url)
        traffic.wait_until_ready(base_url, timeout_s=args.ready_timeout)
        frame, where = traffic.load_rows(spec, args.source, rows=args.generated_rows, seed=args.seed)
        frame = traffic.apply_drift(spec, frame, drift, np.random.default_rng(args.seed))
    except (traffic.TrafficError, ModelSpecError) as exc:
        _print(f"error: {exc}")
        return 2
    feed = get_settings().inference_log_url
    _print(
        f"==> {spec.name}: {cfg.rate:g} requests/s x {cfg.rows_per_request} row(s) to {base_url}/predict, "
        f"until {cfg.count:,} requests or {cfg.duration_s:g} s"
    )
    _print(f"    rows: {where}; drift: {drift.describe()}")
    _print(
        f"    labels: {cfg.label_delay_s:g} s after each answer (+ up to {cfg.label_jitter_s:g} s) into "
        f"{feed}/labels/model={spec.name}/"
    )
    summary = traffic.run_traffic(spec, frame, cfg, echo=_print)
    _print("\n" + summary.report())
    _print(
        f"\nRead them joined: label_feed.join_labels(log_store.read_records('predictions', {spec.name!r}), "
        f"label_feed.read_labels({spec.name!r}))"
    )
    if args.json:
        Path(args.json).write_text(json.dumps(summary.to_dict(), indent=2))
    return 0 if summary.answered else 1


DEMO_DRIFT = "scale=amount:5 scale=distance_from_home_km:8 shift=merchant_category:gaming:0.7 shift=region:north:0.8 segment=channel:online"


def cmd_demo_drift(args: argparse.Namespace) -> int:
    """Serve the champion, send normal then drifted traffic, monitor both windows, retrain once.

    ``make demo-drift``: trains a champion first when there is none (as ``make demo``), serves its
    bento with the inference log on, sends the holdout's rows as they are, then with drift injected
    into one segment (labels follow a second later), runs ``<model>_monitoring`` over each window
    with ``airflow dags test``, and runs the training DAG with the retrain request of the window
    that triggered (what the scheduler starts on the ``<model>.retrain_requested`` asset event).
    """
    import contextlib
    import os
    from datetime import UTC, datetime

    import numpy as np

    from include.modelops.platform import local_stack
    from include.modelops.serving import traffic
    from include.modelops.serving.smoke import ServeStartupError, serve_bento
    from include.modelops.spec import ModelSpecError, load_spec_by_name

    _stop_on_signals()
    s = get_settings()
    try:
        spec = load_spec_by_name(args.model)
        drift = traffic.parse_drift(args.drift, spec)
    except (ModelSpecError, traffic.TrafficError) as exc:
        _print(f"error: {exc}")
        return 2
    t_start = time.perf_counter()
    try:
        with contextlib.ExitStack() as running:
            started = _mlflow_server_for_run(running, say_stopped=False)
            if started is not None:
                os.environ["MLFLOW_TRACKING_URI"] = started  # every step below (and the training run) uses it
            uri = os.environ["MLFLOW_TRACKING_URI"]
            os.environ.setdefault("MODELOPS_MLFLOW_UI_URL", f"http://127.0.0.1:{UI_MLFLOW_PORT}")
            from include.modelops.pipelines import monitoring as monitoring
            from include.modelops.platform import tracking

            version = tracking.alias_version(spec.name, tracking.CHAMPION)
            if version is None:
                _print(f"==> {spec.name} has no champion yet: training one first (as `make demo`)")
                if cmd_demo(argparse.Namespace(model=spec.name, rows=args.rows)) != 0:
                    return 1
                version = tracking.alias_version(spec.name, tracking.CHAMPION)
            tag = tracking.version_info(spec.name, version)["tags"].get(TAG_BENTO_TAG) if version else None
            if not tag:
                _print(f"{spec.name} has no champion with a bento: see `make audit MODEL={spec.name}`.")
                return 1
            frame, where = traffic.load_rows(spec, "holdout")
            port = local_stack.free_port()
            windows = []
            _print(f"==> Serving {tag} (champion v{version}) on http://127.0.0.1:{port}; rows from {where}")
            with serve_bento(
                tag, host="127.0.0.1", port=port, log_dir=s.state_dir / "logs" / "serve"
            ) as served:
                for name, knobs in (("normal", traffic.Drift()), ("drifted", drift)):
                    rows = traffic.apply_drift(spec, frame, knobs, np.random.default_rng(args.seed))
                    cfg = traffic.TrafficConfig(
                        url=f"http://127.0.0.1:{port}",
                        rate=args.rate,
                        count=args.requests,
                        duration_s=3600,
                        rows_per_request=args.batch,
                        label_delay_s=1.0,
                        pending="write",
                        progress_every_s=10,
                        seed=args.seed,
                    )
                    _print(
                        f"\n==> {name} traffic: {args.requests} requests x {args.batch} rows, "
                        f"drift: {knobs.describe()}"
                    )
                    start = datetime.now(UTC)
                    summary = traffic.run_traffic(spec, rows, cfg, echo=_print)
                    windows.append((name, start, datetime.now(UTC)))
                    _print(summary.report())
                _print(
                    f"==> Stopping the service (it flushes its inference log; server log {served.log_path})"
                )
            env = local_stack.stack_env(s.state_dir, uri)
            env["MODELOPS_MLFLOW_UI_URL"] = os.environ["MODELOPS_MLFLOW_UI_URL"]
            local_stack.migrate_airflow_db(env)
            request = None
            for name, start, end in windows:
                conf = {"window_start": start.isoformat(), "window_end": end.isoformat()}
                log_file = (
                    s.state_dir / "logs" / f"run-{spec.name}_monitoring-{time.strftime('%Y%m%d-%H%M%S')}.log"
                )
                _print(
                    f"\n==> airflow dags test {spec.name}_monitoring over the {name} window "
                    f"{conf['window_start']} .. {conf['window_end']}   (log: {log_file})"
                )
                res = local_stack.airflow(
                    ["dags", "test", f"{spec.name}_monitoring", "--conf", json.dumps(conf)],
                    env,
                    log_file=log_file,
                )
                decision = monitoring.recorded_decision(spec.name, f"{start.isoformat()}/{end.isoformat()}")
                if res.returncode != 0 or decision is None:
                    _print(f"The monitoring run failed; see {log_file}")
                    return 1
                _print(
                    f"    {decision['rows']} rows, {decision['labelled_rows']} labelled; "
                    f"outcome: {decision['outcome'].upper()}: {decision['reason']}"
                )
                _print(
                    f"    report: {decision['report_path'] or 'none'}  ({decision['report'] or decision['run_url']})"
                )
                if decision["outcome"] == "retrain":
                    extra = monitoring.retrain_request(decision)
                    request = {
                        k: extra[k] for k in ("reason", "drift_report", "labelled_data") if extra.get(k)
                    }
            if request is None:
                _print(
                    "\nNo retrain was requested (see the reasons above; `make audit` lists every decision)."
                )
                return 0
            _print("\n==> Retraining, as the scheduler does on the retrain_requested asset event")
            return _run_training(spec, request, t_start=t_start, again="make demo-drift")
    except KeyboardInterrupt:
        _print("\n==> Stopped")
        return 130
    except (traffic.TrafficError, ServeStartupError) as exc:
        _print(f"error: {exc}")
        return 1


def _approval_note(r: dict) -> str:
    """One line for the approval: a policy decision, or a human's answer from the HITL operator."""
    if not r:
        return ""
    if "chosen_options" in r:  # answered by a person in the Airflow UI or through the REST API
        who = (r.get("responded_by_user") or {}).get("id", "timeout")
        return f"{r['chosen_options'][0]} by {who}"
    return f"{r.get('decision', '')} by {r.get('by', '')}"


def outcome(summary: dict, rollout: dict | None = None, *, failed: bool = False) -> tuple[int, str]:
    """The run's exit code and its ``Outcome:`` line: did the candidate reach production, and if not, why.

    Args:
        summary: the training DAG run's summary (``summarize_run``); ``champion_version`` is the
            champion after the run (and after its rollout, when there was one).
        rollout: the rollout record when the candidate was rolled out, else None.
        failed: the DAG run failed (its exit code, or a failed step).

    Returns:
        ``(EXIT_PROMOTED | EXIT_FAILED | EXIT_NOT_PROMOTED, "Outcome: ...")``.
    """
    steps = summary.get("steps") or {}

    def result(task: str) -> dict:
        return (steps.get(task) or {}).get("result") or {}

    champion = summary.get("champion_version")
    kept = f"champion v{champion} kept" if champion else "no champion yet"
    version = result("register_candidate").get("version")
    candidate = f"v{version}" if version else "the candidate"
    evaluated = result("evaluate_candidate")
    if failed:
        stopped = ", ".join(summary.get("failed_steps") or []) or "a step (see the Airflow log)"
        return EXIT_FAILED, f"Outcome: not promoted ({kept}): the run failed at {stopped}."
    if rollout is not None:
        status = rollout.get("status") or "not started"
        if status == "promoted":
            return (
                EXIT_PROMOTED,
                f"Outcome: {candidate} is the new champion. {evaluated.get('summary', '')}".rstrip(),
            )
        if status == "rolled_back":
            stage = (rollout.get("failure") or {}).get("stage")
            where = f"at {stage}" if stage else "before its first stage"
            return EXIT_NOT_PROMOTED, (
                f"Outcome: not promoted ({kept}): {candidate} was rolled back {where}: "
                f"{rollout.get('reason') or 'see the rollout log'}"
            )
        return EXIT_FAILED, (
            f"Outcome: not promoted ({kept}): the rollout of {candidate} did not complete "
            f"({status}); see {rollout.get('log_file')}"
        )
    if (steps.get("promote_to_champion") or {}).get("state") == "success":
        return (
            EXIT_PROMOTED,
            f"Outcome: {candidate} is the new champion. {evaluated.get('summary', '')}".rstrip(),
        )
    if evaluated and not evaluated.get("passed", True):
        return EXIT_NOT_PROMOTED, f"Outcome: not promoted ({kept}). {evaluated.get('summary', 'REJECTED')}"
    approvals = [t for t in steps if t == "approve" or t.startswith("approve_")]
    answers = [f"{t}: {_approval_note(result(t))}" for t in approvals if result(t)]
    skipped = next((t for t, r in steps.items() if (r or {}).get("state") == "skipped"), None)
    why = "; ".join(answers) or (f"{skipped} was skipped" if skipped else "it stopped before production")
    return EXIT_NOT_PROMOTED, f"Outcome: not promoted ({kept}): {candidate} passed the gate; {why}."


def _print_summary(
    summary: dict,
    *,
    dag_s: float,
    total_s: float,
    log_file: Path,
    rollout: dict | None = None,
    failed: bool = False,
) -> int:
    """Print every step, the outcome and where to look; return the exit code (see ``outcome``)."""
    s = get_settings()
    steps = summary["steps"]

    def result(task: str) -> dict:
        return steps.get(task, {}).get("result") or {}

    _print("\n" + "=" * 78)
    _print(f"Training run of '{summary['model']}'  ({summary['dag_run_id']})")
    _print("=" * 78)
    notes = {
        "validate_dataset": lambda r: r.get("summary", ""),
        "split_dataset": lambda r: f"{r.get('train_rows', 0):,} train / {r.get('holdout_rows', 0):,} holdout, "
        f"{r.get('split', '')}",
        "train_candidate": lambda r: f"MLflow run {r.get('run_id', '')}",
        "evaluate_candidate": lambda r: r.get("summary", ""),
        "register_candidate": lambda r: f"version {r.get('version', '')}",
        "generate_model_card": lambda r: r.get("card_html", ""),
        "approve": _approval_note,
        "package_bento": lambda r: r.get("bento_tag", ""),
        "smoke_serve_bento": lambda r: f"served predictions match offline (max |diff| {r.get('max_abs_diff')})"
        if r
        else "",
        "promote_to_champion": lambda r: f"champion -> v{r.get('champion')} (previous: {r.get('previous')})"
        if r
        else "",
        "update_model_card": lambda r: "regenerated with the approval and alias history" if r else "",
    }
    for task, fn in notes.items():
        state = steps.get(task, {}).get("state") or "not run"
        try:
            note = fn(result(task))
        except Exception:  # a summary line must never hide the rest
            note = ""
        if task == "promote_to_champion" and task not in steps and rollout is not None:
            state, note = "-", f"the {summary['model']}_rollout DAG moves champion (below)"
        _print(f"  {task:<22} {state:<15} {note}")
    evaluated = result("evaluate_candidate")
    if rollout is not None:
        _print_rollout(rollout)
    code, line = outcome(summary, rollout, failed=failed)
    _print("")
    _print(line)
    _print("\nWhere to look:")
    _print(
        f"  MLflow store      {s.state_dir / 'mlflow'}  (UI: `make up`, or `mlflow ui --backend-store-uri "
        f"sqlite:///{s.state_dir / 'mlflow' / 'mlflow.db'}`)"
    )
    _print(f"  Airflow home      {s.state_dir / 'airflow'}  (UI: `make up`)")
    if result("package_bento"):
        _print(
            f"  Bento             {result('package_bento').get('bento_tag')}  (BENTOML_HOME={s.state_dir / 'bentoml'}, the store the DAG runs use; "
            f"serve it: `make serve`)"
        )
    card = _current_card(
        summary["model"],
        result("register_candidate").get("version"),
        result("generate_model_card").get("card_html"),
    )
    if card:
        _print(f"  Model card        {card}")
    if evaluated:
        _print(f"  Evaluation report {evaluated.get('report_html')}")
    _print(f"  Run folder        {summary.get('run_dir')}")
    _print(f"  Airflow log       {log_file}")
    _print(f"\nDAG run took {dag_s:.0f} s; the whole command {total_s:.0f} s.")
    return code


def _current_card(model: str, version: str | None, fallback: str | None) -> str | None:
    """The version's current card: the local copy every regeneration (training, rollout, rollback) rewrites."""
    from include.modelops.governance.model_card import card_dir

    current = card_dir(model, str(version)) / "model_card.html" if version else None
    return str(current) if current is not None and current.exists() else fallback


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    p = argparse.ArgumentParser(
        prog="python -m include.modelops.cli",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = p.add_subparsers(dest="cmd", required=True)
    d = sub.add_parser("data", help="generate the reference fraud dataset (or a variant)")
    d.add_argument("--out", default=None, help="folder (default: <state>/data/fraud_transactions)")
    d.add_argument("--rows", type=int, default=100_000)
    d.add_argument("--days", type=int, default=60)
    d.add_argument("--seed", type=int, default=42)
    d.add_argument("--variant", default="reference")
    d.set_defaults(fn=cmd_data)
    m = sub.add_parser("demo", help="run the training DAG once with a real Airflow and MLflow")
    m.add_argument("--model", default=DEFAULT_MODEL)
    m.add_argument("--rows", type=int, default=100_000, help="rows to generate when the data is missing")
    m.add_argument("--mlflow-port", type=int, default=None, help="default: a free port")
    m.set_defaults(fn=cmd_demo)
    b = sub.add_parser(
        "demo-bad-canary", help="roll out a broken candidate of the champion; watch it rolled back"
    )
    b.add_argument("--model", default=DEFAULT_MODEL)
    b.add_argument(
        "--fault",
        default="error",
        choices=("error", "shift", "slow"),
        help="error: every prediction fails (500); shift: scores +0.5; slow: 300 ms per call",
    )
    b.set_defaults(fn=cmd_demo_bad_canary)
    r = sub.add_parser("run", help="run a model's training DAG once, locally, optionally on other data")
    r.add_argument("--model", default=DEFAULT_MODEL)
    r.add_argument(
        "--data", default=None, help="train on this file or folder instead of the spec's data.path"
    )
    r.add_argument("--reason", default=None, help="why this run was triggered (recorded on the version)")
    r.set_defaults(fn=cmd_run)
    u = sub.add_parser("up", help="Airflow standalone + MLflow for interactive use (Ctrl-C stops)")
    u.add_argument("--airflow-port", type=int, default=UI_AIRFLOW_PORT)
    u.add_argument("--mlflow-port", type=int, default=UI_MLFLOW_PORT)
    u.set_defaults(fn=cmd_up)
    v = sub.add_parser("serve", help="serve the champion's bento")
    v.add_argument("--model", default=DEFAULT_MODEL)
    v.add_argument(
        "--port", type=int, default=int(os.environ.get("PORT") or 3000), help="default: $PORT, else 3000"
    )
    v.set_defaults(fn=cmd_serve)
    a = sub.add_parser("audit", help="lifecycle of a model or version: evidence, approvals, alias changes")
    a.add_argument("--model", default=DEFAULT_MODEL)
    a.add_argument("--version", default=None, help="one version: ends with why it is where it is")
    a.add_argument("--no-airflow", action="store_true", help="MLflow records only (skip the airflow CLI)")
    a.set_defaults(fn=cmd_audit)
    ds = sub.add_parser("draft-spec", help="draft a commented model spec from a CSV/Parquet file or folder")
    ds.add_argument("--data", required=True, help="a CSV or Parquet file, or a folder of them (read only)")
    ds.add_argument("--target", required=True, help="the label column")
    ds.add_argument("--name", required=True, help="model name; writes <out>/<name>.yaml")
    ds.add_argument("--out", default=None, help="folder for the spec (default: include/models)")
    ds.add_argument("--format", default=None, choices=("csv", "parquet"), help="default: from the files")
    ds.add_argument(
        "--sample-rows", type=int, default=None, help="rows read value by value (default 100,000)"
    )
    ds.add_argument("--force", action="store_true", help="replace an existing spec")
    ds.set_defaults(fn=cmd_draft_spec)
    t = sub.add_parser(
        "traffic",
        help="send rows to a serving endpoint; write their labels after a delay",
        description="Send rows of MODEL's data to URL/predict at RATE requests/s until COUNT "
        "requests or DURATION seconds, whichever comes first; write the true labels "
        "of answered rows to the label feed LABEL_DELAY seconds later.",
    )
    t.add_argument("--model", default=DEFAULT_MODEL)
    t.add_argument("--url", default="http://127.0.0.1:3000", help="the service (this machine only)")
    t.add_argument("--rate", type=float, default=10.0, help="requests per second (default 10)")
    t.add_argument("--count", type=int, default=1_000, help="stop after this many requests (default 1000)")
    t.add_argument("--duration", type=float, default=60.0, help="stop after this many seconds (default 60)")
    t.add_argument("--rows-per-request", type=int, default=1, help="rows in each request (default 1)")
    t.add_argument(
        "--source",
        default="holdout",
        help="holdout (latest training run's), data (the spec's), generated[:variant], or a path",
    )
    t.add_argument(
        "--generated-rows", type=int, default=20_000, help="rows to generate for --source generated"
    )
    t.add_argument(
        "--drift",
        default="",
        help="e.g. 'scale=amount:3 shift=merchant_category:gaming:0.5 segment=region:north' (see README)",
    )
    t.add_argument(
        "--label-delay", type=float, default=30.0, help="seconds from answer to label (default 30)"
    )
    t.add_argument(
        "--label-jitter", type=float, default=0.0, help="extra random delay, up to this many seconds"
    )
    t.add_argument(
        "--pending",
        choices=["wait", "write", "drop"],
        default="wait",
        help="labels not yet due at the end: wait for them (default), write them now, or drop them",
    )
    t.add_argument("--timeout", type=float, default=10.0, help="per-request timeout in seconds")
    t.add_argument("--max-in-flight", type=int, default=64, help="most requests outstanding at once")
    t.add_argument("--progress-every", type=float, default=5.0, help="seconds between progress lines")
    t.add_argument(
        "--ready-timeout", type=float, default=10.0, help="how long to wait for the service's /readyz"
    )
    t.add_argument("--no-entity-ids", action="store_true", help="do not send the spec's entity ids")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--json", default=None, help="also write the summary to this JSON file")
    t.set_defaults(fn=cmd_traffic)
    dd = sub.add_parser(
        "demo-drift", help="serve the champion, normal then drifted traffic, monitoring, one retrain"
    )
    dd.add_argument("--model", default=DEFAULT_MODEL)
    dd.add_argument(
        "--drift", default=DEMO_DRIFT, help=f"drift knobs of the second window (default: {DEMO_DRIFT!r})"
    )
    dd.add_argument("--requests", type=int, default=200, help="requests per window (default 200)")
    dd.add_argument("--batch", type=int, default=10, help="rows per request (default 10)")
    dd.add_argument("--rate", type=float, default=20.0, help="requests per second (default 20)")
    dd.add_argument(
        "--rows", type=int, default=100_000, help="rows to generate when there is no champion yet"
    )
    dd.add_argument("--seed", type=int, default=0)
    dd.set_defaults(fn=cmd_demo_drift)
    c = sub.add_parser("check-specs", help="validate every model spec and print the problems")
    c.set_defaults(fn=cmd_check_specs)
    args = p.parse_args(argv)
    from include.modelops.platform import local_stack

    local_stack.quiet_output()
    return args.fn(args)


if __name__ == "__main__":
    sys.exit(main())
