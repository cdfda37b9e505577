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
import logging
import os

from include.modelops.cli.commands import (
    cmd_audit,
    cmd_backtest,
    cmd_check_specs,
    cmd_draft_spec,
    cmd_run,
    cmd_serve,
    cmd_traffic,
    cmd_up,
)
from include.modelops.cli.runs import DEFAULT_MODEL, UI_AIRFLOW_PORT, UI_MLFLOW_PORT
from include.modelops.demo.commands import DEMO_DRIFT, cmd_data, cmd_demo, cmd_demo_bad_canary, cmd_demo_drift


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
    a.add_argument(
        "--no-airflow",
        action="store_true",
        help="MLflow records only (skip Airflow: its REST API, or the airflow CLI)",
    )
    a.set_defaults(fn=cmd_audit)
    bt = sub.add_parser(
        "backtest",
        help="replay a model's recorded gate decisions under a changed spec; print what would flip",
    )
    bt.add_argument("--model", default=DEFAULT_MODEL)
    bt.add_argument("--spec", required=True, help="the changed spec file (YAML); the registry is only read")
    bt.add_argument("--html", default=None, help="also write the backtest as an HTML page here")
    bt.set_defaults(fn=cmd_backtest)
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
