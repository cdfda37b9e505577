"""Serving speed: the bento against a plain FastAPI + uvicorn app, and the inference log's cost.

    make bench-serving      # or: python tests/benchmarks/bench_serving.py [--quick] [--json out.json]

On one model version (the fraud spec's scikit-learn model, trained here on generated
transactions through the project's trainer, registered in a local MLflow server and built
into a bento), all served at once on 127.0.0.1 and measured in turn (every step interleaved
across the servers, repeated, median taken, so load drift on a shared machine hits all alike):

* **bento, log on**: ``bentoml serve`` of the bento, inference log on (the default);
* **bento, log off**: the same with ``MODELOPS_INFERENCE_LOG=off``;
* **FastAPI**: ``tests/benchmarks/fastapi_peer.py`` under uvicorn, the same model loaded with
  ``scoring.load_pyfunc`` and the same validation and response code.

For each: p50/p95/p99 latency and server CPU per request of single-row requests at a fixed low rate, and the highest
throughput whose p95 stays under 50 ms (rates stepped up until p95, errors or the achieved
rate give out, then bisected), for single-row and for 100-row requests. The load comes from
``include.modelops.serving.traffic.send_requests`` (asyncio + aiohttp, open-loop schedule,
bounded in count, time and requests in flight), in this process, on the same cores as the
server: on a 2-core machine the client's own CPU is part of every figure, for both servers alike.
Also, per server, the full garbage collections its processes ran and their pauses
(``tests/benchmarks/gc_probe``), at a steady 100 requests/s and over the whole run: the bento
freezes its startup heap, the FastAPI app does not.

Goals (issue 7): single-row max throughput bento >= 1.5x FastAPI; low-rate p95 bento <= 1.2x
FastAPI; the log costs <= 5% throughput. Everything it writes goes under
``<project>/.state/bench/serving``. Not a test: pytest does not collect it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from include.modelops.platform import processes  # noqa: E402

PROJECT_ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(PROJECT_ROOT))
WORK = PROJECT_ROOT / ".state" / "bench" / "serving"
GC_PROBE = Path(__file__).resolve().parent / "gc_probe"

P95_LIMIT_MS = 50.0
LOW_RATE = 20.0  # requests/s for the latency percentiles
GC_RATE = 100.0  # requests/s of single rows where full garbage collections are counted
LOG_COST_RATES = (300.0, 100.0)  # requests/s of 1 and of 100 rows where the log's CPU cost is measured


def setup_env() -> None:
    """All state of this benchmark under WORK, set before bentoml or mlflow are imported."""
    os.environ["MODELOPS_STATE_DIR"] = str(WORK / "state")
    os.environ["BENTOML_HOME"] = str(WORK / "bentoml")
    os.environ["MODELOPS_INFERENCE_LOG_URL"] = str(WORK / "inference_log")
    os.environ.setdefault("MODELOPS_GIT_COMMIT", "bench")
    for k, v in {
        "BENTOML_DO_NOT_TRACK": "True",
        "MLFLOW_DISABLE_TELEMETRY": "true",
        "DO_NOT_TRACK": "true",
    }.items():
        os.environ.setdefault(k, v)
    (WORK / "tmp").mkdir(parents=True, exist_ok=True)
    os.environ["TMPDIR"] = str(WORK / "tmp")


def train_and_package(spec: Any, tracking_uri: str, rows: int) -> dict[str, Any]:
    """Train the spec's model on generated rows, register it, build its bento; return tag, URI, holdout."""
    import mlflow

    from include.modelops.data.example import generate_transactions
    from include.modelops.data.reading import read_dataset
    from include.modelops.serving.bento import build_bento
    from include.modelops.training import sklearn_trainer

    data = WORK / "data"
    if not data.exists():
        generate_transactions(data, rows=rows, days=20, seed=21)
    frame = read_dataset(data)
    cut = int(len(frame) * 0.8)
    train, holdout = frame.iloc[:cut], frame.iloc[cut:].reset_index(drop=True)
    mlflow.set_tracking_uri(tracking_uri)
    with mlflow.start_run(experiment_id=_experiment("bench-serving")):
        model = sklearn_trainer.fit(spec, train, params=dict(spec.training.params))
        model_uri = sklearn_trainer.log_model(model, spec, train.head(50))
    version = str(mlflow.register_model(model_uri, spec.name).version)
    tag = build_bento(spec, version, f"models:/{spec.name}/{version}")
    return {"tag": tag, "version": version, "model_uri": f"models:/{spec.name}/{version}", "holdout": holdout}


