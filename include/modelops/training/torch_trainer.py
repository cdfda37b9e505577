"""PyTorch trainer for tabular data, behind the same interface as the scikit-learn one.

The network embeds each categorical feature (categories come from the spec; index 0 is
"unknown or missing"), standardises numeric features (median-imputed, statistics fitted on
the training rows only), feeds booleans as 0/1 (a null as 0) and runs the result through an MLP.
A table may lack categorical or numeric features altogether.

What makes it fit for a GPU node pool:

* encoding is column-wise numpy and pandas on a thread pool; the whole data set goes to the GPU
  once and is cut into training and validation rows there, when it fits (by default in half of
  the free GPU memory); each epoch walks a shuffled permutation of row indices (drawn while the
  GPU still runs the previous epoch), so there is no per-batch ``DataLoader`` and no
  host-to-device copy inside the loop;
* on a GPU each optimizer step is captured once as a CUDA graph and replayed (``cuda_graphs``):
  the small networks built here are bound by kernel launches, not arithmetic;
* precision and batch size are chosen by measurement (``auto``; see ``resolve_precision`` and
  ``resolve_batch_size``), and the choices go to the run's params (``torch.batch_size``,
  ``torch.precision``, ``torch.cuda_graphs``, ``torch.device``);
* one host sync per epoch: the training loss, validation loss and validation ROC-AUC are all
  computed on the device and read together; epoch metrics go to MLflow in one batch at most
  every 10 seconds and at the end;
* a checkpoint after every epoch (model, optimizer, gradient scaler, epoch, best metric and
  weights, RNG states), copied to pinned host memory without waiting for the GPU and written
  atomically on a background thread while the next epoch trains; a retried task resumes after
  the last written epoch instead of starting over, and ends with the same weights an
  uninterrupted run gets.

Class imbalance: by default the loss weighs classes inversely to their frequency
(``pos_weight`` for binary targets), and the predicted logits are shifted back by the log of
those weights, so the logged model still returns calibrated probabilities.

``training.params`` (all optional):

| param | default | meaning |
| --- | --- | --- |
| ``epochs`` | 30 | most epochs to train |
| ``batch_size`` | auto | rows per optimizer step; ``auto``: 2,048 on CPU, about ``n_train / 128`` (1,024 to 16,384) on a GPU |
| ``lr`` | 0.003 | AdamW learning rate |
| ``weight_decay`` | 1e-5 | AdamW weight decay |
| ``embedding_dim`` | 8 | width of each categorical embedding |
| ``hidden_sizes`` | [256, 128] | widths of the MLP's hidden layers |
| ``dropout`` | 0.1 | dropout after each hidden layer |
| ``patience`` | 4 | epochs without improvement of the validation metric before stopping |
| ``validation_fraction`` | 0.1 | share of training rows held out (seeded, stratified) for early stopping |
| ``class_weight`` | balanced | ``balanced`` or ``none`` (classification only) |
| ``device`` | auto | ``auto`` (CUDA when available), ``cpu`` or ``cuda`` |
| ``precision`` | auto | ``auto`` (fp32 on CPU; on a GPU bf16 for layers 1,024 wide or more or batches of 65,536 rows or more, else TF32), ``bf16``, ``fp16`` (CUDA only) or ``fp32`` |
| ``seed`` | ``split.seed`` | seed for initialisation, the validation split and shuffling |
| ``max_device_memory_fraction`` | 0.5 | stage data on the GPU only if it fits in this share of free memory |
| ``cuda_graphs`` | auto | ``auto``/``on``: replay each step as a CUDA graph on a GPU with the data on it (not with fp16); ``off`` |

The validation metric is ROC-AUC for binary targets and the validation loss otherwise.
"""

from __future__ import annotations

import json
import logging
import math
import os
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import mlflow.pyfunc
import numpy as np
import pandas as pd
import torch
from torch import nn

from include.modelops.scoring import feature_frame
from include.modelops.training.checkpoints import (
    CHECKPOINT_FORMAT,
    CheckpointWriter,
    checkpoint_fingerprint,
    load_checkpoint,
)
from include.modelops.training.torch_features import TabularEncoder, TargetEncoding
from include.modelops.training.torch_steps import (
    PREDICT_BATCH,
    StepGraph,
    draw_permutation,
    resolve_batch_size,
    resolve_cuda_graphs,
    stage,
    train_one_epoch,
    validate,
    validation_split,
)

