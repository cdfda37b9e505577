"""Rollout failure recovery: a killed traffic splitter, and an abort while MLflow is down.

    .venv/bin/python tests/benchmarks/bench_router.py [--only router,abort]
        [--kills N] [--rate R] [--cap-s S] [--router-cap-s S] [--project DIR] [--json out.json]

Both parts run the fraud spec's models (scikit-learn, trained here on generated transactions,
registered in a real MLflow server with a SQLite store, built into bentos) as stable and canary
``bentoml serve`` processes (one worker each) behind the local Caddy splitter, while a client
thread sends single-row requests at ``--rate`` per second (each with a 2 s timeout) and keeps
every request's send time, answer time, status and ``X-ModelOps-Upstream``:

* **router**: canary at 10% (the operator's case in issue 17). Caddy is killed with SIGKILL
  ``--kills`` times, 5 s apart; per kill: seconds from the kill until the first request sent
  after it is answered 200, and how many requests failed in between. Goal: <= 5 s.
* **abort**: canary at 50%; the MLflow server is stopped, then ``stages.rollback()`` is called
  (as the DAG's rollback task does) in a thread. Reported: seconds from the call until every
  request goes to stable (the send time of the first request of the final all-stable run), the
  call's own duration, and whether the registry writes landed after MLflow was started again.
  Goal: <= 5 s.

``--cap-s`` bounds each wait (for code that never recovers). Run it against an older commit with
``git worktree add /work/old-ref <commit>`` and ``--project /work/old-ref`` (this venv's python,
that checkout's ``include/``). Everything goes under ``<project>/.state/bench/router`` (wiped at
the start); every process it starts is stopped. Not a test: pytest does not collect it.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import sys
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from include.modelops.platform import processes  # noqa: E402

PARTS = ("router", "abort")
MODEL = "fraud_detection"
GOAL_S = 5.0


def _project() -> Path:
    if "--project" in sys.argv:
        return Path(sys.argv[sys.argv.index("--project") + 1]).resolve()
    return Path(__file__).resolve().parents[2]


PROJECT_ROOT = _project()
sys.path.insert(0, str(PROJECT_ROOT))
if PROJECT_ROOT != Path(__file__).resolve().parents[2]:
    sys.path.insert(1, str(Path(__file__).resolve().parents[2]))  # tests.integration.rollout_fixtures
WORK = PROJECT_ROOT / ".state" / "bench" / "router"


@dataclass
class Sent:
    sent_at: float
    answered_at: float
    status: int | None
    upstream: str


class Clients:
    """One client thread sending requests at a steady rate until stopped."""

    def __init__(self, url: str, body: bytes, rate: float) -> None:
        self.url, self.body, self.gap = url, body, 1 / rate
        self.records: list[Sent] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _one(self) -> None:
        request = urllib.request.Request(
            f"{self.url}/predict", data=self.body, method="POST", headers={"Content-Type": "application/json"}
        )
        sent = time.time()
        status, upstream = None, ""
        try:
            with urllib.request.urlopen(request, timeout=2) as r:
                r.read()
                status, upstream = r.status, r.headers.get("X-ModelOps-Upstream", "")
        except urllib.error.HTTPError as exc:
            status = exc.code
        except OSError:
            pass
        self.records.append(Sent(sent, time.time(), status, upstream))

    def _run(self) -> None:
        next_at = time.monotonic()
        while not self._stop.is_set():
            self._one()
            next_at += self.gap
            time.sleep(max(0.0, next_at - time.monotonic()))

    def __enter__(self) -> Clients:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)


def setup(args: argparse.Namespace):
    from include.modelops.platform import local_stack

    shutil.rmtree(WORK, ignore_errors=True)
    (WORK / "tmp").mkdir(parents=True)
    port = local_stack.free_port()
    uri = f"http://127.0.0.1:{port}"
    env = local_stack.stack_env(WORK / "state", uri)
    env.update(
        MODELOPS_SERVE_WORKERS="1",
        MODELOPS_GIT_COMMIT="bench",
        TMPDIR=str(WORK / "tmp"),
        MODELOPS_INFERENCE_LOG_URL=str(WORK / "state" / "inference_log"),
    )
    os.environ.update(
        {
            k: env[k]
            for k in (
                "MODELOPS_STATE_DIR",
                "BENTOML_HOME",
                "MLFLOW_TRACKING_URI",
                "MODELOPS_SERVE_WORKERS",
                "MODELOPS_GIT_COMMIT",
                "MODELOPS_INFERENCE_LOG_URL",
                "BENTOML_DO_NOT_TRACK",
                "MLFLOW_DISABLE_TELEMETRY",
                "DO_NOT_TRACK",
                "XDG_CACHE_HOME",
                "MPLCONFIGDIR",
                "TMPDIR",
            )
        }
    )
    return port, env


def bench_router(backend, url: str, body: bytes, kills: int, rate: float, cap_s: float) -> dict:
    from include.modelops.platform.processes import process_alive

    backend.set_canary_percent(10)
    rows = []
    with Clients(url, body, rate) as clients:
        time.sleep(3)
        for _ in range(kills):
            sp = backend.state().splitter
            killed_at = time.time()
            os.kill(sp["pid"], signal.SIGKILL)
            deadline = time.monotonic() + cap_s
            back = None
            while time.monotonic() < deadline and back is None:
                time.sleep(0.05)
                back = next(
                    (r for r in list(clients.records) if r.sent_at >= killed_at and r.status == 200), None
                )
            after = [
                r
                for r in list(clients.records)
                if r.sent_at >= killed_at and (back is None or r.sent_at < back.sent_at)
            ]
            rows.append(
                {
                    "served_again_s": round(back.answered_at - killed_at, 3) if back else None,
                    "failed_requests": sum(1 for r in after if r.status != 200),
                    "restarts_recorded": backend.state().splitter.get("restarts"),
                    "outage_recorded_s": backend.state().splitter.get("last_outage_s"),
                }
            )
            if back is None:
                break  # never came back: the old code needs a task to restart it
            time.sleep(5)
            if not process_alive(backend.state().splitter.get("pid"), None):
                break
    served = [r["served_again_s"] for r in rows if r["served_again_s"] is not None]
    worst = max(served) if served and len(served) == len(rows) else None
    return {
        "kills": rows,
        "rate_per_s": rate,
        "cap_s": cap_s,
        "worst_served_again_s": worst,
        "goal_s": GOAL_S,
        "worst_vs_goal": round(worst / GOAL_S, 3) if worst is not None else None,
        "goal_met": worst is not None and worst <= GOAL_S,
    }


def bench_abort(backend, server, url: str, body: bytes, v2: str, rate: float, cap_s: float) -> dict:
    from include.modelops.rollout import stages

    stable_host = backend.state().variants["stable"].url.removeprefix("http://")
    backend.set_canary_percent(50)
    call: dict = {}

    def abort() -> None:
        t = time.time()
        try:
            call["result"] = stages.rollback(
                MODEL, v2, reason="bench: aborted with MLflow down", backend=backend
            )
        except Exception as exc:  # the old code raises once MLflow's retries give up
            call["error"] = f"{type(exc).__name__}: {str(exc)[:200]}"
        call["took_s"] = round(time.time() - t, 3)

    with Clients(url, body, rate) as clients:
        time.sleep(3)
        server.stop()
        called_at = time.time()
        thread = threading.Thread(target=abort, daemon=True)
        thread.start()
        thread.join(cap_s)
        time.sleep(2)  # a tail of requests after the call, to see where they go
    records = [r for r in clients.records if r.sent_at >= called_at]
    last_not_stable = max(
        (i for i, r in enumerate(records) if r.upstream != stable_host or r.status != 200), default=-1
    )
    all_stable_from = records[last_not_stable + 1].sent_at if last_not_stable + 1 < len(records) else None
    moved_s = round(all_stable_from - called_at, 3) if all_stable_from else None
    out = {
        "rate_per_s": rate,
        "cap_s": cap_s,
        "call_s": call.get("took_s"),
        "call_returned": "took_s" in call,
        "error": call.get("error"),
        "registry_pending": (call.get("result") or {}).get("registry_pending"),
        "all_on_stable_s": moved_s,
        "requests_after_call": len(records),
        "canary_answers_after_call": sum(1 for r in records if r.upstream and r.upstream != stable_host),
        "failed_after_call": sum(1 for r in records if r.status != 200),
        "goal_s": GOAL_S,
        "vs_goal": round(moved_s / GOAL_S, 3) if moved_s is not None else None,
        "goal_met": moved_s is not None and moved_s <= GOAL_S,
    }
    server.start()
    pending = list((WORK / "state" / "rollout" / MODEL).glob("registry-pending-v*.json"))
    deadline = time.monotonic() + 120
    while pending and time.monotonic() < deadline:
        time.sleep(0.5)
        pending = [p for p in pending if p.exists()]
    out["registry_landed_after_restart"] = not pending
    return out


class Server:
    def __init__(self, port: int, env: dict[str, str]) -> None:
        self.port, self.env, self.proc = port, env, None

    def start(self) -> None:
        from include.modelops.platform import local_stack

        if self.proc is None:
            self.proc = local_stack.start_mlflow(WORK / "mlflow", self.port, self.env)

    def stop(self) -> None:
        if self.proc is not None:
            processes.stop_process(self.proc)
            self.proc = None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", default=",".join(PARTS), help=f"comma-separated parts: {','.join(PARTS)}")
    parser.add_argument("--kills", type=int, default=5, help="how many times caddy is killed (router part)")
    parser.add_argument("--rate", type=float, default=20.0, help="client requests per second")
    parser.add_argument("--cap-s", type=float, default=60.0, help="give up waiting for a recovery after this")
    parser.add_argument(
        "--router-cap-s", type=float, default=None, help="the same for the router part (--cap-s)"
    )
    parser.add_argument(
        "--project", default=None, help="the checkout whose include/ runs (default: this one)"
    )
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args()
    parts = [p.strip() for p in args.only.split(",") if p.strip()]
    port, env = setup(args)

    import mlflow

    from include.modelops.data.example import generate_transactions
    from include.modelops.data.reading import read_dataset
    from include.modelops.platform import tracking
    from include.modelops.rollout import stages
    from include.modelops.rollout.local import LocalBackend
    from include.modelops.serving.contract import request_rows
    from include.modelops.spec import load_spec_by_name
    from tests.integration.rollout_fixtures import build, train_and_register

    results: dict = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "project": str(PROJECT_ROOT),
        "loadavg_start": [round(x, 2) for x in os.getloadavg()],
        "cpus": os.cpu_count(),
    }
    server = Server(port, env)
    server.start()
    backend = LocalBackend(MODEL, workers=1)
    try:
        spec = load_spec_by_name(MODEL)
        generate_transactions(WORK / "data", rows=2000, days=5, seed=9)
        frame = read_dataset(WORK / "data")
        mlflow.set_tracking_uri(env["MLFLOW_TRACKING_URI"])
        mlflow.set_registry_uri(env["MLFLOW_TRACKING_URI"])
        experiment = mlflow.create_experiment("bench-router")
        v1 = train_and_register(spec, frame, seed=1, experiment_id=experiment)
        v2 = train_and_register(spec, frame, seed=2, experiment_id=experiment)
        for v in (v1, v2):
            tracking.set_version_tags(
                MODEL, v, {"modelops.deployable": "true", "modelops.bento_tag": build(spec, v)}
            )
        tracking.set_alias(MODEL, tracking.CHAMPION, v1)
        tracking.set_alias(MODEL, tracking.CHALLENGER, v2)
        body = json.dumps({"rows": request_rows(spec, frame.head(1))}).encode()
        stages.prepare(MODEL, v2, dag_run_id="bench-router", backend=backend)
        url = backend.endpoint()
        if "router" in parts:
            results["router"] = bench_router(
                backend, url, body, args.kills, args.rate, args.router_cap_s or args.cap_s
            )
            backend.endpoint()  # the old code restarts the splitter here (a task would)
        if "abort" in parts:
            results["abort"] = bench_abort(backend, server, url, body, v2, args.rate, args.cap_s)
    finally:
        backend.shutdown()
        server.stop()
        for pid_file in (WORK / "state" / "rollout" / MODEL).glob("v*.json"):
            pid = json.loads(pid_file.read_text()).get("registry_retry_pid")
            if pid:
                try:
                    os.killpg(pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
    results["loadavg_end"] = [round(x, 2) for x in os.getloadavg()]
    print(json.dumps(results, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
