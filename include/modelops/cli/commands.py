"""The product's commands: ``run``, ``up``, ``serve``, ``audit``, ``traffic``, ``check-specs``, ``draft-spec``."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from include.modelops.cli.report import say
from include.modelops.cli.runs import (
    UI_MLFLOW_PORT,
    mlflow_for_reading,
    run_training,
    say_stopped,
    stop_on_signals,
    stop_started_processes,
)
from include.modelops.platform import processes
from include.modelops.platform.tags import TAG_BENTO_TAG
from include.modelops.settings import get_settings


def cmd_check_specs(args: argparse.Namespace) -> int:
    from include.modelops.spec import ModelSpecError, load_all_specs

    try:
        specs = load_all_specs()
    except ModelSpecError as exc:
        say(str(exc))
        return 1
    for s in specs:
        say(f"ok  {s.name}: {s.task.value}, {len(s.features)} features, DAG {s.dag_id}")
    return 0


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
        say(f"error: {exc}")
        return 2
    say(f"Drafted {path} from {draft.data_path}:")
    for line in draft.summary_lines():
        say(f"  {line}")
    say(f"Next: review it, replace each TODO, then `make check-specs` and `make run MODEL={draft.name}`.")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    """Run one model's training DAG locally (real Airflow, as the demo does) with a run conf."""
    from include.modelops.spec import ModelSpecError, load_spec_by_name

    stop_on_signals()  # SIGTERM too ends the run cleanly: the run is marked failed (run_training)
    try:
        spec = load_spec_by_name(args.model)
    except ModelSpecError as exc:
        say(str(exc))
        return 2
    conf: dict[str, str] = {}
    if args.data:
        data = Path(args.data).expanduser().resolve()
        if not data.exists():
            say(f"error: DATA={args.data}: no such file or folder ({data})")
            return 2
        conf["data_path"] = str(data)
    if args.reason:
        conf["reason"] = args.reason
    again = f"make run MODEL={spec.name}" + (f" DATA={args.data}" if args.data else "")
    return run_training(spec, conf, t_start=time.perf_counter(), again=again)


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
    say(f"==> Port {port} is taken (another `make up`?); {what} uses {other} instead")
    return other


def _port_is_free(host: str, port: int) -> bool:
    import socket

    with socket.socket() as sock:
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def cmd_up(args: argparse.Namespace) -> int:
    """Airflow standalone (API server + UI, scheduler, triggerer, dag processor) and MLflow, until Ctrl-C."""
    import subprocess

    from include.modelops.platform import local_stack
    from include.modelops.spec import ModelSpecError, load_all_specs

    stop_on_signals()
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
            say(
                "==> Unpaused " + ", ".join(dag_ids)
                if res.returncode == 0
                else f"==> Could not unpause the DAGs (run `airflow dags unpause <dag_id>` or use the UI): "
                f"{res.stderr.strip()[-300:]}"
            )
        log_file = s.state_dir / "logs" / "airflow-standalone.log"
        say(f"==> Starting Airflow standalone (log {log_file})")
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
        say(
            f"\nAirflow UI   {env['AIRFLOW__API__BASE_URL']}   login: "
            + ", ".join(f"{u} / {p}" for u, p in login.items())
        )
        say(f"MLflow UI    {uri}")
        say(
            f"REST API     POST http://127.0.0.1:{airflow_port}/auth/token, then "
            f"/api/v2/dags/<dag_id>/dagRuns with a bearer token (see README)"
        )
        say("Ctrl-C stops both, and every rollout deployment and server their DAG runs started.")
        airflow.wait()
    except KeyboardInterrupt:
        pass
    finally:
        stop_on_signals(ignore=True)  # a second Ctrl-C must not cut the clean-up short
        if airflow is not None:
            processes.stop_process(airflow, timeout_s=30)
        if mlflow is not None:
            processes.stop_process(mlflow)
        say("==> Stopped Airflow and MLflow")
        say_stopped(stop_started_processes)
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    """Serve the bento of the model's champion (tag recorded on the version), with the inference log on.

    Ctrl-C or SIGTERM stops the server and every process it started (after it flushed its log).
    """
    import contextlib

    from include.modelops.serving.smoke import ServeStartupError, serve_bento

    stop_on_signals()
    processes.claim_processes()
    s = get_settings()
    host = "127.0.0.1"
    if not _port_is_free(host, args.port):
        say(
            f"Port {args.port} on {host} is taken (another `make serve`?). "
            f"Pick another one: `make serve PORT={args.port + 1}`."
        )
        return 2
    try:
        with contextlib.ExitStack() as running:
            uri = mlflow_for_reading(running)
            if uri is None:
                return 1
            os.environ["MLFLOW_TRACKING_URI"] = uri
            from include.modelops.platform import tracking

            version = tracking.alias_version(args.model, tracking.CHAMPION)
            tag = tracking.version_info(args.model, version)["tags"].get(TAG_BENTO_TAG) if version else None
        if not tag:
            say(f"{args.model} has no champion with a bento yet: run `make demo` first.")
            return 1
        variant = s.serve_variant
        log_url = s.inference_log_url if s.inference_log_enabled else None
        say(f"==> Starting {tag} (champion v{version}, variant {variant}) on http://{host}:{args.port}")
        with serve_bento(tag, host=host, port=args.port, log_dir=s.state_dir / "logs" / "serve") as served:
            say(
                f"\nServing {args.model} v{version}   http://{host}:{args.port}   (ready in {served.startup_s:.0f} s)"
            )
            say(
                f"  predict      curl -s -X POST http://{host}:{args.port}/predict -H 'Content-Type: application/json' "
                f"-d '{{\"rows\": [...]}}'   (API docs: http://{host}:{args.port}/docs)"
            )
            say(f"  metrics      http://{host}:{args.port}/metrics")
            say(f"  server log   {served.log_path}")
            if log_url:
                say(f"  inference log  {log_url}/predictions/model={args.model}/hour=<UTC hour>/*.parquet")
                say(
                    f'  read it      .venv/bin/python -c "from include.modelops.serving.inference_log import '
                    f"read_window; print(read_window('{args.model}'))\""
                )
            else:
                say("  inference log  off (MODELOPS_INFERENCE_LOG=off)")
            say("Ctrl-C stops it.")
            served.proc.wait()
            say(f"bentoml serve exited with code {served.proc.returncode}; see {served.log_path}")
            return 1
    except KeyboardInterrupt:
        say("\n==> Stopped (the inference log was flushed)")
        return 0
    except ServeStartupError as exc:
        say(str(exc))
        return 1
    finally:
        say_stopped(stop_started_processes)  # anything left of the server (a worker that left its group)