def _experiment(name: str) -> str:
    import mlflow

    found = mlflow.get_experiment_by_name(name)
    return (
        found.experiment_id
        if found
        else mlflow.create_experiment(name, artifact_location=(WORK / "artifacts").as_uri())
    )


class Server:
    """One server process on a free port, started and stopped around a measurement."""

    def __init__(self, name: str, cmd: list[str], env: dict[str, str], cwd: Path) -> None:
        self.name, self.cmd, self.cwd = name, cmd, cwd
        self.proc: subprocess.Popen | None = None
        slug = re.sub(r"[^A-Za-z0-9]+", "_", name).strip("_")
        self.log = WORK / "logs" / (slug + ".log")
        # Every full garbage collection of the server's processes, one line each (gc_probe).
        self.gc_log = WORK / "logs" / (slug + ".gc.txt")
        self.env = dict(
            env,
            MODELOPS_BENCH_GC_LOG=str(self.gc_log),
            PYTHONPATH=os.pathsep.join(filter(None, [str(GC_PROBE), env.get("PYTHONPATH")])),
        )

    def __enter__(self) -> Server:
        from include.modelops.platform import local_stack

        self.log.parent.mkdir(parents=True, exist_ok=True)
        self.gc_log.unlink(missing_ok=True)
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen(
                self.cmd,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=self.env,
                cwd=self.cwd,
                start_new_session=True,
            )
        try:
            local_stack.wait_http(f"{self.url}/readyz", 240, self.proc, self.name)
        except Exception:
            processes.stop_process(self.proc)
            print(self.log.read_text()[-3000:])
            raise
        return self

    def cpu_seconds(self) -> float:
        """CPU time used so far by the server and its workers (user + system)."""
        import psutil

        total = 0.0
        try:
            root = psutil.Process(self.proc.pid)
            for proc in [root, *root.children(recursive=True)]:
                times = proc.cpu_times()
                total += times.user + times.system
        except psutil.Error:
            pass
        return total

    def gc_pauses_ms(self, since: float, until: float | None = None) -> list[float]:
        """Pauses of the full garbage collections that ended in ``[since, until]`` (unix time), in any process."""
        if not self.gc_log.exists():
            return []
        pauses = []
        for line in self.gc_log.read_text().splitlines():
            _pid, at, pause_ms = line.split()
            if float(at) >= since and (until is None or float(at) <= until):
                pauses.append(float(pause_ms))
        return pauses

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None:
            processes.stop_process(self.proc, timeout_s=30)


def bento_server(name: str, tag: str, log_on: bool, extra_env: dict[str, str] | None = None) -> Server:
    from include.modelops.platform import local_stack
    from include.modelops.serving.smoke import serve_env

    env = serve_env()
    env["MODELOPS_INFERENCE_LOG"] = "on" if log_on else "off"
    env.update(extra_env or {})
    server = Server(name, [], env, WORK / "bentoml")
    server.port = local_stack.free_port()
    server.cmd = [
        sys.executable,
        "-m",
        "bentoml",
        "serve",
        tag,
        "--host",
        "127.0.0.1",
        "--port",
        str(server.port),
    ]
    return server


def fastapi_server(model_uri: str, workers: int) -> Server:
    from include.modelops.platform import local_stack

    env = dict(
        os.environ,
        PYTHONPATH=str(PROJECT_ROOT),
        MODELOPS_PEER_MODEL_URI=model_uri,
        MODELOPS_PEER_MODEL="fraud_detection",
    )
    server = Server("FastAPI", [], env, PROJECT_ROOT)
    server.port = local_stack.free_port()
    server.cmd = [
        sys.executable,
        "-m",
        "uvicorn",
        "fastapi_peer:app",
        "--app-dir",
        str(Path(__file__).parent),
        "--host",
        "127.0.0.1",
        "--port",
        str(server.port),
        "--workers",
        str(workers),
        "--log-level",
        "warning",
        "--no-access-log",
    ]
    return server


