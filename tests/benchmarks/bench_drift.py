"""The monitoring drift step against Evidently's DataDriftPreset called directly, on the same frames.

    python tests/benchmarks/bench_drift.py [--rows 356000] [--big-rows 3560000] [--cases peer,full,sampled,big]
                                           [--repeats 1] [--json out.json]

Shape from evidently issue #763: 100 columns (80 numeric, 20 categorical), reference and current
of ``--rows`` each, drift injected into 8 numeric and 2 categorical columns of the current frame.
Each case runs in a fresh interpreter so that its peak memory (ru_maxrss) is its own:

* ``peer``: ``Report([DataDriftPreset()]).run(current, reference)``, nothing else;
* ``step, every row``: ``monitoring.drift.drift_report`` with ``drift_sample_rows: null`` (the
  spec's methods and thresholds, prediction-free, the snapshot parsed into per-feature verdicts,
  the HTML report written);
* ``step, default sample``: the same with the default ``drift_sample_rows`` (200,000), whose
  per-feature verdicts are compared with the every-row run;
* ``step, 10x rows``: ``--big-rows`` current rows with the default sample.

``--cases`` picks some of them. ``--repeats N`` runs the peer and the every-row step N times in
rotation (peer, full, peer, full, ...; the sampled cases once, in the first round), so that load
from other work on a shared machine hits both alike, and reports each case's median time and the
ratio of the medians.

Prints one table with time, peak RSS and the ratio to the peer; ``--json`` writes the figures.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(PROJECT_ROOT), str(PROJECT_ROOT / "plugins")]

NUMERIC, CATEGORICAL = 80, 20
DRIFTED_NUMERIC, DRIFTED_CATEGORICAL = 8, 2
CATEGORIES = [f"c{i}" for i in range(10)]


def frames(rows: int, reference_rows: int, seed: int = 0):
    """Reference and current frames of the benchmark's shape (categoricals as pandas categories)."""
    import numpy as np
    import pandas as pd

    def one(n: int, rng, drift: bool) -> pd.DataFrame:
        cols = {}
        for i in range(NUMERIC):
            shift = 0.5 if drift and i < DRIFTED_NUMERIC else 0.0
            cols[f"n{i}"] = rng.normal(10 + i + shift * (i + 1), 1 + i / 10, n)
        for j in range(CATEGORICAL):
            p = np.full(len(CATEGORIES), 1 / len(CATEGORIES))
            if drift and j < DRIFTED_CATEGORICAL:
                p = np.array([0.4] + [0.6 / 9] * 9)
            cols[f"k{j}"] = pd.Categorical.from_codes(rng.choice(len(CATEGORIES), n, p=p), CATEGORIES)
        return pd.DataFrame(cols)

    return one(reference_rows, np.random.default_rng(seed), False), one(
        rows, np.random.default_rng(seed + 1), True
    )


def bench_spec(sample_rows: int | None):
    """A model spec with the benchmark's 100 features (the bundled spec's other sections)."""
    import yaml

    from include.modelops.spec import ModelSpec

    raw = yaml.safe_load((PROJECT_ROOT / "include/models/fraud_detection.yaml").read_text())
    raw["features"] = [{"name": f"n{i}", "type": "numeric"} for i in range(NUMERIC)] + [
        {"name": f"k{j}", "type": "categorical", "categories": CATEGORIES} for j in range(CATEGORICAL)
    ]
    for key in ("entity_id", "time_column", "segment_columns"):
        raw.pop(key, None)
    raw.setdefault("monitoring", {})["drift_sample_rows"] = sample_rows
    raw["name"] = "bench_drift"
    return ModelSpec.model_validate(raw)


def run_case(case: str, rows: int, reference_rows: int, out: Path) -> dict:
    """One case in this process; returns time, peak RSS and the verdicts."""
    t_gen = time.perf_counter()
    ref, cur = frames(rows, reference_rows)
    gen_s = time.perf_counter() - t_gen
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2
    if case == "peer":
        from evidently import DataDefinition, Dataset, Report
        from evidently.presets import DataDriftPreset

        definition = DataDefinition(
            numerical_columns=[f"n{i}" for i in range(NUMERIC)],
            categorical_columns=[f"k{j}" for j in range(CATEGORICAL)],
        )
        t0 = time.perf_counter()
        snap = Report([DataDriftPreset()]).run(
            Dataset.from_pandas(cur, data_definition=definition),
            Dataset.from_pandas(ref, data_definition=definition),
        )
        seconds = time.perf_counter() - t0
        drifted = sorted(
            m["config"]["column"]
            for m in snap.dict()["metrics"]
            if m["config"].get("type", "").endswith(":ValueDrift") and _drifted(m["config"], m["value"])
        )
    else:
        from include.modelops.monitoring.drift import drift_report

        spec = bench_spec(None if case == "full" else 200_000)
        t0 = time.perf_counter()
        report = drift_report(spec, ref, cur, out_dir=out / case)
        seconds = time.perf_counter() - t0
        drifted = sorted(report["top"])
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2
    return {
        "case": case,
        "rows": rows,
        "reference_rows": reference_rows,
        "seconds": round(seconds, 1),
        "peak_gib": round(peak, 2),
        "frames_gib": round(rss_before, 2),
        "generate_s": round(gen_s, 1),
        "drifted": drifted,
    }