if TYPE_CHECKING:
    from include.modelops.spec import ModelSpec

log = logging.getLogger(__name__)

CHECKPOINT_FILE = "checkpoint.pt"


_HALF_PRECISION_MIN_WIDTH = 1024


_HALF_PRECISION_MIN_BATCH = 65_536


_MIN_DELTA = 1e-4


_METRICS_EVERY_S = 10.0  # epoch metrics go to MLflow in one batch at most this often


@dataclass(frozen=True)
class TorchParams:
    """The trainer's hyper-parameters (see the module docstring for each)."""

    epochs: int = 30
    batch_size: int | str = "auto"
    lr: float = 3e-3
    weight_decay: float = 1e-5
    embedding_dim: int = 8
    hidden_sizes: tuple[int, ...] = (256, 128)
    dropout: float = 0.1
    patience: int = 4
    validation_fraction: float = 0.1
    class_weight: str = "balanced"
    device: str = "auto"
    precision: str = "auto"
    seed: int = 42
    max_device_memory_fraction: float = 0.5
    cuda_graphs: str = "auto"

    @classmethod
    def from_spec(cls, spec: ModelSpec, params: dict[str, Any]) -> TorchParams:
        """Validate ``training.params``; errors name the parameter and say what is allowed."""
        known = {f for f in cls.__dataclass_fields__}
        unknown = sorted(set(params) - known)
        if unknown:
            raise ValueError(
                f"training.params {unknown} are not parameters of the torch trainer; "
                f"use any of {sorted(known)} (see include/modelops/training/torch_trainer.py)"
            )
        values: dict[str, Any] = {"seed": spec.split.seed, **params}
        casts = {
            "int": int,
            "float": float,
            "str": str,
            "tuple[int, ...]": lambda v: tuple(int(h) for h in ([v] if isinstance(v, int) else v)),
            "int | str": lambda v: "auto" if v == "auto" else int(v),
        }
        for name, value in values.items():
            try:
                values[name] = casts[cls.__dataclass_fields__[name].type](value)
            except (TypeError, ValueError):
                kind = (
                    cls.__dataclass_fields__[name]
                    .type.replace("tuple[int, ...]", "list of whole numbers")
                    .replace("int | str", "whole number or 'auto'")
                )
                raise ValueError(f"training.params.{name} = {value!r} is not a valid {kind}") from None
        p = cls(**values)
        checks = [
            (p.epochs >= 1, "epochs", "must be at least 1"),
            (p.batch_size == "auto" or int(p.batch_size) >= 1, "batch_size", "must be at least 1 or 'auto'"),
            (p.lr > 0, "lr", "must be positive"),
            (p.embedding_dim >= 1, "embedding_dim", "must be at least 1"),
            (all(h >= 1 for h in p.hidden_sizes), "hidden_sizes", "every width must be at least 1"),
            (0 <= p.dropout < 1, "dropout", "must be in [0, 1)"),
            (p.patience >= 1, "patience", "must be at least 1"),
            (0 < p.validation_fraction < 0.5, "validation_fraction", "must be in (0, 0.5)"),
            (p.class_weight in ("balanced", "none"), "class_weight", "must be 'balanced' or 'none'"),
            (p.device in ("auto", "cpu", "cuda"), "device", "must be 'auto', 'cpu' or 'cuda'"),
            (p.precision in ("auto", "bf16", "fp16", "fp32"), "precision", "must be auto|bf16|fp16|fp32"),
            (0 < p.max_device_memory_fraction <= 1, "max_device_memory_fraction", "must be in (0, 1]"),
            (p.cuda_graphs in ("auto", "on", "off"), "cuda_graphs", "must be 'auto', 'on' or 'off'"),
        ]
        for ok, name, msg in checks:
            if not ok:
                raise ValueError(f"training.params.{name} = {getattr(p, name)!r} {msg}")
        return p