def cmd_audit(args: argparse.Namespace) -> int:
    """Print the lifecycle of a model (or one version) from MLflow and Airflow; read-only."""
    import contextlib

    from include.modelops.governance import audit
    from include.modelops.platform import local_stack

    s = get_settings()

    with contextlib.ExitStack() as running:
        uri = mlflow_for_reading(running)
        if uri is None:
            return 1
        if uri != s.mlflow_tracking_uri:  # a temporary server on this checkout's store
            os.environ["MLFLOW_TRACKING_URI"] = uri
            # Links should point where `make up` serves MLflow, not at this short-lived server.
            os.environ.setdefault("MODELOPS_MLFLOW_UI_URL", f"http://127.0.0.1:{UI_MLFLOW_PORT}")
        env = local_stack.stack_env(s.state_dir, uri)
        api = None
        if s.airflow_api_url and not args.no_airflow:
            api = audit.AirflowApi(
                s.airflow_api_url,
                token=s.airflow_api_token.get_secret_value() if s.airflow_api_token else None,
                username=s.airflow_api_username or None,
                password=s.airflow_api_password.get_secret_value() if s.airflow_api_password else None,
            )
        try:
            text = audit.report(
                args.model, args.version, airflow_env=None if args.no_airflow else env, airflow_api=api
            )
        except audit.AuditError as exc:
            say(str(exc))
            return 1
    print(text, end="", flush=True)
    return 0


def cmd_backtest(args: argparse.Namespace) -> int:
    """Replay the model's recorded gate decisions under a changed spec; print what would flip. Read-only."""
    import contextlib
    import os

    from include.modelops.governance import backtest
    from include.modelops.spec import ModelSpecError, load_spec, load_spec_by_name

    stop_on_signals()  # Ctrl-C or SIGTERM stops the temporary MLflow server too
    s = get_settings()
    try:
        changed = load_spec(args.spec, named_after_file=False)
        current = load_spec_by_name(args.model)
    except ModelSpecError as exc:
        say(str(exc))
        return 2
    with contextlib.ExitStack() as running:
        uri = mlflow_for_reading(running)
        if uri is None:
            return 1
        if uri != s.mlflow_tracking_uri:
            os.environ["MLFLOW_TRACKING_URI"] = uri
        try:
            result = backtest.run_backtest(args.model, changed, current=current, spec_path=str(args.spec))
        except backtest.BacktestError as exc:
            say(f"error: {exc}")
            return 2
    print(backtest.render_text(result), end="", flush=True)
    if args.html:
        from include.modelops.platform.storage import write_atomic

        write_atomic(Path(args.html), backtest.render_html(result))
        say(f"HTML report: {args.html}")
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
        say(f"error: {exc}")
        return 2
    feed = get_settings().inference_log_url
    say(
        f"==> {spec.name}: {cfg.rate:g} requests/s x {cfg.rows_per_request} row(s) to {base_url}/predict, "
        f"until {cfg.count:,} requests or {cfg.duration_s:g} s"
    )
    say(f"    rows: {where}; drift: {drift.describe()}")
    say(
        f"    labels: {cfg.label_delay_s:g} s after each answer (+ up to {cfg.label_jitter_s:g} s) into "
        f"{feed}/labels/model={spec.name}/"
    )
    summary = traffic.run_traffic(spec, frame, cfg, echo=say)
    say("\n" + summary.report())
    say(
        f"\nRead them joined: label_feed.join_labels(log_store.read_records('predictions', {spec.name!r}), "
        f"label_feed.read_labels({spec.name!r}))"
    )
    if args.json:
        Path(args.json).write_text(json.dumps(summary.to_dict(), indent=2))
    return 0 if summary.answered else 1
