"""The inference log's write-ahead spool on the request path: what one ``submit`` costs with it and without.

    python tests/benchmarks/bench_inference_log_spool.py [--requests 20000]

``InferenceLogWriter.submit`` is what a served request pays for logging (the rest happens in the
writer thread). With the spool on it also pickles the request's records and appends them with
one ``os.write``; this times ``submit`` alone (median of 5 rounds, microseconds per request) for
1-row and 100-row requests of the fraud spec, spool on and off, on the local disk under
``<project>/.state/bench/inference_log_spool``. The writer thread flushes once a round ends, so
the timing is the request side only. Not a test: pytest does not collect it. Figures in
docs/benchmarks.md (Serving, "the write-ahead spool").
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import time
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(PROJECT_ROOT))
WORK = PROJECT_ROOT / ".state" / "bench" / "inference_log_spool"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument(
        "--requests", type=int, default=20_000, help="requests per round (100-row requests: a tenth)"
    )
    args = p.parse_args(argv)

    from include.modelops.serving.contract import example_row
    from include.modelops.serving.inference_log import InferenceLogWriter, request_records
    from include.modelops.spec import load_spec_by_name

    spec = load_spec_by_name("fraud_detection")
    shutil.rmtree(WORK, ignore_errors=True)
    print(
        "| request | spool off (us/request) | spool on (us/request) | added (us) |\n| --- | ---: | ---: | ---: |"
    )
    for rows in (1, 100):
        records = request_records(
            spec,
            request_id="r",
            model_version="1",
            variant="stable",
            rows=[example_row(spec)] * rows,
            predictions=[{"score": 0.1, "label": 0}] * rows,
            latency_ms=1.0,
        )
        n = args.requests if rows == 1 else args.requests // 10
        medians = {}
        for spool in (None, WORK / "spool"):
            rounds = []
            for i in range(5):
                writer = InferenceLogWriter(
                    spec,
                    root=str(WORK / f"log-{rows}-{i}"),
                    spool_dir=spool,
                    max_queue_rows=10**8,
                    batch_rows=10**8,
                    flush_interval_s=3600,
                )
                writer.flush()  # the spool's recovery look is done before timing
                started = time.perf_counter()
                for _ in range(n):
                    writer.submit(records)
                rounds.append((time.perf_counter() - started) / n * 1e6)
                writer.close()
            medians[spool is not None] = statistics.median(rounds)
        print(
            f"| {rows} row(s) | {medians[False]:.1f} | {medians[True]:.1f} | {medians[True] - medians[False]:+.1f} |"
        )
    shutil.rmtree(WORK, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