def run_load(
    spec: Any, frame: Any, url: str, *, rate: float, seconds: float, rows: int, max_in_flight: int = 256
) -> dict[str, Any]:
    """Send ``rate`` requests/s of ``rows`` rows for ``seconds``; the summary as a dict."""
    from include.modelops.serving import traffic

    cfg = traffic.TrafficConfig(
        url=url,
        rate=rate,
        count=max(1, int(rate * seconds)),
        duration_s=seconds,
        rows_per_request=rows,
        timeout_s=5.0,
        max_in_flight=max_in_flight,
        progress_every_s=0,
        send_entity_ids=True,
    )
    cfg.check()
    prepared = traffic.prepare_requests(spec, frame, cfg, min(cfg.count, 2000))
    summary = traffic.TrafficSummary()
    asyncio.run(traffic.send_requests(url, prepared, cfg, summary, lambda *_: None, lambda _: None))
    out = summary.to_dict()
    out["answered_per_s"] = summary.answered / summary.duration_s if summary.duration_s else 0.0
    out["target_rate"] = rate
    errors = out["4xx"] + out["5xx"] + out["connection_errors"]
    out["ok"] = (
        errors <= 0.01 * max(out["sent"], 1)
        and out["latency_ms_p95"] is not None
        and out["latency_ms_p95"] < P95_LIMIT_MS
        and out["answered_per_s"] >= 0.9 * rate
    )
    return out


def _median(values: list[float | None]) -> float | None:
    import statistics

    present = [v for v in values if v is not None]
    return statistics.median(present) if len(present) == len(values) and present else None


def interleaved(
    servers: list[Server], spec: Any, frame: Any, *, rate: float, seconds: float, rows: int, repeats: int
) -> dict[str, dict[str, Any]]:
    """Run the same load against every server in turn, ``repeats`` times (rotating who goes first).

    Per server: the median over the repeats of p50/p95/p99 and of the answered rate, and the summed
    errors; ``ok`` as in ``run_load`` but on the medians. Load drift on a shared machine then hits all
    servers alike instead of whichever happened to be measured during a busy minute.
    """
    runs: dict[str, list[dict[str, Any]]] = {s.name: [] for s in servers}
    for i in range(repeats):
        order = servers[i % len(servers) :] + servers[: i % len(servers)]
        for server in order:
            cpu_before = server.cpu_seconds()
            result = run_load(spec, frame, server.url, rate=rate, seconds=seconds, rows=rows)
            result["server_cpu_ms_per_request"] = (
                1000 * (server.cpu_seconds() - cpu_before) / max(result["answered"], 1)
            )
            runs[server.name].append(result)
    out: dict[str, dict[str, Any]] = {}
    for name, rs in runs.items():
        merged: dict[str, Any] = {"target_rate": rate, "repeats": len(rs), "runs": rs}
        for key in (
            "latency_ms_p50",
            "latency_ms_p95",
            "latency_ms_p99",
            "answered_per_s",
            "server_cpu_ms_per_request",
        ):
            merged[key] = _median([r[key] for r in rs])
        for key in ("sent", "4xx", "5xx", "connection_errors"):
            merged[key] = sum(r[key] for r in rs)
        errors = merged["4xx"] + merged["5xx"] + merged["connection_errors"]
        merged["ok"] = (
            errors <= 0.01 * max(merged["sent"], 1)
            and merged["latency_ms_p95"] is not None
            and merged["latency_ms_p95"] < P95_LIMIT_MS
            and (merged["answered_per_s"] or 0) >= 0.9 * rate
        )
        out[name] = merged
    return out


