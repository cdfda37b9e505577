"""The demo scripts behind ``make data``, ``make demo``, ``make demo-drift`` and ``make demo-bad-canary``.

Each runs the product's own DAGs (``cli.runs``) on the bundled example (or a model of the user's,
whose data is read, never written), with generated data, traffic, drift or an injected fault.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import time
from pathlib import Path

from include.modelops.cli.report import print_rollout, say
from include.modelops.cli.runs import (
    DEFAULT_MODEL,
    UI_MLFLOW_PORT,
    mlflow_server_for_run,
    run_rollout,
    run_training,
    stop_on_signals,
)
from include.modelops.platform.tags import TAG_BENTO_TAG, TAG_DEPLOYABLE, TAG_FAULT
from include.modelops.settings import get_settings


def cmd_data(args: argparse.Namespace) -> int:
    from include.modelops.data.example import generate_transactions

    out = Path(args.out) if args.out else get_settings().state_dir / "data" / "fraud_transactions"
    try:
        info = generate_transactions(
            out, rows=args.rows, days=args.days, seed=args.seed, variant=args.variant
        )
    except ValueError as exc:  # unknown variant, or --out is a folder that is not a dataset
        say(f"error: {exc}")
        return 2
    say(
        f"Wrote {info['rows']:,} rows ({info['positive_rate']:.2%} fraud, variant {info['variant']}) "
        f"in {info['files']} daily partitions to {info['path']}"
    )
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


def cmd_demo(args: argparse.Namespace) -> int:
    from include.modelops.spec import ModelSpecError, load_spec_by_name

    stop_on_signals()  # SIGTERM too ends the run cleanly: the run is marked failed (run_training)
    s = get_settings()
    try:
        spec = load_spec_by_name(args.model)
    except ModelSpecError as exc:
        say(str(exc))
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
            say(f"==> Generating {what} ({rows:,} rows) into {data_dir}")
            generate_transactions(data_dir, rows=rows, days=days, seed=42 + runs_before)
        counter.write_text(str(runs_before + 1))
    else:
        say(
            f"==> {spec.name} reads its data from {spec.data.resolved_path()} as it is "
            f"(the demo generates data only for the bundled example, in its own folder)"
        )
    return run_training(spec, {}, t_start=t_start, again=f"make demo MODEL={spec.name}")


def cmd_demo_bad_canary(args: argparse.Namespace) -> int:
    """Roll out a deliberately broken candidate of the champion and show it rolled back by itself."""
    from include.modelops.demo.faults import register_faulty_candidate
    from include.modelops.platform import local_stack, tracking
    from include.modelops.serving.bento import build_bento
    from include.modelops.spec import ModelSpecError, load_spec_by_name

    try:
        spec = load_spec_by_name(args.model)
    except ModelSpecError as exc:
        say(str(exc))
        return 2
    if spec.rollout is None:
        say(f"{spec.name} has no rollout section in its spec; add `rollout: {{}}` to roll out in stages")
        return 2
    s = get_settings()
    stamp = time.strftime("%Y%m%d-%H%M%S")
    with contextlib.ExitStack() as running:
        uri = mlflow_server_for_run(running) or os.environ["MLFLOW_TRACKING_URI"]
        env = local_stack.stack_env(s.state_dir, uri)
        # The bento is built here and served by the rollout's tasks: one store for both.
        os.environ.update(MLFLOW_TRACKING_URI=uri, BENTOML_HOME=env["BENTOML_HOME"])
        env.setdefault("MODELOPS_MLFLOW_UI_URL", f"http://127.0.0.1:{UI_MLFLOW_PORT}")
        local_stack.migrate_airflow_db(env)
        champion = tracking.alias_version(spec.name, tracking.CHAMPION)
        if champion is None:
            say(f"{spec.name} has no champion to protect yet: run `make demo` first")
            return 2
        say(f"==> Registering a candidate that wraps champion v{champion} with the fault {args.fault!r}")
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
        rollout = run_rollout(spec, version, env, stamp=stamp)
        print_rollout(rollout)
        aliases = {a: tracking.alias_version(spec.name, a) for a in (tracking.CHAMPION, tracking.CHALLENGER)}
    rolled_back = rollout.get("status") == "rolled_back"
    say("")
    if rolled_back:
        stage = (rollout.get("failure") or {}).get("stage")
        say(
            f"Outcome: not promoted (champion v{aliases['champion']} kept): v{version} was rolled back "
            f"{f'at {stage}' if stage else 'before its first stage'}: {rollout.get('reason')}"
        )
        say(
            f"Registry: champion v{aliases['champion']}, challenger {aliases['challenger'] or 'none'}; "
            f"see `make audit MODEL={spec.name} VERSION={version}`"
        )
    else:
        say(
            f"Outcome: the broken v{version} was NOT rolled back ({rollout.get('status')}); see "
            f"{rollout.get('log_file')}"
        )
    return 0 if rolled_back else 1


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

    stop_on_signals()
    s = get_settings()
    try:
        spec = load_spec_by_name(args.model)
        drift = traffic.parse_drift(args.drift, spec)
    except (ModelSpecError, traffic.TrafficError) as exc:
        say(f"error: {exc}")
        return 2
    t_start = time.perf_counter()
    try:
        with contextlib.ExitStack() as running:
            started = mlflow_server_for_run(running, say_mlflow_stopped=False)
            if started is not None:
                os.environ["MLFLOW_TRACKING_URI"] = started  # every step below (and the training run) uses it
            uri = os.environ["MLFLOW_TRACKING_URI"]
            os.environ.setdefault("MODELOPS_MLFLOW_UI_URL", f"http://127.0.0.1:{UI_MLFLOW_PORT}")
            from include.modelops.pipelines import monitoring as monitoring
            from include.modelops.platform import tracking

            version = tracking.alias_version(spec.name, tracking.CHAMPION)
            if version is None:
                say(f"==> {spec.name} has no champion yet: training one first (as `make demo`)")
                if cmd_demo(argparse.Namespace(model=spec.name, rows=args.rows)) != 0:
                    return 1
                version = tracking.alias_version(spec.name, tracking.CHAMPION)
            tag = tracking.version_info(spec.name, version)["tags"].get(TAG_BENTO_TAG) if version else None
            if not tag:
                say(f"{spec.name} has no champion with a bento: see `make audit MODEL={spec.name}`.")
                return 1
            frame, where = traffic.load_rows(spec, "holdout")
            port = local_stack.free_port()
            windows = []
            say(f"==> Serving {tag} (champion v{version}) on http://127.0.0.1:{port}; rows from {where}")
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
                    say(
                        f"\n==> {name} traffic: {args.requests} requests x {args.batch} rows, "
                        f"drift: {knobs.describe()}"
                    )
                    start = datetime.now(UTC)
                    summary = traffic.run_traffic(spec, rows, cfg, echo=say)
                    windows.append((name, start, datetime.now(UTC)))
                    say(summary.report())
                say(f"==> Stopping the service (it flushes its inference log; server log {served.log_path})")
            env = local_stack.stack_env(s.state_dir, uri)
            env["MODELOPS_MLFLOW_UI_URL"] = os.environ["MODELOPS_MLFLOW_UI_URL"]
            local_stack.migrate_airflow_db(env)
            request = None
            for name, start, end in windows:
                conf = {"window_start": start.isoformat(), "window_end": end.isoformat()}
                log_file = (
                    s.state_dir / "logs" / f"run-{spec.name}_monitoring-{time.strftime('%Y%m%d-%H%M%S')}.log"
                )
                say(
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
                    say(f"The monitoring run failed; see {log_file}")
                    return 1
                say(
                    f"    {decision['rows']} rows, {decision['labelled_rows']} labelled; "
                    f"outcome: {decision['outcome'].upper()}: {decision['reason']}"
                )
                say(
                    f"    report: {decision['report_path'] or 'none'}  ({decision['report'] or decision['run_url']})"
                )
                if decision["outcome"] == "retrain":
                    extra = monitoring.retrain_request(decision)
                    request = {
                        k: extra[k] for k in ("reason", "drift_report", "labelled_data") if extra.get(k)
                    }
            if request is None:
                say("\nNo retrain was requested (see the reasons above; `make audit` lists every decision).")
                return 0
            say("\n==> Retraining, as the scheduler does on the retrain_requested asset event")
            return run_training(spec, request, t_start=t_start, again="make demo-drift")
    except KeyboardInterrupt:
        say("\n==> Stopped")
        return 130
    except (traffic.TrafficError, ServeStartupError) as exc:
        say(f"error: {exc}")
        return 1
