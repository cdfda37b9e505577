"""Rollout speed: what the local splitter adds to a request, how fast a canary that starts failing is
taken out by the real rollout DAG, and how long a whole 4-step rollout takes at the demo's traffic rate.

    make bench-rollout      # or: python tests/benchmarks/bench_rollout.py [--only overhead,fault,stages]
                            #       [--quick] [--requests N] [--fault-after-s S] [--json out.json]

Everything runs the fraud spec (``include/models/fraud_detection.yaml``) with its ``rollout:``
section (``min_requests``, ``max_wait_s``, ``check_interval_s``, ``analysis``) and steps
``[5, 25, 50, 100]``, on scikit-learn models trained here on generated transactions, registered
in a SQLite MLflow store and built into bentos (``bentoml serve``, one worker each, behind Caddy):

* **overhead**: p50/p95 of sequential single-row requests sent to the stable service directly
  (the peer) and through Caddy at 0% canary, interleaved so load drifts hit both alike.
* **stages**: v1 is deployed by the ``fraud_detection_rollout`` DAG (``airflow dags test``, as
  ``make demo`` runs it), then a good v2 is rolled out through every step while the traffic
  generator sends the demo's traffic (10 requests/s, 10 rows each). Reported: each stage's wall
  time (from the rollout record) against its floor ``min_requests / (rate x share)`` (the time
  the canary needs to answer ``min_requests`` at that share), and the whole DAG run.
* **fault**: a candidate that answers like the champion, then fails every request
  (``fault_after_s`` seconds after its first prediction: mid ``canary_5``) is rolled out by the
  same DAG under the same traffic. Onset is the canary's first 5xx answer, read from the traffic
  generator's own record of every request (status, and the ``X-ModelOps-Upstream`` header Caddy
  sets). The last request the canary answered is a lower bound of the move to 100% stable (at 5%
  the canary gets one request in 20); the rollback task's "rolled back in" log line, written
  right after it set the share to 0, is the upper bound, held to the goal. Also counted: later
  requests answered by stable, and canary and stable rows in the inference log (its ``variant``
  field) after the onset. The peer is Flagger's default analysis (``interval`` 60 s, ``threshold`` 1 failed check; documented in
  fluxcd/flagger ``pkg/apis/flagger/v1beta1/canary.go``, not measured here).

``--quick`` sends fewer overhead requests and halves ``min_requests`` (and the fault's onset) for
a faster check that the benchmark works; its stage figures are not the demo's.
Everything it writes goes under ``<project>/.state/bench/rollout`` (wiped at the start); every
process it starts is stopped. Not a test: pytest does not collect it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import sys
import threading
import time
import urllib.request
from datetime import UTC, datetime
from pathlib import Path

from include.modelops.rollout.record import read_record

PROJECT_ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(PROJECT_ROOT))
WORK = PROJECT_ROOT / ".state" / "bench" / "rollout"
MODEL = "fraud_detection"
PARTS = ("overhead", "fault", "stages")
STEPS = [5, 25, 50, 100]
DEMO_RATE, DEMO_ROWS_PER_REQUEST = 10.0, 10  # as include/modelops/cli/runs.py's run_rollout sends
FLAGGER_INTERVAL_S, FLAGGER_THRESHOLD = 60, 1  # Flagger's defaults (canary.go), not measured


def setup_env(args: argparse.Namespace) -> dict[str, str]:
    """Wipe the work folder, write the bench spec, and return the stack's environment (also set here)."""
    import yaml

    from include.modelops.platform import local_stack

    shutil.rmtree(WORK, ignore_errors=True)
    (WORK / "tmp").mkdir(parents=True)
    os.environ["TMPDIR"] = str(WORK / "tmp")
    raw = yaml.safe_load((PROJECT_ROOT / "include" / "models" / f"{MODEL}.yaml").read_text())
    raw["data"].update(path=str(WORK / "data"), min_rows=1000)
    raw["rollout"]["steps"] = STEPS
    if args.quick:
        raw["rollout"]["min_requests"] = max(20, raw["rollout"]["min_requests"] // 2)
    (WORK / "specs").mkdir()
    (WORK / "specs" / f"{MODEL}.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    uri = f"sqlite:///{WORK / 'mlflow.db'}"
    env = local_stack.stack_env(
        WORK / "state", uri, specs_dir=WORK / "specs", api_port=local_stack.free_port()
    )
    env.update(
        MODELOPS_ROLLOUT_PORT=str(local_stack.free_port()),
        MODELOPS_SERVE_WORKERS="1",
        MODELOPS_GIT_COMMIT="bench",
        MODELOPS_INFERENCE_LOG_URL=str(WORK / "state" / "inference_log"),
    )
    for key in (
        "MODELOPS_STATE_DIR",
        "MODELOPS_SPECS_DIR",
        "BENTOML_HOME",
        "MLFLOW_TRACKING_URI",
        "MODELOPS_ROLLOUT_PORT",
        "MODELOPS_SERVE_WORKERS",
        "MODELOPS_GIT_COMMIT",
        "MODELOPS_INFERENCE_LOG_URL",
        "BENTOML_DO_NOT_TRACK",
        "MLFLOW_DISABLE_TELEMETRY",
        "DO_NOT_TRACK",
        "XDG_CACHE_HOME",
        "MPLCONFIGDIR",
    ):
        os.environ[key] = env[key]
    return env


def post(url: str, body: bytes) -> tuple[float, str]:
    request = urllib.request.Request(
        f"{url}/predict", data=body, method="POST", headers={"Content-Type": "application/json"}
    )
    started = time.perf_counter()
    with urllib.request.urlopen(request, timeout=10) as r:
        r.read()
        return time.perf_counter() - started, r.headers.get("X-ModelOps-Upstream", "")


def percentile_ms(values: list[float], q: float) -> float:
    import numpy as np

    return round(float(np.percentile(values, q)) * 1000, 3)


def ts(iso: str) -> float:
    return datetime.fromisoformat(iso).timestamp()


class Traffic:
    """The traffic generator (``traffic.send_requests``, the demo's rate and batch) in a thread,
    keeping every request's record: sent and answered times, status, which upstream answered."""

    def __init__(self, spec, frame, url: str) -> None:
        from include.modelops.serving import traffic

        self.cfg = traffic.TrafficConfig(
            url=url,
            rate=DEMO_RATE,
            count=1_000_000,
            duration_s=3600,
            rows_per_request=DEMO_ROWS_PER_REQUEST,
            progress_every_s=0,
        )
        self.prepared = traffic.prepare_requests(spec, frame, self.cfg, 10_000)
        self.summary = traffic.TrafficSummary()
        self.records: list = []
        self.loop = asyncio.new_event_loop()
        self.task = self.loop.create_task(
            traffic.send_requests(
                url,
                self.prepared,
                self.cfg,
                self.summary,
                lambda *_: None,
                lambda _: None,
                on_response=self.records.append,
            )
        )
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        try:
            self.loop.run_until_complete(self.task)
        except asyncio.CancelledError:
            pass

    def __enter__(self) -> Traffic:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.loop.call_soon_threadsafe(self.task.cancel)
        self.thread.join(30)
        self.loop.close()


class Deployment:
    """The model's registry, bentos and rollout DAG runs, as the demo and the rollout DAG test have them."""

    def __init__(self, env: dict[str, str], spec, frame) -> None:
        import mlflow

        self.env, self.spec, self.frame = env, spec, frame
        self.url = f"http://127.0.0.1:{env['MODELOPS_ROLLOUT_PORT']}"
        self.experiment = mlflow.create_experiment(
            "bench-rollout", artifact_location=(WORK / "artifacts").as_uri()
        )

    def deployable(self, version: str) -> str:
        """Build the version's bento and tag it as the training DAG's smoke test does (challenger)."""
        from include.modelops.platform import tracking
        from tests.integration.rollout_fixtures import build

        tag = build(self.spec, version)
        tracking.set_version_tags(MODEL, version, {"modelops.deployable": "true", "modelops.bento_tag": tag})
        tracking.set_alias(MODEL, tracking.CHALLENGER, version)
        return version

    def train(self, seed: int) -> str:
        from tests.integration.rollout_fixtures import train_and_register

        return self.deployable(
            train_and_register(self.spec, self.frame, seed=seed, experiment_id=self.experiment)
        )

    def rollout(self, version: str, *, traffic: bool) -> dict:
        """``airflow dags test fraud_detection_rollout`` for ``version``; its record, wall time and traffic."""
        from include.modelops.platform import local_stack

        log_file = WORK / "logs" / f"rollout-v{version}.log"
        sender = Traffic(self.spec, self.frame, self.url) if traffic else None
        if sender is not None:
            sender.__enter__()
        try:
            started = time.time()
            res = local_stack.airflow(
                ["dags", "test", self.spec.rollout_dag_id, "--conf", json.dumps({"version": version})],
                self.env,
                log_file=log_file,
                timeout_s=1200,
            )
            ended = time.time()
        finally:
            if sender is not None:
                sender.__exit__()
        return {
            "rc": res.returncode,
            "log_file": str(log_file),
            "started": started,
            "ended": ended,
            "record": read_record(MODEL, version),
            "traffic": sender,
        }


def bench_overhead(spec, frame, requests: int) -> dict:
    """The splitter's added latency: the same version as stable and canary, 0% canary, direct vs Caddy."""
    import mlflow

    from include.modelops.rollout.local import LocalBackend
    from include.modelops.serving.contract import request_rows
    from tests.integration.rollout_fixtures import build, train_and_register

    experiment = mlflow.create_experiment("bench-overhead", artifact_location=(WORK / "artifacts-o").as_uri())
    version = train_and_register(spec, frame, seed=1, experiment_id=experiment)
    tag = build(spec, version)
    body = json.dumps({"rows": request_rows(spec, frame.head(1))}).encode()
    backend = LocalBackend(spec.name, workers=1)
    try:
        stable = backend.deploy("stable", version, tag)
        backend.deploy("canary", version, tag)
        endpoint = backend.endpoint()
        for url in (stable.url, endpoint):  # warm both paths
            for _ in range(30):
                post(url, body)
        direct, proxied = [], []
        for _ in range(requests):
            direct.append(post(stable.url, body)[0])
            proxied.append(post(endpoint, body)[0])
    finally:
        backend.shutdown()
    o = {
        "requests": requests,
        "direct_p50_ms": percentile_ms(direct, 50),
        "direct_p95_ms": percentile_ms(direct, 95),
        "splitter_p50_ms": percentile_ms(proxied, 50),
        "splitter_p95_ms": percentile_ms(proxied, 95),
    }
    o["added_p95_ms"] = round(o["splitter_p95_ms"] - o["direct_p95_ms"], 3)
    o["p95_ratio"] = round(o["splitter_p95_ms"] / o["direct_p95_ms"], 3)
    o["goal_added_p95_ms"], o["goal_met"] = 1.0, o["added_p95_ms"] <= 1.0
    return o


def bench_stages(d: Deployment) -> dict:
    """A good v2 rolled out through every step under the demo's traffic."""
    rollout = d.spec.rollout
    # The same recipe and seed as v1 (a rebuild): it passes on its merits every time, so the figure is
    # the stages' own time. A retrain on other rows can fail the score-distance check on these small
    # models (JS 0.314 > 0.3 at canary_5 in one run here), which would time a rollback instead.
    v2 = d.train(seed=1)
    run = d.rollout(v2, traffic=True)
    record, sent = run["record"], run["traffic"]
    rate = sent.summary.sent / sent.summary.duration_s if sent.summary.duration_s else DEMO_RATE
    rows = []
    for stage, step in zip(record.get("stages", []), rollout.steps, strict=False):
        floor = rollout.step_min_requests(step) / (DEMO_RATE * step.traffic_percent / 100)
        wall = ts(stage["ended_at"]) - ts(stage["started_at"]) if stage.get("ended_at") else None
        rows.append(
            {
                "stage": stage["name"],
                "traffic_percent": step.traffic_percent,
                "outcome": stage["outcome"],
                "wall_s": None if wall is None else round(wall, 1),
                "canary_requests": (stage.get("analysis") or {}).get("canary_requests"),
                "min_requests": rollout.step_min_requests(step),
                "floor_s": round(floor, 1),
                "wall_vs_floor": None if wall is None else round(wall / floor, 2),
            }
        )
    stages = record.get("stages") or []
    first = ts(stages[0]["started_at"]) if stages else None
    last = ts(stages[-1]["ended_at"]) if stages and stages[-1].get("ended_at") else None
    floor_total = sum(r["floor_s"] for r in rows)
    return {
        "version": v2,
        "status": record.get("status"),
        "rc": run["rc"],
        "log_file": run["log_file"],
        "rate_sent_per_s": round(rate, 2),
        "rows_per_request": DEMO_ROWS_PER_REQUEST,
        "min_requests": rollout.min_requests,
        "check_interval_s": rollout.check_interval_s,
        "stages": rows,
        "before_first_stage_s": round(first - run["started"], 1) if first else None,
        "stages_s": round(last - first, 1) if first and last else None,
        "promote_s": round(ts(record["ended_at"]) - last, 1) if last and record.get("ended_at") else None,
        "dag_run_s": round(run["ended"] - run["started"], 1),
        "floor_s": round(floor_total, 1),
        "stages_vs_floor": round((last - first) / floor_total, 2) if first and last else None,
        "traffic": sent.summary.to_dict() | {"latency_ms_p50": sent.summary.percentile(50)},
    }


def bench_fault(d: Deployment, fault_after_s: float) -> dict:
    """A candidate that starts failing mid-stage, rolled out by the DAG; onset to the last canary answer."""
    from include.modelops.demo.faults import register_faulty_candidate
    from include.modelops.platform import tracking
    from include.modelops.rollout.local import UPSTREAM_HEADER, LocalBackend
    from include.modelops.serving.inference_log import read_window

    rollout = d.spec.rollout
    champion = tracking.alias_version(MODEL, tracking.CHAMPION)
    bad = d.deployable(
        register_faulty_candidate(
            d.spec,
            champion,
            "error",
            experiment_id=d.experiment,
            workdir=WORK / "faulty",
            fault_after_s=fault_after_s,
        )
    )
    run = d.rollout(bad, traffic=True)
    record, records = run["record"], sorted(run["traffic"].records, key=lambda r: r.answered_at)
    stable_host = LocalBackend(MODEL).state().variants["stable"].url.removeprefix("http://")

    def upstream(r) -> str:  # Caddy (Go) sends the header as X-Modelops-Upstream
        return next((v for k, v in r.headers.items() if k.lower() == UPSTREAM_HEADER.lower()), "")

    canary = [r for r in records if upstream(r) and upstream(r) != stable_host]
    failing = [r for r in canary if r.status is None or r.status >= 500]
    out = {
        "version": bad,
        "status": record.get("status"),
        "rc": run["rc"],
        "log_file": run["log_file"],
        "fault_after_s": fault_after_s,
        "check_interval_s": rollout.check_interval_s,
        "min_requests": rollout.min_requests,
        "reason": record.get("reason"),
        "failed_stage": (record.get("failure") or {}).get("stage"),
        "flagger_default_interval_s": FLAGGER_INTERVAL_S,
        "flagger_default_threshold": FLAGGER_THRESHOLD,
        "flagger_default_s": FLAGGER_INTERVAL_S * FLAGGER_THRESHOLD,
        "goal_s": 10.0,
    }
    if not failing:
        out["error"] = "the canary never answered a 5xx: the fault did not turn on before the rollout ended"
        return out
    onset, last = failing[0].answered_at, canary[-1].answered_at
    failed_stage = next((s for s in record.get("stages", []) if s.get("outcome") == "failed"), None)
    after = [r for r in records if r.sent_at > last]
    logged = read_window(MODEL, start=datetime.fromtimestamp(onset, UTC))
    out.update(
        {
            "onset_stage": next(
                (s["name"] for s in reversed(record.get("stages", [])) if ts(s["started_at"]) <= onset), None
            ),
            "canary_ok_before_onset": sum(1 for r in canary if r.answered_at < onset and r.status == 200),
            "canary_failed": len(failing),
            "detected_s": round(ts(failed_stage["ended_at"]) - onset, 2) if failed_stage else None,
            "last_canary_answer_s": round(last - onset, 2),
            "rollback_done_s": round(ts(record["ended_at"]) - onset, 2) if record.get("ended_at") else None,
            "canary_gap_s": round(1 / (DEMO_RATE * (failed_stage or {}).get("traffic_percent", 5) / 100), 2),
            "requests_after": len(after),
            "on_stable_after": sum(1 for r in after if upstream(r) == stable_host and r.status == 200),
            "log_canary_rows_after_onset": int((logged["variant"] == "canary").sum()) if len(logged) else 0,
            "log_stable_rows_after_onset": int((logged["variant"] == "stable").sum()) if len(logged) else 0,
        }
    )
    # The rollback task logs this line right after it set the share to 0 and stopped the canary:
    # an upper bound for the move (the last canary answer is a lower bound).
    moved = next(
        (
            line.split()[0]
            for line in Path(run["log_file"]).read_text().splitlines()
            if f"{MODEL} v{bad} rolled back in" in line
        ),
        None,
    )
    out["rollback_logged_s"] = round(ts(moved.replace("Z", "+00:00")) - onset, 2) if moved else None
    # 100% on stable: at the latest when the rollback logged the move (the figure held to the goal).
    out["all_stable_s"] = out["rollback_logged_s"] if moved else out["rollback_done_s"]
    out["vs_flagger_default"] = round(out["all_stable_s"] / out["flagger_default_s"], 3)
    out["goal_met"] = out["all_stable_s"] <= out["goal_s"]
    return out


def print_table(results: dict) -> None:
    if "overhead" in results:
        o = results["overhead"]
        print(f"\nsplitter overhead over {o['requests']} single-row requests each (sequential, interleaved):")
        print("| path | p50 (ms) | p95 (ms) | p95 vs peer |")
        print("| --- | ---: | ---: | ---: |")
        print(f"| peer: direct to stable | {o['direct_p50_ms']:.2f} | {o['direct_p95_ms']:.2f} | 1.00x |")
        print(
            f"| through Caddy (0% canary) | {o['splitter_p50_ms']:.2f} | {o['splitter_p95_ms']:.2f} | "
            f"{o['p95_ratio']:.2f}x (+{o['added_p95_ms']:.2f} ms; goal <= +1 ms: "
            f"{'met' if o['goal_met'] else 'NOT met'}) |"
        )
    if "stages" in results:
        s = results["stages"]
        print(
            f"\ngood v{s['version']} through {[r['traffic_percent'] for r in s['stages']]}% at "
            f"{s['rate_sent_per_s']:g} requests/s x {s['rows_per_request']} rows (min_requests {s['min_requests']}, "
            f"check_interval_s {s['check_interval_s']:g}): {s['status']} (rc {s['rc']})"
        )
        print(
            "| stage | outcome | wall (s) | canary requests | floor min_requests/(rate x share) (s) | wall vs floor |"
        )
        print("| --- | --- | ---: | ---: | ---: | ---: |")
        for r in s["stages"]:
            print(
                f"| {r['stage']} | {r['outcome']} | {r['wall_s']} | {r['canary_requests']} | {r['floor_s']} | "
                f"{r['wall_vs_floor']}x |"
            )
        print(f"| all stages | | {s['stages_s']} | | {s['floor_s']} | {s['stages_vs_floor']}x |")
        print(f"| DAG run (airflow dags test: parse, prepare, stages, promote) | | {s['dag_run_s']} | | | |")
        print(
            f"  before the first stage (parse, start stable and canary): {s['before_first_stage_s']} s; "
            f"promote (new stable started, old drained): {s['promote_s']} s; traffic p50 "
            f"{s['traffic']['latency_ms_p50'] or 0:.1f} ms, 5xx {s['traffic']['5xx']}, conn {s['traffic']['connection_errors']}"
        )
    if "fault" in results:
        f = results["fault"]
        print(
            f"\ncandidate failing {f['fault_after_s']:g} s after its first prediction (check_interval_s "
            f"{f['check_interval_s']:g}): {f['status']} at {f.get('failed_stage')} (rc {f['rc']})"
        )
        if "error" in f:
            print(f"  {f['error']}")
            return
        print(
            f"  onset in {f['onset_stage']} after {f['canary_ok_before_onset']} good canary answers; "
            f"{f['canary_failed']} failed canary answers; reason: {(f['reason'] or '')[:160]}"
        )
        print("| from onset (canary's first 5xx) to | s | vs Flagger default (60 s x 1 check) |")
        print("| --- | ---: | ---: |")
        print(f"| analysis failed the stage | {f['detected_s']} | |")
        print(
            f"| last request answered by the canary (lower bound of 100% stable) | {f['last_canary_answer_s']} | |"
        )
        print(
            f"| rollback logged 'rolled back' (share 0 set, canary stopped): 100% stable | {f['all_stable_s']} | "
            f"{f['vs_flagger_default']:.2f}x (goal <= 10 s: {'met' if f['goal_met'] else 'NOT met'}) |"
        )
        print(f"| rollback task done (registry restored, model card updated) | {f['rollback_done_s']} | |")
        print(
            f"| peer: Flagger's default analysis (documented, not measured) | <= {f['flagger_default_s']} | 1.00x |"
        )
        print(
            f"  then {f['on_stable_after']}/{f['requests_after']} requests answered by stable; inference log after "
            f"onset: {f['log_canary_rows_after_onset']} canary rows, {f['log_stable_rows_after_onset']} stable rows; "
            f"the canary got one request every {f['canary_gap_s']:g} s at its share"
        )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", default=",".join(PARTS), help=f"comma-separated parts: {','.join(PARTS)}")
    parser.add_argument(
        "--quick", action="store_true", help="fewer requests, half the min_requests: a smoke run"
    )
    parser.add_argument("--requests", type=int, default=None, help="requests per path for the overhead (400)")
    parser.add_argument(
        "--fault-after-s",
        type=float,
        default=None,
        help="the faulty candidate fails this long after its first prediction "
        "(default: 60%% of canary_5's floor, mid-stage)",
    )
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args()
    parts = [p.strip() for p in args.only.split(",") if p.strip()]
    unknown = set(parts) - set(PARTS)
    if unknown:
        parser.error(f"unknown part(s) {sorted(unknown)}; choose from {list(PARTS)}")
    env = setup_env(args)

    import mlflow

    from include.modelops.data.example import generate_transactions
    from include.modelops.data.reading import read_dataset
    from include.modelops.platform import local_stack
    from include.modelops.rollout.local import LocalBackend
    from include.modelops.spec import load_spec_by_name

    spec = load_spec_by_name(MODEL)
    generate_transactions(WORK / "data", rows=3000, days=5, seed=9)
    frame = read_dataset(WORK / "data")
    mlflow.set_tracking_uri(env["MLFLOW_TRACKING_URI"])
    mlflow.set_registry_uri(env["MLFLOW_TRACKING_URI"])
    load = os.getloadavg()
    results: dict = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "quick": args.quick,
        "loadavg_start": [round(x, 2) for x in load],
    }
    try:
        if "overhead" in parts:
            results["overhead"] = bench_overhead(spec, frame, args.requests or (100 if args.quick else 400))
        if "stages" in parts or "fault" in parts:
            local_stack.migrate_airflow_db(env)
            d = Deployment(env, spec, frame)
            first = d.rollout(d.train(seed=1), traffic=False)  # v1: nothing to compare against, 100% at once
            if first["record"].get("status") != "promoted":
                raise RuntimeError(f"the first deployment failed; see {first['log_file']}")
            if "stages" in parts:
                results["stages"] = bench_stages(d)
            if "fault" in parts:
                step = spec.rollout.steps[0]
                after = (
                    args.fault_after_s
                    if args.fault_after_s is not None
                    else round(
                        0.6 * spec.rollout.step_min_requests(step) / (DEMO_RATE * step.traffic_percent / 100),
                        1,
                    )
                )
                results["fault"] = bench_fault(d, after)
    finally:
        LocalBackend(MODEL).shutdown()
    results["loadavg_end"] = [round(x, 2) for x in os.getloadavg()]
    print(
        f"\n{results['date']}  load average at start {results['loadavg_start']}, at end {results['loadavg_end']}"
    )
    print_table(results)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