def max_throughput(
    servers: list[Server],
    spec: Any,
    frame: Any,
    *,
    rows: int,
    rates: list[float],
    seconds: float,
    bisect_steps: int,
    repeats: int,
    label: str,
) -> dict[str, dict[str, Any]]:
    """Per server, the highest rate whose step keeps p95 < 50 ms, errors <= 1% and >= 90% of the rate answered.

    Every rate step runs against all servers still passing, interleaved (``interleaved``); a server
    drops out at its first failing step, then each one's bracket is bisected, again interleaved.
    """
    best: dict[str, dict[str, Any] | None] = {s.name: None for s in servers}
    failed_at: dict[str, float | None] = {s.name: None for s in servers}
    for rate in rates:
        running = [s for s in servers if failed_at[s.name] is None]
        if not running:
            break
        for name, r in interleaved(
            running, spec, frame, rate=rate, seconds=seconds, rows=rows, repeats=repeats
        ).items():
            _step(label, name, r)
            if r["ok"]:
                best[name] = r
            else:
                failed_at[name] = rate
    brackets = {
        s.name: [best[s.name]["target_rate"], failed_at[s.name]]
        for s in servers
        if best[s.name] is not None and failed_at[s.name] is not None
    }
    for _ in range(bisect_steps):
        # One round: each server with a bracket tries its own midpoint, interleaved with the others.
        by_rate: dict[float, list[Server]] = {}
        for s in servers:
            if s.name in brackets:
                lo, hi = brackets[s.name]
                by_rate.setdefault(round((lo + hi) / 2, 1), []).append(s)
        for mid, group in by_rate.items():
            for name, r in interleaved(
                group, spec, frame, rate=mid, seconds=seconds, rows=rows, repeats=repeats
            ).items():
                _step(label, name, r)
                if r["ok"]:
                    best[name], brackets[name][0] = r, mid
                else:
                    brackets[name][1] = mid
    return {s.name: {"best": best[s.name], "ceiling_hit": failed_at[s.name] is None} for s in servers}


def _step(label: str, name: str, r: dict[str, Any]) -> None:
    p95 = r["latency_ms_p95"]
    print(
        f"    {label:<9} {name:<16} target {r['target_rate']:>7.1f}/s  answered {r['answered_per_s'] or 0:>7.1f}/s  "
        f"p95 {'-' if p95 is None else f'{p95:6.1f}'} ms  errors {r['4xx'] + r['5xx'] + r['connection_errors']}"
        f"  CPU {r['server_cpu_ms_per_request'] or 0:5.1f} ms/req  {'ok' if r['ok'] else 'over'}",
        flush=True,
    )