def _drifted(cfg: dict, score: float) -> bool:
    """Evidently's verdict for one ValueDrift of the peer's report (its resolved method and threshold)."""
    from include.modelops.monitoring.drift import _method_names, is_drifted

    return is_drifted(_method_names().get(cfg["method"], cfg["method"]), score, cfg["threshold"])


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rows", type=int, default=356_000)
    p.add_argument("--big-rows", type=int, default=3_560_000)
    p.add_argument(
        "--cases",
        default="peer,full,sampled,big",
        help="comma-separated subset of peer,full,sampled,big (peer and full are always run)",
    )
    p.add_argument(
        "--repeats", type=int, default=1, help="run peer and full this many times in rotation; medians"
    )
    p.add_argument("--case", default=None, help=argparse.SUPPRESS)  # internal: run one case here
    p.add_argument("--case-rows", type=int, default=None, help=argparse.SUPPRESS)
    p.add_argument("--out", default=str(PROJECT_ROOT / ".state" / "bench_drift"))
    p.add_argument("--json", default=None)
    args = p.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.case:
        print(json.dumps(run_case(args.case, args.case_rows, args.rows, out)))
        return 0
    picked = {"peer", "full", *args.cases.split(",")}
    plan = [
        (c, rows)
        for c, rows in [
            ("peer", args.rows),
            ("full", args.rows),
            ("sampled", args.rows),
            ("big", args.big_rows),
        ]
        if c in picked
    ]
    runs: dict[tuple[str, int], list[dict]] = {key: [] for key in plan}
    for i in range(args.repeats):
        for case, rows in plan if i == 0 else plan[:2]:
            print(f"run {i + 1}/{args.repeats}: {case} on {rows:,} rows ...", file=sys.stderr, flush=True)
            res = subprocess.run(
                [
                    sys.executable,
                    __file__,
                    "--case",
                    "sampled" if case == "big" else case,
                    "--case-rows",
                    str(rows),
                    "--rows",
                    str(args.rows),
                    "--out",
                    str(out),
                ],
                capture_output=True,
                text=True,
            )
            if res.returncode != 0:
                print(res.stderr[-3000:], file=sys.stderr)
                return 1
            runs[(case, rows)].append(json.loads(res.stdout.strip().splitlines()[-1]))
            print(f"  {runs[(case, rows)][-1]['seconds']} s", file=sys.stderr, flush=True)
    results = []
    for key in plan:
        ordered = sorted(runs[key], key=lambda r: r["seconds"])
        results.append({**ordered[len(ordered) // 2], "all_seconds": [r["seconds"] for r in runs[key]]})
    peer, full = results[0], results[1]
    names = {
        "peer": "Evidently DataDriftPreset, direct (peer)",
        "full": "monitoring step, every row",
        "sampled": "monitoring step, default sample (200k)",
    }
    print(
        f"\nreference {args.rows:,} rows x {NUMERIC + CATEGORICAL} columns ({NUMERIC} numeric, {CATEGORICAL} "
        f"categorical); drift in {DRIFTED_NUMERIC} numeric + {DRIFTED_CATEGORICAL} categorical columns\n"
    )
    print(
        "| case | current rows | time (s) | vs peer | peak RSS (GiB) | drifted features | same verdicts as every row |"
    )
    print("| --- | ---: | ---: | ---: | ---: | ---: | --- |")
    for r in results:
        same = (
            "-"
            if r["case"] == "peer"
            else (
                "yes"
                if r["drifted"] == full["drifted"]
                else f"no: {sorted(set(r['drifted']) ^ set(full['drifted']))}"
            )
        )
        print(
            f"| {names[r['case']]} | {r['rows']:,} | {r['seconds']:.1f} | {r['seconds'] / peer['seconds']:.2f}x "
            f"| {r['peak_gib']:.2f} | {len(r['drifted'])} | {same} |"
        )
    if args.repeats > 1:
        print(
            f"\nmedian of {args.repeats} runs each; every run's seconds: "
            + "; ".join(f"{names[r['case']]} {r['all_seconds']}" for r in results)
        )
    print(f"\npeer and every-row step agree on the drifted features: {peer['drifted'] == full['drifted']}")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
