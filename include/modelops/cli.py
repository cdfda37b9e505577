"""Command line for the embedded default, behind the Makefile targets.

    python -m include.modelops.cli data [--rows N] [--variant V]    # make data
    python -m include.modelops.cli demo [--model NAME]               # make demo
    python -m include.modelops.cli check-specs                       # make check-specs

``demo`` starts an MLflow server, runs the model's training DAG once with
``airflow dags test`` (a real Airflow, SQLite metadata DB), prints a summary of every
step and where to look, and stops what it started.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

from include.modelops.settings import get_settings

DEFAULT_MODEL = "fraud_detection"


def _print(msg: str = "") -> None:
    print(msg, flush=True)


def cmd_data(args: argparse.Namespace) -> int:
    from include.modelops.dataset import generate_transactions

    out = Path(args.out) if args.out else get_settings().state_dir / "data" / "fraud_transactions"
    try:
        info = generate_transactions(out, rows=args.rows, days=args.days, seed=args.seed, variant=args.variant)
    except ValueError as exc:  # unknown variant, or --out is a folder that is not a dataset
        _print(f"error: {exc}")
        return 2
    _print(f"Wrote {info['rows']:,} rows ({info['positive_rate']:.2%} fraud, variant {info['variant']}) "
           f"in {info['files']} daily partitions to {info['path']}")
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


def cmd_demo(args: argparse.Namespace) -> int:
    from include.modelops import local_stack
    from include.modelops.spec import load_spec_by_name

    s = get_settings()
    spec = load_spec_by_name(args.model)
    t_start = time.perf_counter()
    data_dir = spec.data.resolved_path()
    if not data_dir.exists():
        _print(f"==> Generating the reference dataset ({args.rows:,} rows) into {data_dir}")
        from include.modelops.dataset import generate_transactions

        generate_transactions(data_dir, rows=args.rows)
    port = args.mlflow_port or local_stack.free_port()
    uri = f"http://127.0.0.1:{port}"
    env = local_stack.stack_env(s.state_dir, uri)
    _print(f"==> Airflow metadata DB: {env['AIRFLOW_HOME']}")
    local_stack.migrate_airflow_db(env)
    _print(f"==> Starting MLflow tracking server on {uri}")
    proc = local_stack.start_mlflow(s.state_dir, port, env)
    try:
        stamp = time.strftime("%Y%m%d-%H%M%S")
        log_file = s.state_dir / "logs" / f"demo-{spec.dag_id}-{stamp}.log"
        _print(f"==> airflow dags test {spec.dag_id}   (full log: {log_file})")
        t0 = time.perf_counter()
        res = local_stack.airflow(["dags", "test", spec.dag_id], env, log_file=log_file, echo=True)
        dag_s = time.perf_counter() - t0
    finally:
        local_stack.stop_process(proc)
        _print("==> Stopped the MLflow server")
    summary_path = s.runs_dir / spec.name / "latest_summary.json"
    if not summary_path.exists():
        _print(f"No run summary was written; the DAG run failed early. See {log_file}")
        return 1
    summary = json.loads(summary_path.read_text())
    _print_summary(summary, uri=uri, dag_s=dag_s, total_s=time.perf_counter() - t_start, log_file=log_file)
    return 0 if res.returncode == 0 else 1


def _print_summary(summary: dict, *, uri: str, dag_s: float, total_s: float, log_file: Path) -> None:
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
        "approve": lambda r: f"{r.get('decision', '')} by {r.get('by', '')}" if r else "",
        "package_bento": lambda r: r.get("bento_tag", ""),
        "smoke_serve_bento": lambda r: f"served predictions match offline (max |diff| {r.get('max_abs_diff')})"
        if r else "",
        "promote_to_champion": lambda r: f"champion -> v{r.get('champion')} (previous: {r.get('previous')})"
        if r else "",
    }
    for task, fn in notes.items():
        state = steps.get(task, {}).get("state") or "not run"
        try:
            note = fn(result(task))
        except Exception:  # a summary line must never hide the rest
            note = ""
        _print(f"  {task:<22} {state:<15} {note}")
    evaluated, registered = result("evaluate_candidate"), result("register_candidate")
    promoted = steps.get("promote_to_champion", {}).get("state") == "success"
    _print("")
    if promoted:
        _print(f"Outcome: v{registered.get('version')} is the new champion. {evaluated.get('summary', '')}")
    elif evaluated:
        _print(f"Outcome: champion kept (v{summary.get('champion_version')}). {evaluated.get('summary', '')}")
    else:
        failed = summary.get("failed_steps") or ["?"]
        _print(f"Outcome: the run stopped at {', '.join(failed)}; the champion is unchanged.")
    _print("\nWhere to look:")
    _print(f"  MLflow store      {s.state_dir / 'mlflow'}  (UI: `make up`, or `mlflow ui --backend-store-uri "
           f"sqlite:///{s.state_dir / 'mlflow' / 'mlflow.db'}`)")
    _print(f"  Airflow home      {s.state_dir / 'airflow'}  (UI: `make up`)")
    if result("package_bento"):
        _print(f"  Bento             {result('package_bento').get('bento_tag')}  (BENTOML_HOME={s.bentoml_home}; "
               f"serve it: `make serve`)")
    if result("generate_model_card"):
        _print(f"  Model card        {result('generate_model_card').get('card_html')}")
    if evaluated:
        _print(f"  Evaluation report {evaluated.get('report_html')}")
    _print(f"  Run folder        {summary.get('run_dir')}")
    _print(f"  Airflow log       {log_file}")
    _print(f"\nDAG run took {dag_s:.0f} s; the whole demo {total_s:.0f} s. Run `make demo` again to train a new "
           f"candidate against this champion.")


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    p = argparse.ArgumentParser(prog="python -m include.modelops.cli", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
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
    c = sub.add_parser("check-specs", help="validate every model spec and print the problems")
    c.set_defaults(fn=cmd_check_specs)
    args = p.parse_args(argv)
    return args.fn(args)


if __name__ == "__main__":
    sys.exit(main())