def measure(
    servers: list[Server], spec: Any, frame: Any, args: argparse.Namespace
) -> dict[str, dict[str, Any]]:
    """Every measurement of the issue's table, each one interleaved across all servers."""
    for server in servers:  # warm-up: imports, caches, connections, the batcher's first calls
        run_load(spec, frame, server.url, rate=50, seconds=2, rows=1)
        run_load(spec, frame, server.url, rate=10, seconds=1, rows=100)
    measured_from = time.time()
    print(
        f"==> Low rate {LOW_RATE:g}/s, single rows, {args.repeats} x {args.low_seconds:g} s per server",
        flush=True,
    )
    low = interleaved(
        servers, spec, frame, rate=LOW_RATE, seconds=args.low_seconds, rows=1, repeats=args.repeats
    )
    for name, r in low.items():
        print(
            f"    {name:<16} p50 {r['latency_ms_p50']:.2f}  p95 {r['latency_ms_p95']:.2f}  "
            f"p99 {r['latency_ms_p99']:.2f} ms  server CPU {r['server_cpu_ms_per_request']:.1f} ms/request",
            flush=True,
        )
    # Before the ceiling steps: an overloaded server's backlog of requests lengthens its collections.
    print(
        f"==> Full garbage collections at {GC_RATE:g}/s, single rows, {args.repeats} x {args.gc_seconds:g} s "
        f"per server",
        flush=True,
    )
    gc_from = time.time()
    steady = interleaved(
        servers, spec, frame, rate=GC_RATE, seconds=args.gc_seconds, rows=1, repeats=args.repeats
    )
    gc_until = time.time()
    print("==> Highest rate with p95 < 50 ms, single rows", flush=True)
    single = max_throughput(
        servers,
        spec,
        frame,
        rows=1,
        rates=args.single_rates,
        seconds=args.step_seconds,
        bisect_steps=args.bisect,
        repeats=args.repeats,
        label="1 row",
    )
    print("==> Highest rate with p95 < 50 ms, 100 rows", flush=True)
    batch = max_throughput(
        servers,
        spec,
        frame,
        rows=100,
        rates=args.batch_rates,
        seconds=args.step_seconds,
        bisect_steps=args.bisect,
        repeats=args.repeats,
        label="100 rows",
    )
    out = {s.name: {"low": low[s.name], "single": single[s.name], "batch": batch[s.name]} for s in servers}
    for s in servers:  # before the log-cost steps, which only two of the servers run
        at_rate, whole = s.gc_pauses_ms(gc_from, gc_until), s.gc_pauses_ms(measured_from)
        out[s.name]["gc"] = {
            "rate": GC_RATE,
            "latency_ms_p99": steady[s.name]["latency_ms_p99"],
            "seconds_at_rate": args.gc_seconds * args.repeats,
            "full_collections": len(at_rate),
            "max_pause_ms": max(at_rate, default=0.0),
            "total_pause_ms": sum(at_rate),
            "run_full_collections": len(whole),
            "run_max_pause_ms": max(whole, default=0.0),
            "run_seconds": time.time() - measured_from,
        }
        g = out[s.name]["gc"]
        print(
            f"    {s.name:<16} p99 {g['latency_ms_p99']:.2f} ms  full GCs {g['full_collections']}, longest "
            f"{g['max_pause_ms']:.1f} ms  (whole run so far: {g['run_full_collections']}, longest "
            f"{g['run_max_pause_ms']:.1f} ms)",
            flush=True,
        )
    # The log's cost in the server's own CPU per request, on and off at the same fixed rates,
    # repeated more often: the highest rate with p95 < 50 ms sits on the knee of the latency curve
    # and moves by about 10% between runs, CPU per request far less.
    pair = [s for s in servers if s.name in ("bento, log on", "bento, log off")]
    if len(pair) == 2:
        for key, rate, rows in (
            ("log_cpu_single", LOG_COST_RATES[0], 1),
            ("log_cpu_batch", LOG_COST_RATES[1], 100),
        ):
            print(
                f"==> Inference log cost: server CPU per request at {rate:g}/s, {rows} row(s), "
                f"{max(3, args.repeats)} x {args.step_seconds + 1:g} s",
                flush=True,
            )
            for name, r in interleaved(
                pair,
                spec,
                frame,
                rate=rate,
                seconds=args.step_seconds + 1,
                rows=rows,
                repeats=max(3, args.repeats),
            ).items():
                _step("log cost", name, r)
                out[name][key] = r
    return out


def _tput(result: dict[str, Any], key: str) -> float | None:
    best = result[key]["best"]
    return best["answered_per_s"] if best else None


def _ratio(a: float | None, b: float | None) -> str:
    return f"{a / b:.2f}x" if a and b else "-"


