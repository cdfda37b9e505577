"""Training throughput of the PyTorch trainer: how close the real pipeline gets to a bare loop.

    python tests/benchmarks/bench_training.py                    # CPU here; CUDA when a GPU is visible
    python tests/benchmarks/bench_training.py --rows 2000000 --epochs 5 --batch-size 8192 --json out.json

It measures, on synthetic fraud transactions (``include.modelops.dataset``):

* **trainer**: ``torch_trainer.fit`` as the entrypoint runs it (encoding, staging on the device,
  validation, early-stopping bookkeeping, a checkpoint per epoch, MLflow metrics into a local
  SQLite store, the GPU sampler running) in rows/s, end to end and per epoch;
* **bare loop**: the same network, optimizer and ``train_one_epoch`` fed from tensors already on
  the device, nothing else; the ratio trainer / bare loop is what the pipeline costs (the aim
  on a GPU is at least 0.9);
* **bf16 vs fp32**: the trainer with ``precision: bf16`` against ``precision: fp32``;
* **GPU utilisation** (mean NVML utilisation while the trainer runs, from ``GpuSampler``).

Trainer and bare loop alternate ``--repeats`` times and the best run of each counts.

Everything it writes goes under ``<project>/.state/bench`` (git-ignored). It is not a test:
pytest does not collect it (no ``test_`` prefix).
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import sys
import time
from pathlib import Path
from typing import Any

PROJECT_ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(PROJECT_ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from include.modelops.dataset import generate_transactions, read_dataset  # noqa: E402
from include.modelops.scoring import feature_frame  # noqa: E402
from include.modelops.spec import load_spec_by_name  # noqa: E402
from include.modelops.telemetry import GpuSampler  # noqa: E402
from include.modelops.training import torch_trainer as tt  # noqa: E402

WORK = PROJECT_ROOT / ".state" / "bench"


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def load_data(rows: int, seed: int = 5) -> Any:
    folder = WORK / f"transactions-{rows}-{seed}"
    if not folder.exists():
        generate_transactions(folder, rows=rows, days=30, seed=seed)
    return read_dataset(folder)


def run_trainer(spec, train, params: dict[str, Any], tracking_uri: str) -> dict[str, Any]:
    """The real pipeline, timed end to end, with MLflow logging, checkpoints and the GPU sampler."""
    import mlflow

    ckpt = WORK / "checkpoints"
    shutil.rmtree(ckpt, ignore_errors=True)
    mlflow.set_tracking_uri(tracking_uri)
    exp = mlflow.get_experiment_by_name("bench") or mlflow.get_experiment(mlflow.create_experiment(
        "bench", artifact_location=(WORK / "artifacts").as_uri()))
    with mlflow.start_run(experiment_id=exp.experiment_id), GpuSampler(interval_s=0.5) as sampler:
        t0 = time.perf_counter()
        model = tt.fit(spec, train, params=params, checkpoint_dir=ckpt)
        wall = time.perf_counter() - t0
    n_train = round(len(train) * (1 - params.get("validation_fraction", 0.1)))  # rows per epoch
    epochs = len(model.history)
    per_epoch = [h["rows_per_s"] for h in model.history[1:]] or [model.history[0]["rows_per_s"]]
    return {"end_to_end_rows_per_s": epochs * n_train / wall, "loop_rows_per_s": float(np.median(per_epoch)),
            "wall_s": wall, "epochs": epochs, "gpu": sampler.summary}


def run_bare_loop(spec, train, params: dict[str, Any]) -> dict[str, Any]:
    """The same network and ``train_one_epoch`` on tensors already on the device: the ceiling."""
    p = tt.TorchParams.from_spec(spec, params)
    device = tt.resolve_device(p.device)
    amp = tt.resolve_precision(p.precision, device)
    torch.manual_seed(p.seed)
    frame = feature_frame(spec, train)
    encoder = tt.TabularEncoder.fit(spec, frame)
    target = tt.TargetEncoding.fit(spec, train[spec.target.name], p.class_weight)
    dense, cat = encoder.transform(frame)
    y = target.encode(train[spec.target.name])
    tr_idx, _ = tt.validation_split(y, target.task, p.validation_fraction, p.seed)
    data = {k: torch.from_numpy(a[tr_idx]).to(device) for k, a in (("dense", dense), ("cat", cat), ("y", y))}
    net = tt.build_network(encoder, target, p).to(device)
    opt = torch.optim.AdamW(net.parameters(), lr=p.lr, weight_decay=p.weight_decay,
                            fused=device.type == "cuda")
    scaler = torch.amp.GradScaler(device.type, enabled=amp == torch.float16)
    loss_fn = target.loss_fn(device)
    gen = torch.Generator().manual_seed(p.seed)
    times = []
    for _ in range(p.epochs):
        sync(device)
        t0 = time.perf_counter()
        tt.train_one_epoch(net, opt, scaler, loss_fn, data, batch_size=p.batch_size, generator=gen,
                           device=device, amp_dtype=amp)
        sync(device)
        times.append(time.perf_counter() - t0)
    steady = times[1:] or times
    return {"loop_rows_per_s": len(tr_idx) / float(np.median(steady)),
            "all_epochs_rows_per_s": len(tr_idx) * len(times) / sum(times)}


def main(argv: list[str] | None = None) -> int:
    gpu = torch.cuda.is_available()
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=2_000_000 if gpu else 100_000)
    ap.add_argument("--epochs", type=int, default=5 if gpu else 3)
    ap.add_argument("--batch-size", type=int, default=8192 if gpu else 2048)
    ap.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    ap.add_argument("--repeats", type=int, default=2, help="runs of each measurement; the best counts")
    ap.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")

    WORK.mkdir(parents=True, exist_ok=True)
    tracking_uri = f"sqlite:///{WORK / 'mlflow.db'}"
    spec = load_spec_by_name("fraud_detection")
    train = load_data(args.rows)
    device = tt.resolve_device(args.device)
    base = {"epochs": args.epochs, "patience": args.epochs + 1, "batch_size": args.batch_size,
            "device": args.device}

    # Warm up (CUDA context, cuBLAS handles, allocator) so no measurement pays for it.
    tt.fit(spec, train.head(20_000), params={**base, "epochs": 1, "precision": "fp32"})

    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    results: dict[str, Any] = {"device": name,
                               "rows": len(train), "epochs": args.epochs, "batch_size": args.batch_size,
                               "torch": torch.__version__, "threads": torch.get_num_threads(),
                               "repeats": args.repeats}
    # Trainer and bare loop alternate, and the best of the repeats counts: a shared machine's
    # noise only ever slows a run down.
    for precision in ("fp32", "bf16"):
        params = {**base, "precision": precision}
        for _ in range(args.repeats):
            for name, run in (("trainer", lambda: run_trainer(spec, train, params, tracking_uri)),
                              ("bare", lambda: run_bare_loop(spec, train, params))):
                got, key = run(), f"{name}_{precision}"
                if key not in results or got["loop_rows_per_s"] > results[key]["loop_rows_per_s"]:
                    results[key] = got

    def ratio(a: float, b: float) -> str:
        return f"{a / b:.2f}x" if b else "n/a"

    default_prec = "bf16" if device.type == "cuda" else "fp32"
    tr, bare = results[f"trainer_{default_prec}"], results[f"bare_{default_prec}"]
    gpu_summary = tr["gpu"]
    util = (f"{gpu_summary['mean_utilization_pct']:.0f}%" if gpu_summary.get("enabled")
            else f"n/a ({gpu_summary.get('reason')})")
    rows = [
        ("device", results["device"]),
        ("training rows x epochs", f"{int(len(train) * 0.9):,} x {args.epochs} (batch {args.batch_size})"),
        (f"trainer, end to end ({default_prec})", f"{tr['end_to_end_rows_per_s']:,.0f} rows/s"),
        (f"trainer, training loop ({default_prec})", f"{tr['loop_rows_per_s']:,.0f} rows/s"),
        (f"bare loop, tensors on device ({default_prec})", f"{bare['loop_rows_per_s']:,.0f} rows/s"),
        ("trainer loop / bare loop", ratio(tr["loop_rows_per_s"], bare["loop_rows_per_s"])),
        ("trainer end to end / bare loop", ratio(tr["end_to_end_rows_per_s"], bare["loop_rows_per_s"])),
        ("trainer bf16 / fp32 (loop)", ratio(results["trainer_bf16"]["loop_rows_per_s"],
                                             results["trainer_fp32"]["loop_rows_per_s"])),
        ("bare loop bf16 / fp32", ratio(results["bare_bf16"]["loop_rows_per_s"],
                                        results["bare_fp32"]["loop_rows_per_s"])),
        ("mean GPU utilisation while training", util),
    ]
    if gpu_summary.get("enabled"):
        rows.append(("peak GPU memory", f"{gpu_summary['peak_memory_mb']:,.0f} MB"))
        if gpu_summary.get("energy_wh") is not None:
            rows.append(("GPU energy (trainer run)", f"{gpu_summary['energy_wh']:.2f} Wh"))
    width = max(len(k) for k, _ in rows)
    print()
    for key, value in rows:
        print(f"{key:<{width}}  {value}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
