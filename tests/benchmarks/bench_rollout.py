"""Rollout speed: what the local splitter adds to a request, and how fast a crashed canary is taken out.

    make bench-rollout      # or: python tests/benchmarks/bench_rollout.py [--requests N] [--json out.json]

One model version (the fraud spec's scikit-learn model, trained here on generated transactions,
registered in a SQLite MLflow store and built into a bento) is served twice by the local backend,
as stable and as canary (`bentoml serve`, one worker each) behind Caddy:

* **splitter overhead**: p50/p95 of sequential single-row requests sent to the stable service
  directly (the peer) and through Caddy at 0% canary, interleaved so load drifts hit both alike;
* **crash to 100% stable**: with the canary at 25%, its server and workers are killed
  (``SIGKILL``); a supervisor loop calls ``backend.health("canary")`` every
  ``--check-interval`` s (the rollout stage's ``check_interval_s``; its phase against the crash is
  random) and on a dead canary sets the share to 0; the time runs until Caddy has the new weights,
  and the next 50 requests must all be answered by stable.
  Flagger's default analysis interval is 60 s per check.

Everything it writes goes under ``<project>/.state/bench/rollout``; every process it starts is
stopped. Not a test: pytest does not collect it.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
import urllib.request
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(PROJECT_ROOT))
WORK = PROJECT_ROOT / ".state" / "bench" / "rollout"


def setup_env() -> None:
    os.environ["MODELOPS_STATE_DIR"] = str(WORK / "state")
    os.environ["BENTOML_HOME"] = str(WORK / "bentoml")
    os.environ["MODELOPS_INFERENCE_LOG_URL"] = str(WORK / "inference_log")
    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{WORK / 'mlflow.db'}"
    os.environ.setdefault("MODELOPS_GIT_COMMIT", "bench")
    for k, v in {"BENTOML_DO_NOT_TRACK": "True", "MLFLOW_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "true"}.items():
        os.environ.setdefault(k, v)
    (WORK / "tmp").mkdir(parents=True, exist_ok=True)
    os.environ["TMPDIR"] = str(WORK / "tmp")


def post(url: str, body: bytes) -> tuple[float, str]:
    request = urllib.request.Request(f"{url}/predict", data=body, method="POST",
                                     headers={"Content-Type": "application/json"})
    started = time.perf_counter()
    with urllib.request.urlopen(request, timeout=10) as r:
        r.read()
        return time.perf_counter() - started, r.headers.get("X-ModelOps-Upstream", "")


def percentile_ms(values: list[float], q: float) -> float:
    import numpy as np

    return round(float(np.percentile(values, q)) * 1000, 3)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=400, help="requests per path for the overhead")
    parser.add_argument("--check-interval", type=float, default=1.0, help="supervisor check interval (s)")
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args()
    setup_env()

    import mlflow

    from include.modelops import packaging
    from include.modelops.dataset import generate_transactions, read_dataset
    from include.modelops.rollout.local import LocalBackend, pids_with_env
    from include.modelops.spec import load_spec_by_name
    from tests.integration.rollout_fixtures import build, train_and_register

    spec = load_spec_by_name("fraud_detection")
    generate_transactions(WORK / "data", rows=2000, days=5, seed=9)
    frame = read_dataset(WORK / "data")
    mlflow.set_tracking_uri(os.environ["MLFLOW_TRACKING_URI"])
    mlflow.set_registry_uri(os.environ["MLFLOW_TRACKING_URI"])
    experiment = (mlflow.get_experiment_by_name("bench-rollout")
                  or mlflow.get_experiment(mlflow.create_experiment(
                      "bench-rollout", artifact_location=(WORK / "artifacts").as_uri()))).experiment_id
    version = train_and_register(spec, frame, seed=1, experiment_id=experiment)
    tag = build(spec, version)
    body = json.dumps({"rows": packaging.request_rows(spec, frame.head(1))}).encode()

    backend = LocalBackend(spec.name, workers=1)
    results: dict = {}
    try:
        stable = backend.deploy("stable", version, tag)
        backend.deploy("canary", version, tag)
        endpoint = backend.endpoint()
        for url in (stable.url, endpoint):  # warm both paths
            for _ in range(30):
                post(url, body)
        direct, proxied = [], []
        for _ in range(args.requests):
            direct.append(post(stable.url, body)[0])
            proxied.append(post(endpoint, body)[0])
        results["overhead"] = {
            "requests": args.requests,
            "direct_p50_ms": percentile_ms(direct, 50), "direct_p95_ms": percentile_ms(direct, 95),
            "splitter_p50_ms": percentile_ms(proxied, 50), "splitter_p95_ms": percentile_ms(proxied, 95),
        }
        o = results["overhead"]
        o["added_p95_ms"] = round(o["splitter_p95_ms"] - o["direct_p95_ms"], 3)
        o["p95_ratio"] = round(o["splitter_p95_ms"] / o["direct_p95_ms"], 3)

        backend.set_canary_percent(25)
        canary = backend.state().variants["canary"]
        os.killpg(canary.pid, signal.SIGKILL)
        for pid in pids_with_env("BENTOML_HOME", canary.home):
            os.kill(pid, signal.SIGKILL)  # the whole service crashes, workers included
        onset = time.perf_counter()
        # The supervisor's phase against the crash is random: wait a random part of one interval first.
        time.sleep(args.check_interval * (time.time_ns() % 1000) / 1000)
        while backend.health("canary").alive:
            time.sleep(args.check_interval)
        detected = time.perf_counter() - onset
        backend.set_canary_percent(0)
        moved = time.perf_counter() - onset
        stable_host = backend.state().variants["stable"].url.removeprefix("http://")
        answered_by = [post(endpoint, body)[1] for _ in range(50)]  # after the move: every one on stable
        results["crash_to_stable"] = {
            "check_interval_s": args.check_interval, "detected_s": round(detected, 3),
            "all_stable_s": round(moved, 3), "requests_after": len(answered_by),
            "on_stable_after": sum(h == stable_host for h in answered_by), "flagger_default_interval_s": 60}
    finally:
        backend.shutdown()

    o, c = results["overhead"], results["crash_to_stable"]
    print(f"splitter overhead over {o['requests']} single-row requests each (sequential, interleaved):")
    print(f"  direct to stable   p50 {o['direct_p50_ms']:.2f} ms   p95 {o['direct_p95_ms']:.2f} ms   (peer)")
    print(f"  through Caddy      p50 {o['splitter_p50_ms']:.2f} ms   p95 {o['splitter_p95_ms']:.2f} ms   "
          f"(p95 +{o['added_p95_ms']:.2f} ms, {o['p95_ratio']:.2f}x; goal <= +1 ms)")
    print(f"crashed canary at 25% -> 100% stable: detected in {c['detected_s']:.2f} s, weights moved after "
          f"{c['all_stable_s']:.2f} s; then {c['on_stable_after']}/{c['requests_after']} requests answered by stable "
          f"(check interval {c['check_interval_s']:g} s; goal <= 10 s; Flagger's default interval: 60 s)")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