def table(results: dict[str, dict[str, Any]], peer_workers: int) -> str:
    names = list(results)
    lines = [
        "| server | low-rate p50 (ms) | p95 (ms) | p99 (ms) | max req/s, 1 row, p95<50 ms | "
        "max req/s, 100 rows (rows/s) | server CPU ms/request at low rate |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name in names:
        r = results[name]
        single, batch = _tput(r, "single"), _tput(r, "batch")
        s_note = "+" if r["single"]["ceiling_hit"] else ""
        b_note = "+" if r["batch"]["ceiling_hit"] else ""
        lines.append(
            f"| {name} | {r['low']['latency_ms_p50']:.2f} | {r['low']['latency_ms_p95']:.2f} | "
            f"{r['low']['latency_ms_p99']:.2f} | {single or 0:.0f}{s_note} | "
            f"{batch or 0:.1f}{b_note} ({(batch or 0) * 100:,.0f}) | {r['low']['server_cpu_ms_per_request']:.1f} |"
        )
    on, off, peer = results.get("bento, log on"), results.get("bento, log off"), results.get("FastAPI")
    lines += ["", "| ratio | value | goal |", "| --- | ---: | --- |"]
    if on and peer:
        lines.append(
            f"| bento/FastAPI max single-row throughput | {_ratio(_tput(on, 'single'), _tput(peer, 'single'))}"
            f" | >= 1.5x |"
        )
        lines.append(
            f"| bento/FastAPI low-rate p95 | {_ratio(on['low']['latency_ms_p95'], peer['low']['latency_ms_p95'])}"
            f" | <= 1.2x |"
        )
        lines.append(
            f"| bento/FastAPI max 100-row throughput | {_ratio(_tput(on, 'batch'), _tput(peer, 'batch'))} | - |"
        )
    if on and off:
        lines.append(
            f"| log on/off max single-row throughput | {_ratio(_tput(on, 'single'), _tput(off, 'single'))}"
            f" | >= 0.95x |"
        )
        lines.append(
            f"| log on/off max 100-row throughput | {_ratio(_tput(on, 'batch'), _tput(off, 'batch'))}"
            f" | >= 0.95x |"
        )
        lines.append(
            f"| log on/off low-rate p95 | {_ratio(on['low']['latency_ms_p95'], off['low']['latency_ms_p95'])}"
            f" | - |"
        )
        for key, rows in (("log_cpu_single", 1), ("log_cpu_batch", 100)):
            if key in on and key in off:
                lines.append(
                    f"| log on/off server CPU per request, {rows} row(s) at {on[key]['target_rate']:g}/s "
                    f"({on[key]['server_cpu_ms_per_request']:.2f} / {off[key]['server_cpu_ms_per_request']:.2f} ms) | "
                    f"{_ratio(on[key]['server_cpu_ms_per_request'], off[key]['server_cpu_ms_per_request'])}"
                    f" | <= 1.05x |"
                )
    if on and peer and on["gc"]["full_collections"] and peer["gc"]["full_collections"]:
        lines.append(
            f"| bento/FastAPI longest full-GC pause at {on['gc']['rate']:g}/s ({on['gc']['max_pause_ms']:.1f} / "
            f"{peer['gc']['max_pause_ms']:.1f} ms) | {_ratio(on['gc']['max_pause_ms'], peer['gc']['max_pause_ms'])}"
            f" | - |"
        )
    first = results[names[0]]["gc"]
    lines += [
        "",
        f"| server | at {first['rate']:g}/s for {first['seconds_at_rate']:g} s: p99 (ms) | full GCs | "
        f"longest pause (ms) | all pauses (ms) | whole run ({first['run_seconds']:.0f} s): full GCs | "
        f"longest pause (ms) |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name in names:
        g = results[name]["gc"]
        lines.append(
            f"| {name} | {g['latency_ms_p99']:.2f} | {g['full_collections']} | {g['max_pause_ms']:.1f} | "
            f"{g['total_pause_ms']:.0f} | {g['run_full_collections']} | {g['run_max_pause_ms']:.1f} |"
        )
    lines.append("")
    lines.append(
        f"`+`: the highest rate tried still passed (the ceiling is higher). FastAPI ran with "
        f"{peer_workers} uvicorn worker(s)."
    )
    return "\n".join(lines)


def _variant(text: str) -> tuple[str, dict[str, str]]:
    """``NAME:KEY=VALUE,KEY=VALUE`` -> an extra bento (log on) served with those environment variables."""
    name, _, pairs = text.partition(":")
    env = dict(pair.split("=", 1) for pair in pairs.split(",") if pair)
    return name, env


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument(
        "--quick",
        action="store_true",
        help="a smoke run in about 3 minutes: 1 repeat, short steps, coarse rates, no bisection",
    )
    p.add_argument("--rows", type=int, default=20_000, help="generated transactions to train on")
    p.add_argument("--repeats", type=int, default=2, help="interleaved repeats of every step (median taken)")
    p.add_argument("--low-seconds", type=float, default=5.0, help="seconds per repeat of the low-rate step")
    p.add_argument("--step-seconds", type=float, default=3.0, help="seconds per repeat of a rate step")
    p.add_argument(
        "--gc-seconds",
        type=float,
        default=30.0,
        help=f"seconds per repeat of the steady {GC_RATE:g}/s step where full garbage collections are counted",
    )
    p.add_argument("--bisect", type=int, default=2, help="bisection steps after the first failing rate")
    p.add_argument(
        "--single-rates",
        type=lambda s: [float(x) for x in s.split(",")],
        default=[10, 25, 50, 100, 150, 200, 300, 450, 600, 800, 1000, 1300],
    )
    p.add_argument(
        "--batch-rates",
        type=lambda s: [float(x) for x in s.split(",")],
        default=[2, 5, 10, 20, 30, 45, 60, 80, 100, 130, 170, 220, 280],
    )
    p.add_argument(
        "--peer-workers",
        type=int,
        default=None,
        help="uvicorn workers of the FastAPI app (default: as many as the bento's, one per core)",
    )
    p.add_argument("--only", default="", help="comma-separated subset: on,off,fastapi")
    p.add_argument(
        "--variant",
        action="append",
        type=_variant,
        default=[],
        metavar="NAME:KEY=VALUE,...",
        help="also serve the bento (log on) with these environment variables, e.g. "
        "'1 worker:MODELOPS_SERVE_WORKERS=1' (repeatable)",
    )
    p.add_argument("--json", default=None, help="also write every measurement to this file")
    p.add_argument("--fresh", action="store_true", help="delete the previous run's state first")
    args = p.parse_args(argv)
    if args.quick:
        args.repeats, args.low_seconds, args.step_seconds, args.bisect, args.gc_seconds = 1, 4.0, 2.0, 0, 10.0
        args.single_rates, args.batch_rates = [10, 50, 100, 200, 400, 800], [2, 10, 30, 60]

    if args.fresh:
        shutil.rmtree(WORK, ignore_errors=True)
    setup_env()
    logging.basicConfig(level=logging.WARNING)
    if args.peer_workers is None:
        from include.modelops.settings import get_settings

        workers = get_settings().serve_workers
        args.peer_workers = (os.cpu_count() or 1) if workers == "cpu_count" else int(workers)
    from include.modelops.platform import local_stack
    from include.modelops.spec import load_spec_by_name

    spec = load_spec_by_name("fraud_detection")
    started = time.perf_counter()
    load_before = os.getloadavg()
    only = set(filter(None, args.only.split(","))) or {"on", "off", "fastapi"}
    with local_stack.mlflow_server(WORK / "state") as uri, contextlib.ExitStack() as stack:
        os.environ["MLFLOW_TRACKING_URI"] = uri
        print(
            f"==> Training and packaging fraud_detection ({args.rows:,} generated rows), MLflow at {uri}",
            flush=True,
        )
        model = train_and_package(spec, uri, args.rows)
        print(
            f"    bento {model['tag']} (model version {model['version']}) in "
            f"{time.perf_counter() - started:.0f} s",
            flush=True,
        )
        frame = model["holdout"]
        plan = [
            ("on", lambda: bento_server("bento, log on", model["tag"], log_on=True)),
            ("off", lambda: bento_server("bento, log off", model["tag"], log_on=False)),
            ("fastapi", lambda: fastapi_server(model["model_uri"], args.peer_workers)),
        ]
        plan += [
            (name, lambda n=name, e=env: bento_server(n, model["tag"], log_on=True, extra_env=e))
            for name, env in args.variant
        ]
        only |= {name for name, _ in args.variant}
        # All servers up at once, measured in turn (see ``interleaved``).
        servers = [stack.enter_context(make()) for key, make in plan if key in only]
        print("==> Serving " + ", ".join(f"{s.name} on {s.url}" for s in servers), flush=True)
        results = measure(servers, spec, frame, args)
    load_after = os.getloadavg()
    text = table(results, args.peer_workers)
    print("\n" + text)
    print(
        f"\nModel version {model['version']} ({model['tag']}); {os.cpu_count()} cores; load average "
        f"{load_before[0]:.1f} before, {load_after[0]:.1f} after; whole benchmark "
        f"{time.perf_counter() - started:.0f} s"
    )
    if args.json:
        Path(args.json).write_text(
            json.dumps(
                {"results": results, "bento": model["tag"], "load_average": [load_before, load_after]},
                indent=2,
                default=str,
            )
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
