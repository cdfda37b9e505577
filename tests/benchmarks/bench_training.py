"""Training throughput of the PyTorch trainer: how close the real pipeline gets to a bare loop.

    python tests/benchmarks/bench_training.py                    # CPU here; CUDA when a GPU is visible
    python tests/benchmarks/bench_training.py --rows 2000000 --epochs 5 --json out.json   # the GPU table
    python tests/benchmarks/bench_training.py --batch-sizes auto,8192 --cuda-graphs off

It measures, on synthetic fraud transactions (``include.modelops.data.example``):

* **trainer**: ``torch_trainer.fit`` as the entrypoint runs it (encoding, staging on the device,
  validation, early-stopping bookkeeping, a checkpoint per epoch, MLflow metrics into a local
  SQLite store, the GPU sampler running) in rows/s, end to end and per epoch;
* **bare loop**: the same network, optimizer, batch size, precision, CUDA graphs and
  ``train_one_epoch`` fed from tensors already on the device, nothing else; the ratio trainer / bare loop is what the pipeline costs (the aim
  on a GPU is at least 0.9);
* **bf16 vs fp32**: the trainer with ``precision: bf16`` against ``precision: fp32``;
* **GPU utilisation** (mean NVML utilisation while the trainer runs, from ``GpuSampler`` sampling
  every 0.1 s), peak GPU memory, and the best validation ROC-AUC (a bigger batch must not buy speed
  with accuracy).

One row per ``--batch-sizes`` entry (on a GPU: the trainer's default, 65,536 and 262,144); the
trainer runs at its default precision (``auto``), fp32 and bf16. Runs alternate ``--repeats``
times and the best run of each counts (the trainer's by end to end, the bare loop's by loop rate). It prints one Markdown table.

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

from include.modelops.data.example import generate_transactions  # noqa: E402
from include.modelops.data.reading import read_dataset  # noqa: E402
from include.modelops.scoring import feature_frame  # noqa: E402
from include.modelops.spec import load_spec_by_name  # noqa: E402
from include.modelops.training import torch_trainer as tt  # noqa: E402
from include.modelops.training.telemetry import GpuSampler  # noqa: E402

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
    exp = mlflow.get_experiment_by_name("bench") or mlflow.get_experiment(
        mlflow.create_experiment("bench", artifact_location=(WORK / "artifacts").as_uri())
    )
    with mlflow.start_run(experiment_id=exp.experiment_id) as run, GpuSampler(interval_s=0.1) as sampler:
        t0 = time.perf_counter()
        model = tt.fit(spec, train, params=params, checkpoint_dir=ckpt)
        wall = time.perf_counter() - t0
    chosen = mlflow.get_run(run.info.run_id).data.params
    n_train = round(len(train) * (1 - params.get("validation_fraction", 0.1)))  # rows per epoch
    epochs = len(model.history)
    per_epoch = [h["rows_per_s"] for h in model.history[1:]] or [model.history[0]["rows_per_s"]]
    return {
        "end_to_end_rows_per_s": epochs * n_train / wall,
        "loop_rows_per_s": float(np.median(per_epoch)),
        "wall_s": wall,
        "epochs": epochs,
        "gpu": sampler.summary,
        "timings": model.timings,
        "epoch_seconds": [round(h["epoch_seconds"], 4) for h in model.history],
        "best_val_roc_auc": max(h["val_roc_auc"] for h in model.history),
        "batch_size": int(chosen["torch.batch_size"]),
        "precision": chosen["torch.precision"],
        "cuda_graphs": chosen["torch.cuda_graphs"],
    }


def run_bare_loop(spec, train, params: dict[str, Any]) -> dict[str, Any]:
    """The same network and ``train_one_epoch`` (same batch, precision and CUDA graphs as the trainer
    picks) on tensors already on the device, nothing else: the ceiling."""
    p = tt.TorchParams.from_spec(spec, params)
    device = tt.resolve_device(p.device)
    torch.manual_seed(p.seed)
    frame = feature_frame(spec, train)
    encoder = tt.TabularEncoder.fit(spec, frame)
    target = tt.TargetEncoding.fit(spec, train[spec.target.name], p.class_weight)
    dense, cat = encoder.transform(frame)
    y = target.encode(train[spec.target.name])
    tr_idx, _ = tt.validation_split(y, target.task, p.validation_fraction, p.seed)
    data = {k: torch.from_numpy(a[tr_idx]).to(device) for k, a in (("dense", dense), ("cat", cat), ("y", y))}
    batch = tt.resolve_batch_size(
        p.batch_size,
        len(tr_idx),
        device,
        encoder.n_dense + len(encoder.categorical) * p.embedding_dim,
        p.hidden_sizes,
    )
    amp = tt.resolve_precision(p.precision, device, p.hidden_sizes, batch)
    graphs = tt.resolve_cuda_graphs(p.cuda_graphs, device, amp, staged=True)
    net = tt.build_network(encoder, target, p).to(device)
    opt = torch.optim.AdamW(
        net.parameters(), lr=p.lr, weight_decay=p.weight_decay, fused=device.type == "cuda", capturable=graphs
    )
    scaler = torch.amp.GradScaler(device.type, enabled=amp == torch.float16)
    loss_fn = target.loss_fn(device)
    gen = torch.Generator().manual_seed(p.seed)
    graph = tt.StepGraph(batch) if graphs else None
    times = []
    perm = None
    for epoch in range(1, p.epochs + 1):
        sync(device)
        t0 = time.perf_counter()
        tt.train_one_epoch(
            net,
            opt,
            scaler,
            loss_fn,
            data,
            batch_size=batch,
            generator=gen,
            device=device,
            amp_dtype=amp,
            graph=graph,
            perm=perm,
        )
        # Like the trainer: on a GPU, the next order is drawn while this epoch still runs there.
        perm = (
            tt.draw_permutation(len(tr_idx), gen, device)
            if device.type == "cuda" and epoch < p.epochs
            else None
        )
        sync(device)
        times.append(time.perf_counter() - t0)
    steady = times[1:] or times
    return {
        "loop_rows_per_s": len(tr_idx) / float(np.median(steady)),
        "all_epochs_rows_per_s": len(tr_idx) * len(times) / sum(times),
    }


def main(argv: list[str] | None = None) -> int:
    gpu = torch.cuda.is_available()
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=2_000_000 if gpu else 100_000)
    ap.add_argument("--epochs", type=int, default=5 if gpu else 3)
    ap.add_argument(
        "--batch-sizes",
        default="auto,65536,262144" if gpu else "auto",
        help="comma-separated; 'auto' is the trainer's default",
    )
    ap.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    ap.add_argument("--cuda-graphs", choices=["auto", "on", "off"], default="auto")
    ap.add_argument("--repeats", type=int, default=2, help="runs of each measurement; the best counts")
    ap.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")

    WORK.mkdir(parents=True, exist_ok=True)
    tracking_uri = f"sqlite:///{WORK / 'mlflow.db'}"
    spec = load_spec_by_name("fraud_detection")
    train = load_data(args.rows)
    device = tt.resolve_device(args.device)
    base = {
        "epochs": args.epochs,
        "patience": args.epochs + 1,
        "device": args.device,
        "cuda_graphs": args.cuda_graphs,
    }

    # Warm up (CUDA context, cuBLAS handles, allocator) so no measurement pays for it.
    tt.fit(spec, train.head(20_000), params={**base, "epochs": 1, "precision": "fp32"})

    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    results: dict[str, Any] = {
        "device": name,
        "rows": len(train),
        "epochs": args.epochs,
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "repeats": args.repeats,
        "cuda_graphs": args.cuda_graphs,
        "by_batch": {},
    }
    table = []
    for batch in [b.strip() for b in args.batch_sizes.split(",") if b.strip()]:
        got: dict[str, Any] = {}
        runs = [
            (
                f"trainer_{prec}",
                lambda prec=prec: run_trainer(
                    spec, train, {**base, "batch_size": batch, "precision": prec}, tracking_uri
                ),
            )
            for prec in ("auto", "fp32", "bf16")
        ]
        runs.append(("bare", lambda: run_bare_loop(spec, train, {**base, "batch_size": batch})))
        # Trainer and bare loop alternate, and the best of the repeats counts (the trainer's by its
        # end-to-end rate, the bare loop's by its loop rate): a shared machine's noise only ever
        # slows a run down.
        for _ in range(args.repeats):
            for key, run in runs:
                r = run()
                best_by = "loop_rows_per_s" if key == "bare" else "end_to_end_rows_per_s"
                if key not in got or r[best_by] > got[key][best_by]:
                    got[key] = r
        results["by_batch"][batch] = got
        tr, bare = got["trainer_auto"], got["bare"]
        g = tr["gpu"]
        table.append(
            {
                "batch": f"{tr['batch_size']:,}" + (" (default)" if batch == "auto" else ""),
                "precision": tr["precision"] + (", graphs" if tr["cuda_graphs"] == "true" else ""),
                "trainer end to end": _rate(tr["end_to_end_rows_per_s"]),
                "trainer loop": _rate(tr["loop_rows_per_s"]),
                "bare loop": _rate(bare["loop_rows_per_s"]),
                "loop / bare": f"{tr['loop_rows_per_s'] / bare['loop_rows_per_s']:.2f}x",
                "end to end / bare": f"{tr['end_to_end_rows_per_s'] / bare['loop_rows_per_s']:.2f}x",
                "bf16 / fp32 (trainer loop)": f"{got['trainer_bf16']['loop_rows_per_s'] / got['trainer_fp32']['loop_rows_per_s']:.2f}x",
                "mean GPU util": f"{g['mean_utilization_pct']:.0f}%" if g.get("enabled") else "n/a",
                "peak GPU memory": f"{g['peak_memory_mb'] / 1024:.1f} GB" if g.get("enabled") else "n/a",
                "best val AUC": f"{tr['best_val_roc_auc']:.4f}",
            }
        )

    n_train = round(len(train) * 0.9)
    print(
        f"\ndevice: {name}; {n_train:,} training rows x {args.epochs} epochs; torch {torch.__version__}; "
        f"best of {args.repeats}"
    )
    if not gpu:
        print(
            "mean GPU util: n/a ("
            + str(results["by_batch"][next(iter(results["by_batch"]))]["trainer_auto"]["gpu"].get("reason"))
            + ")"
        )
    cols = list(table[0])
    print("\n| " + " | ".join(cols) + " |")
    print("| " + " | ".join("---:" for _ in cols) + " |")
    for row in table:
        print("| " + " | ".join(row[c] for c in cols) + " |")
    for batch, got in results["by_batch"].items():
        tr = got["trainer_auto"]
        print(
            f"batch {batch}: trainer wall {tr['wall_s']:.2f} s = "
            + ", ".join(f"{k[:-2]} {v:.2f}" for k, v in tr["timings"].items())
            + " s; epochs "
            + ", ".join(f"{s:.2f}" for s in tr["epoch_seconds"])
            + " s"
        )
        print(
            f"batch {batch}: best val AUC fp32 {got['trainer_fp32']['best_val_roc_auc']:.4f}, bf16 "
            f"{got['trainer_bf16']['best_val_roc_auc']:.4f}; end to end fp32 "
            f"{_rate(got['trainer_fp32']['end_to_end_rows_per_s'])}, bf16 "
            f"{_rate(got['trainer_bf16']['end_to_end_rows_per_s'])}"
        )
    if args.json:
        args.json.write_text(json.dumps(results, indent=2, default=str))
    return 0


def _rate(rows_per_s: float) -> str:
    return f"{rows_per_s / 1e6:.2f} M rows/s" if rows_per_s >= 1e6 else f"{rows_per_s / 1e3:,.0f} k rows/s"


if __name__ == "__main__":
    raise SystemExit(main())