def resolve_device(requested: str) -> torch.device:
    """``auto`` picks CUDA when a GPU is visible; ``cuda`` without one is an error, not a silent CPU run."""
    if requested == "cpu":
        return torch.device("cpu")
    if torch.cuda.is_available():
        # With its index: tensors report cuda:0, and comparisons with a bare "cuda" device fail.
        return torch.device("cuda", torch.cuda.current_device())
    if requested == "cuda":
        raise RuntimeError("training.params.device is 'cuda' but no CUDA device is visible to PyTorch")
    return torch.device("cpu")


def resolve_precision(
    requested: str, device: torch.device, hidden_sizes: tuple[int, ...] = (), batch_size: int = 0
) -> torch.dtype | None:
    """The autocast dtype (None: plain fp32, TF32 matmuls on a GPU).

    ``auto``: fp32 on CPU; on a GPU, bf16 (fp16 where bf16 is missing) for networks with a layer at
    least ``_HALF_PRECISION_MIN_WIDTH`` wide or for steps of at least ``_HALF_PRECISION_MIN_BATCH``
    rows, else fp32. Below both the matmuls are too small for half precision to pay for its casts.
    On an H100 with CUDA graphs (docs/benchmarks.md), the default [256, 128] network trained at
    0.92-1.11x fp32 speed in bf16 at 8,192 rows per step, and 1.0-1.4x at 65,536 and 262,144 rows,
    with the same validation ROC-AUC to 4 decimals.
    """
    if device.type == "cuda":
        bf16_ok = torch.cuda.is_bf16_supported()
        if requested == "auto":
            small = max(hidden_sizes, default=0) < _HALF_PRECISION_MIN_WIDTH
            if small and batch_size < _HALF_PRECISION_MIN_BATCH:
                return None
            return torch.bfloat16 if bf16_ok else torch.float16
        if requested == "bf16" and not bf16_ok:
            log.warning("This GPU does not support bf16; using fp16 autocast with a gradient scaler instead")
            return torch.float16
    elif requested == "fp16":
        raise ValueError("training.params.precision 'fp16' needs a CUDA device; use 'bf16' or 'fp32' on CPU")
    elif requested == "auto":
        return None
    return {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": None}[requested]


class TabularNet(nn.Module):
    """Categorical embeddings (one shared table, offset per feature) + dense inputs -> MLP."""

    def __init__(
        self,
        n_dense: int,
        cardinalities: list[int],
        embedding_dim: int,
        hidden_sizes: tuple[int, ...] | list[int],
        dropout: float,
        n_outputs: int,
    ) -> None:
        super().__init__()
        sizes = [c + 1 for c in cardinalities]  # +1: index 0 is "unknown or missing"
        offsets = np.concatenate([[0], np.cumsum(sizes)[:-1]]) if sizes else np.zeros(0)
        self.register_buffer("offsets", torch.tensor(offsets, dtype=torch.long), persistent=False)
        self.n_cat = len(sizes)
        # One table means one embedding kernel per step, however many categorical features there are.
        self.embedding = nn.Embedding(max(sum(sizes), 1), embedding_dim)
        layers: list[nn.Module] = []
        width = n_dense + embedding_dim * self.n_cat
        for h in hidden_sizes:
            layers += [nn.Linear(width, h), nn.SiLU(), nn.Dropout(dropout)]
            width = h
        layers.append(nn.Linear(width, n_outputs))
        self.mlp = nn.Sequential(*layers)

    def forward(self, dense: torch.Tensor, cat: torch.Tensor) -> torch.Tensor:
        if self.n_cat:
            emb = self.embedding(cat + self.offsets).flatten(1)
            dense = torch.cat([dense, emb.to(dense.dtype)], dim=1)
        return self.mlp(dense)


def build_network(encoder: TabularEncoder, target: TargetEncoding, params: TorchParams) -> TabularNet:
    return TabularNet(
        encoder.n_dense,
        encoder.cardinalities,
        params.embedding_dim,
        params.hidden_sizes,
        params.dropout,
        target.n_outputs,
    )


class TorchTabularModel:
    """What ``fit`` returns: the best network (on CPU, eval mode) with its encoders."""

    def __init__(
        self,
        net: TabularNet,
        encoder: TabularEncoder,
        target: TargetEncoding,
        params: TorchParams,
        feature_names: list[str],
        history: list[dict[str, float]],
    ) -> None:
        self.net = net.cpu().eval()
        self.encoder = encoder
        self.target = target
        self.params = params
        self.feature_names = feature_names
        self.history = history
        self.timings: dict[
            str, float
        ] = {}  # seconds per phase of ``fit``: encode, stage, setup, epochs, finish

    @torch.no_grad()
    def predict(self, frame: pd.DataFrame) -> np.ndarray:
        """Scores for the rows of ``frame`` (fp32 on CPU; see ``include.modelops.scoring``)."""
        dense, cat = self.encoder.transform(frame)
        out = []
        for i in range(0, len(frame), PREDICT_BATCH):
            logits = self.net(
                torch.from_numpy(dense[i : i + PREDICT_BATCH]), torch.from_numpy(cat[i : i + PREDICT_BATCH])
            )
            out.append(self.target.scores(logits))
        if not out:
            return np.zeros((0, self.target.n_outputs) if self.target.n_outputs > 1 else 0)
        return np.concatenate(out)

    def config(self) -> dict[str, Any]:
        params = asdict(self.params)
        params["hidden_sizes"] = list(self.params.hidden_sizes)
        return {
            "format": CHECKPOINT_FORMAT,
            "feature_names": self.feature_names,
            "encoder": asdict(self.encoder),
            "target": asdict(self.target),
            "params": params,
        }

    def save(self, folder: Path) -> dict[str, str]:
        """Write ``weights.pt`` and ``config.json`` under ``folder``; returns MLflow artifact paths."""
        folder.mkdir(parents=True, exist_ok=True)
        torch.save(self.net.state_dict(), folder / "weights.pt")
        (folder / "config.json").write_text(json.dumps(self.config(), indent=2, default=str))
        return {"weights": str(folder / "weights.pt"), "config": str(folder / "config.json")}

    @classmethod
    def load(cls, weights: str | Path, config: str | Path) -> TorchTabularModel:
        cfg = json.loads(Path(config).read_text())
        params = TorchParams(**{**cfg["params"], "hidden_sizes": tuple(cfg["params"]["hidden_sizes"])})
        encoder, target = TabularEncoder(**cfg["encoder"]), TargetEncoding(**cfg["target"])
        net = build_network(encoder, target, params)
        net.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
        return cls(net, encoder, target, params, cfg["feature_names"], history=[])


class TorchTabularPyfunc(mlflow.pyfunc.PythonModel):
    """MLflow pyfunc wrapper: ``predict(DataFrame of the spec's features)`` returns scores.

    Loading needs torch, pandas and ``include.modelops`` importable, nothing else from training.
    """

    def load_context(self, context: Any) -> None:
        torch.set_num_threads(max(1, min(4, os.cpu_count() or 1)))  # serving: don't grab every core
        self.model = TorchTabularModel.load(context.artifacts["weights"], context.artifacts["config"])

    def predict(self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None) -> Any:
        return self.model.predict(model_input)


class MetricBatcher:
    """Epoch metrics for the active MLflow run, sent in one ``log_batch`` call at most every
    ``interval_s`` seconds and at the end: a short run costs one round trip, a long one still shows
    its progress. Without an active run it does nothing."""

    def __init__(self, interval_s: float = _METRICS_EVERY_S) -> None:
        run = mlflow.active_run()
        self.run_id = run.info.run_id if run else None
        self.interval_s = interval_s
        self._pending: list[Any] = []
        self._last = time.monotonic()

    def add(self, metrics: dict[str, float], step: int) -> None:
        if self.run_id is None:
            return
        from mlflow.entities import Metric

        ts = int(time.time() * 1000)
        self._pending += [Metric(k, float(v), ts, step) for k, v in metrics.items() if not math.isnan(v)]
        if time.monotonic() - self._last >= self.interval_s:
            self.flush()

    def flush(self) -> None:
        self._last = time.monotonic()
        if self.run_id is None or not self._pending:
            return
        pending, self._pending = self._pending, []
        client = mlflow.MlflowClient()
        for i in range(0, len(pending), 1000):  # MLflow's limit per batch
            client.log_batch(self.run_id, metrics=pending[i : i + 1000])


def _log_choices(choices: dict[str, Any]) -> None:
    """The settings ``auto`` resolved to, as run params (a retry on another node type may differ: kept)."""
    if mlflow.active_run() is None:
        return
    try:
        mlflow.log_params(choices)
    except Exception as exc:  # params are immutable: a retry elsewhere keeps the first attempt's
        log.warning("Could not record the resolved training settings %s as run params (%s)", choices, exc)


def fit(
    spec: ModelSpec, train: pd.DataFrame, *, params: dict[str, Any], checkpoint_dir: Path | None = None
) -> TorchTabularModel:
    """Train the network on ``train`` (features + target); resume from ``checkpoint_dir`` if it holds one.

    Raises:
        ValueError: a bad ``training.params`` value (named) or unusable labels.
    """
    t_start = time.perf_counter()
    p = TorchParams.from_spec(spec, params)
    device = resolve_device(p.device)
    amp_dtype = resolve_precision(p.precision, device, p.hidden_sizes)  # a bad value fails before any work
    if device.type == "cuda":
        torch.set_float32_matmul_precision("high")  # TF32 for fp32 matmuls (and any left outside autocast)
    torch.manual_seed(p.seed)

    def encode_labels() -> tuple[TargetEncoding, np.ndarray, tuple[np.ndarray, np.ndarray]]:
        target, y = TargetEncoding.fit_encode(spec, train[spec.target.name], p.class_weight)
        return target, y, validation_split(y, target.task, p.validation_fraction, p.seed)

    # The labels and the validation split are worked out on another thread while the features
    # encode (numpy and pandas release the GIL). Only the feature columns are read: no copy.
    labels = ThreadPoolExecutor(max_workers=1, thread_name_prefix="labels")
    labels_job = labels.submit(encode_labels)
    labels.shutdown(wait=False)
    encoder, (dense, cat) = TabularEncoder.fit_transform(spec, train)
    target, y, (tr_idx, va_idx) = labels_job.result()
    arrays = {"dense": dense, "cat": cat, "y": y}
    timings = {"encode_s": time.perf_counter() - t_start}
    ckpt_path = Path(checkpoint_dir) / CHECKPOINT_FILE if checkpoint_dir else None
    hasher = ThreadPoolExecutor(max_workers=1, thread_name_prefix="fingerprint")
    fingerprint = (
        hasher.submit(checkpoint_fingerprint, spec, p, encoder, arrays) if ckpt_path is not None else None
    )
    hasher.shutdown(wait=False)
    splits, staged = stage(arrays, device, p.max_device_memory_fraction, {"train": tr_idx, "val": va_idx})
    data, val = splits["train"], splits["val"]
    timings["stage_s"] = time.perf_counter() - t_start - sum(timings.values())
    n_train = len(tr_idx)
    batch_size = resolve_batch_size(
        p.batch_size,
        n_train,
        device,
        encoder.n_dense + len(encoder.categorical) * p.embedding_dim,
        p.hidden_sizes,
    )
    amp_dtype = resolve_precision(p.precision, device, p.hidden_sizes, batch_size)
    precision = {None: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}[amp_dtype]
    graphs = resolve_cuda_graphs(p.cuda_graphs, device, amp_dtype, staged)

    net = build_network(encoder, target, p).to(device)
    optimizer = torch.optim.AdamW(
        net.parameters(), lr=p.lr, weight_decay=p.weight_decay, fused=device.type == "cuda", capturable=graphs
    )
    scaler = torch.amp.GradScaler(device.type, enabled=amp_dtype == torch.float16)
    loss_fn = target.loss_fn(device)
    shuffle = torch.Generator().manual_seed(p.seed)
    step_graph = StepGraph(batch_size) if graphs else None
    log.info(
        "Torch trainer: %d train / %d validation rows, %d dense + %d categorical inputs, "
        "%d parameters, device %s (%s), precision %s, batch %d, CUDA graphs %s, data %s",
        n_train,
        len(va_idx),
        encoder.n_dense,
        len(encoder.categorical),
        sum(x.numel() for x in net.parameters()),
        device,
        torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        precision,
        batch_size,
        "on" if graphs else "off",
        "staged on the device" if staged else "in pinned host memory",
    )
    _log_choices(
        {
            "torch.batch_size": batch_size,
            "torch.precision": precision,
            "torch.cuda_graphs": str(graphs).lower(),
            "torch.device": str(device),
        }
    )

    higher_is_better = target.task == "binary_classification"
    best_metric = -math.inf if higher_is_better else math.inf
    best_epoch, bad_epochs, start_epoch, finished = 0, 0, 1, False
    best_state = {k: v.detach().clone() for k, v in net.state_dict().items()}
    history: list[dict[str, float]] = []

    if ckpt_path is not None and ckpt_path.exists():
        assert fingerprint is not None
        if (ckpt := load_checkpoint(ckpt_path, fingerprint.result(), device)) is not None:
            net.load_state_dict(ckpt["model"])
            optimizer.load_state_dict(ckpt["optimizer"])
            scaler.load_state_dict(ckpt["scaler"])
            torch.set_rng_state(ckpt["rng"]["torch"].cpu())
            shuffle.set_state(ckpt["rng"]["shuffle"].cpu())
            if device.type == "cuda" and ckpt["rng"].get("cuda"):
                torch.cuda.set_rng_state_all([s.cpu() for s in ckpt["rng"]["cuda"]])
            best_metric, best_epoch, bad_epochs = ckpt["best_metric"], ckpt["best_epoch"], ckpt["bad_epochs"]
            best_state, history, finished = ckpt["best_state"], list(ckpt["history"]), ckpt["finished"]
            start_epoch = ckpt["epoch"] + 1
            if finished:
                log.info(
                    "Checkpoint %s: training already finished at epoch %d; reusing its best weights",
                    ckpt_path,
                    ckpt["epoch"],
                )
            else:
                log.info(
                    "Checkpoint %s: epoch %d done; resuming from epoch %d",
                    ckpt_path,
                    ckpt["epoch"],
                    start_epoch,
                )

    writer = CheckpointWriter(ckpt_path) if ckpt_path is not None else None
    metrics = MetricBatcher()
    timings["setup_s"] = time.perf_counter() - t_start - sum(timings.values())
    epoch = start_epoch - 1
    next_perm: torch.Tensor | None = None
    try:
        for epoch in range(start_epoch, p.epochs + 1 if not finished else start_epoch):
            t0 = time.perf_counter()
            timer = [torch.cuda.Event(enable_timing=True) for _ in range(2)] if device.type == "cuda" else []
            if timer:
                timer[0].record()
            train_loss_t = train_one_epoch(
                net,
                optimizer,
                scaler,
                loss_fn,
                data,
                batch_size=batch_size,
                generator=shuffle,
                device=device,
                amp_dtype=amp_dtype,
                graph=step_graph,
                perm=next_perm,
            )
            if timer:
                timer[1].record()
            train_s = time.perf_counter() - t0
            val_loss_t, val_auc_t = validate(net, val, loss_fn, target, device, amp_dtype)
            # A checkpoint of this epoch holds the shuffle state before the next epoch's draw.
            shuffle_state = shuffle.get_state()
            # On a GPU, the next epoch's order is drawn now, while the GPU still works through this
            # one, not after the wait below (when it would sit idle). Same order, same generator.
            next_perm = (
                draw_permutation(n_train, shuffle, device if staged else torch.device("cpu"))
                if device.type == "cuda" and epoch < p.epochs
                else None
            )
            # The one wait for the GPU in an epoch: three numbers for early stopping and the log.
            train_loss, val_loss, val_auc = torch.stack(
                [train_loss_t.double(), val_loss_t.double(), val_auc_t.double()]
            ).tolist()
            if timer:
                train_s = timer[0].elapsed_time(timer[1]) / 1000
            if higher_is_better:  # no positive in the validation split: fall back to the loss
                metric = -val_loss if math.isnan(val_auc) else val_auc
            else:
                metric = val_loss
            improved = (
                (metric > best_metric + _MIN_DELTA)
                if higher_is_better
                else (metric < best_metric - _MIN_DELTA)
            )
            if improved:
                best_metric, best_epoch, bad_epochs = metric, epoch, 0
                best_state = {k: v.detach().clone() for k, v in net.state_dict().items()}
            else:
                bad_epochs += 1
            epoch_s = time.perf_counter() - t0
            row = {
                "train_loss": train_loss,
                "val_loss": val_loss,
                "val_roc_auc": val_auc,
                "rows_per_s": n_train / max(train_s, 1e-9),
                "epoch_seconds": epoch_s,
            }
            history.append({"epoch": float(epoch), **row})
            metrics.add(row, epoch)
            log.info(
                "epoch %d/%d: train_loss %.4f, val_loss %.4f%s, %.0f rows/s, %.2f s%s",
                epoch,
                p.epochs,
                train_loss,
                val_loss,
                "" if math.isnan(val_auc) else f", val_roc_auc {val_auc:.4f}",
                row["rows_per_s"],
                epoch_s,
                " (best)" if improved else "",
            )
            finished = bad_epochs >= p.patience or epoch == p.epochs
            if finished and bad_epochs >= p.patience:
                log.info(
                    "Early stopping: no improvement for %d epochs; best epoch %d", p.patience, best_epoch
                )
            if writer is not None:
                assert fingerprint is not None
                writer.submit(
                    {
                        "format": CHECKPOINT_FORMAT,
                        "fingerprint": fingerprint.result(),
                        "epoch": epoch,
                        "best_metric": best_metric,
                        "best_epoch": best_epoch,
                        "bad_epochs": bad_epochs,
                        "finished": finished,
                        "history": list(history),
                        "best_state": best_state,
                        "model": net.state_dict(),
                        "optimizer": optimizer.state_dict(),
                        "scaler": scaler.state_dict(),
                        "rng": {
                            "torch": torch.get_rng_state(),
                            "shuffle": shuffle_state,
                            "cuda": torch.cuda.get_rng_state_all() if device.type == "cuda" else [],
                        },
                    }
                )
            if finished:
                break
    except BaseException:
        if writer is not None:
            writer.close(raise_errors=False)
        raise
    timings["epochs_s"] = time.perf_counter() - t_start - sum(timings.values())
    if writer is not None:
        writer.close()

    net.load_state_dict(best_state)
    model = TorchTabularModel(net, encoder, target, p, spec.feature_names, history)
    metrics.add({"best_epoch": float(best_epoch), "epochs_run": float(epoch)}, 0)
    metrics.flush()
    if metrics.run_id is not None:
        mlflow.set_tags(
            {
                "torch.device": str(device),
                "torch.precision": precision,
                "torch.data_on_device": str(staged).lower(),
                "torch.version": torch.__version__,
            }
        )
    total_s = time.perf_counter() - t_start
    timings["finish_s"] = total_s - sum(timings.values())
    model.timings = {k: round(v, 4) for k, v in timings.items()}
    log.info(
        "Trained in %.1f s (%s); best epoch %d (%s %.4f)",
        total_s,
        ", ".join(f"{k[:-2]} {v:.2f} s" for k, v in timings.items()),
        best_epoch,
        "val_roc_auc" if higher_is_better else "val_loss",
        abs(best_metric),
    )
    if metrics.run_id is not None:
        mlflow.log_metric("train_seconds", total_s)
    return model


def log_model(model: TorchTabularModel, spec: ModelSpec, input_example: pd.DataFrame) -> str:
    """Log the network as an MLflow pyfunc model with a signature; returns its model URI."""
    from mlflow.models import infer_signature

    example = feature_frame(spec, input_example)
    with tempfile.TemporaryDirectory(prefix="modelops-torch-") as tmp:
        artifacts = model.save(Path(tmp))
        info = mlflow.pyfunc.log_model(
            name="model",
            python_model=TorchTabularPyfunc(),
            artifacts=artifacts,
            signature=infer_signature(example, model.predict(example)),
            input_example=example.head(5),
            # Pinned here: inferring them would load the model in a subprocess for nothing.
            pip_requirements=[
                f"torch=={torch.__version__.split('+')[0]}",
                f"pandas=={pd.__version__}",
                f"numpy=={np.__version__}",
                f"mlflow=={mlflow.__version__}",
            ],
        )
    return info.model_uri
