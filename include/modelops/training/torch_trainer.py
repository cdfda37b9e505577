"""PyTorch trainer for tabular data, behind the same interface as the scikit-learn one.

The network embeds each categorical feature (categories come from the spec; index 0 is
"unknown or missing"), standardises numeric features (median-imputed, statistics fitted on
the training rows only), feeds booleans as 0/1 and runs the result through an MLP.

What makes it fit for a GPU node pool:

* the whole training set is staged on the device as tensors when it fits (by default in half
  of the free GPU memory), and each epoch walks a shuffled permutation of row indices, so
  there is no per-batch ``DataLoader`` and no host-to-device copy inside the loop;
* mixed precision: bf16 autocast on GPUs that support it (fp16 with a gradient scaler on
  older ones); fp32 on CPU unless ``precision`` asks otherwise;
* one host sync per epoch (losses are summed on the device), metrics logged to MLflow once
  per epoch in one batch;
* a checkpoint after every epoch (model, optimizer, gradient scaler, epoch, best metric and
  weights, RNG states), written atomically; a retried task resumes after the last finished
  epoch instead of starting over, and ends with the same weights an uninterrupted run gets.

Class imbalance: by default the loss weighs classes inversely to their frequency
(``pos_weight`` for binary targets), and the predicted logits are shifted back by the log of
those weights, so the logged model still returns calibrated probabilities.

``training.params`` (all optional):

| param | default | meaning |
| --- | --- | --- |
| ``epochs`` | 30 | most epochs to train |
| ``batch_size`` | 2048 | rows per optimizer step |
| ``lr`` | 0.003 | AdamW learning rate |
| ``weight_decay`` | 1e-5 | AdamW weight decay |
| ``embedding_dim`` | 8 | width of each categorical embedding |
| ``hidden_sizes`` | [256, 128] | widths of the MLP's hidden layers |
| ``dropout`` | 0.1 | dropout after each hidden layer |
| ``patience`` | 4 | epochs without improvement of the validation metric before stopping |
| ``validation_fraction`` | 0.1 | share of training rows held out (seeded, stratified) for early stopping |
| ``class_weight`` | balanced | ``balanced`` or ``none`` (classification only) |
| ``device`` | auto | ``auto`` (CUDA when available), ``cpu`` or ``cuda`` |
| ``precision`` | auto | ``auto``, ``bf16``, ``fp16`` (CUDA only) or ``fp32`` |
| ``seed`` | ``split.seed`` | seed for initialisation, the validation split and shuffling |
| ``max_device_memory_fraction`` | 0.5 | stage data on the GPU only if it fits in this share of free memory |

The validation metric is ROC-AUC for binary targets and the validation loss otherwise.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import mlflow.pyfunc
import numpy as np
import pandas as pd
import torch
from torch import nn

from include.modelops.scoring import feature_frame

if TYPE_CHECKING:
    from include.modelops.spec import ModelSpec

log = logging.getLogger(__name__)

CHECKPOINT_FILE = "checkpoint.pt"
CHECKPOINT_FORMAT = 1
_PREDICT_BATCH = 65_536
_MIN_DELTA = 1e-4


# --- parameters -----------------------------------------------------------------------------


@dataclass(frozen=True)
class TorchParams:
    """The trainer's hyper-parameters (see the module docstring for each)."""

    epochs: int = 30
    batch_size: int = 2048
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
        casts = {"int": int, "float": float, "str": str,
                 "tuple[int, ...]": lambda v: tuple(int(h) for h in ([v] if isinstance(v, int) else v))}
        for name, value in values.items():
            try:
                values[name] = casts[cls.__dataclass_fields__[name].type](value)
            except (TypeError, ValueError):
                kind = cls.__dataclass_fields__[name].type.replace("tuple[int, ...]", "list of whole numbers")
                raise ValueError(f"training.params.{name} = {value!r} is not a valid {kind}") from None
        p = cls(**values)
        checks = [
            (p.epochs >= 1, "epochs", "must be at least 1"),
            (p.batch_size >= 1, "batch_size", "must be at least 1"),
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


def resolve_precision(requested: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype (None: plain fp32). ``auto``: bf16 on GPUs that support it, fp16 on older ones."""
    if device.type == "cuda":
        bf16_ok = torch.cuda.is_bf16_supported()
        if requested == "auto":
            return torch.bfloat16 if bf16_ok else torch.float16
        if requested == "bf16" and not bf16_ok:
            log.warning("This GPU does not support bf16; using fp16 autocast with a gradient scaler instead")
            return torch.float16
    elif requested == "fp16":
        raise ValueError("training.params.precision 'fp16' needs a CUDA device; use 'bf16' or 'fp32' on CPU")
    elif requested == "auto":
        return None
    return {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": None}[requested]


# --- features -------------------------------------------------------------------------------


@dataclass
class TabularEncoder:
    """Turns the spec's feature columns into a dense float matrix and a categorical index matrix.

    Fitted on the training rows only; stored as JSON next to the weights so serving applies the
    exact same transformation.
    """

    numeric: list[str]
    medians: list[float]
    means: list[float]
    stds: list[float]
    boolean: list[str]
    categorical: list[str]
    categories: list[list[str]]

    @classmethod
    def fit(cls, spec: ModelSpec, frame: pd.DataFrame) -> TabularEncoder:
        medians, means, stds = [], [], []
        for name in spec.numeric_features:
            col = pd.to_numeric(frame[name], errors="coerce").astype("float64")
            median = float(col.median()) if col.notna().any() else 0.0
            filled = col.fillna(median)
            std = float(filled.std(ddof=0)) if len(filled) else 0.0
            medians.append(median)
            means.append(float(filled.mean()) if len(filled) else 0.0)
            stds.append(std if std > 1e-12 else 1.0)
        cats = {f.name: [str(c) for c in f.categories or []] for f in spec.features}
        return cls(
            numeric=list(spec.numeric_features),
            medians=medians,
            means=means,
            stds=stds,
            boolean=list(spec.boolean_features),
            categorical=list(spec.categorical_features),
            categories=[cats[c] for c in spec.categorical_features],
        )

    @property
    def n_dense(self) -> int:
        return len(self.numeric) + len(self.boolean)

    @property
    def cardinalities(self) -> list[int]:
        return [len(c) for c in self.categories]

    def transform(self, frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        """``(dense float32 [n, n_dense], categorical int64 [n, n_cat])``; unknown categories map to 0."""
        n = len(frame)
        dense = np.empty((n, self.n_dense), dtype=np.float32)
        for j, name in enumerate(self.numeric):
            col = pd.to_numeric(frame[name], errors="coerce").to_numpy(dtype="float64", na_value=np.nan)
            col = np.where(np.isnan(col), self.medians[j], col)
            # Clipping keeps a wild value at serving time from saturating the network.
            dense[:, j] = np.clip((col - self.means[j]) / self.stds[j], -10.0, 10.0)
        offset = len(self.numeric)
        for j, name in enumerate(self.boolean):
            dense[:, offset + j] = frame[name].astype("boolean").fillna(False).to_numpy(dtype="float32")
        cat = np.empty((n, len(self.categorical)), dtype=np.int64)
        for j, name in enumerate(self.categorical):
            codes = pd.Categorical(frame[name].astype("string"), categories=self.categories[j]).codes
            cat[:, j] = codes.astype(np.int64) + 1  # -1 (unknown or missing) becomes 0
        return dense, cat


@dataclass
class TargetEncoding:
    """How labels map to network outputs, and how outputs map back to scores."""

    task: str
    classes: list[Any] = field(default_factory=list)
    mean: float = 0.0  # regression: the target is standardised for training
    std: float = 1.0
    class_weights: list[float] = field(default_factory=list)
    # Subtracted from the logits at prediction time: undoes the prior shift the class weights cause.
    logit_offset: list[float] = field(default_factory=list)

    @property
    def n_outputs(self) -> int:
        return len(self.classes) if self.task == "multiclass_classification" else 1

    @classmethod
    def fit(cls, spec: ModelSpec, y: pd.Series, class_weight: str) -> TargetEncoding:
        task = spec.task.value
        if task == "regression":
            values = pd.to_numeric(y, errors="raise").astype("float64")
            std = float(values.std(ddof=0))
            return cls(task=task, mean=float(values.mean()), std=std if std > 1e-12 else 1.0)
        classes = list(spec.target.classes) if spec.target.classes else sorted(pd.unique(y).tolist())
        enc = cls(task=task, classes=classes)
        labels = enc.encode(y)
        counts = np.bincount(labels.astype(np.int64), minlength=len(classes)).astype(float)
        if task == "binary_classification":
            n_pos, n_neg = counts[1], counts[0]
            if n_pos == 0 or n_neg == 0:
                raise ValueError(
                    f"the training data has only one class of {spec.target.name!r} "
                    f"({int(n_pos)} positive, {int(n_neg)} negative rows); a classifier cannot be trained"
                )
            w = n_neg / n_pos if class_weight == "balanced" else 1.0
            enc.class_weights, enc.logit_offset = [w], [math.log(w)]
        elif class_weight == "balanced":
            present = np.maximum(counts, 1.0)
            weights = counts.sum() / (len(classes) * present)
            enc.class_weights = weights.tolist()
            enc.logit_offset = np.log(weights).tolist()
        return enc

    def encode(self, y: pd.Series) -> np.ndarray:
        if self.task == "regression":
            return ((pd.to_numeric(y).to_numpy(dtype="float64") - self.mean) / self.std).astype(np.float32)
        idx = pd.Index(self.classes).get_indexer(y)
        if (idx < 0).any():  # e.g. labels read as text while the spec lists numbers: compare as text
            idx = pd.Index([str(c) for c in self.classes]).get_indexer(y.astype(str))
        if (idx < 0).any():
            bad = sorted(y[idx < 0].astype(str).unique().tolist())[:5]
            raise ValueError(f"target values {bad} are not in target.classes {self.classes}")
        return idx.astype(np.float32 if self.task == "binary_classification" else np.int64)

    def loss_fn(self, device: torch.device) -> nn.Module:
        if self.task == "regression":
            return nn.MSELoss(reduction="sum")
        if self.task == "binary_classification":
            pos_weight = torch.tensor(self.class_weights or [1.0], device=device)
            return nn.BCEWithLogitsLoss(pos_weight=pos_weight, reduction="sum")
        weight = torch.tensor(self.class_weights, device=device) if self.class_weights else None
        return nn.CrossEntropyLoss(weight=weight, reduction="sum")

    def scores(self, logits: torch.Tensor) -> np.ndarray:
        """Network outputs to the scoring contract (P(positive), class probabilities, or values)."""
        logits = logits.float()
        if self.task == "regression":
            return (logits.squeeze(-1) * self.std + self.mean).cpu().numpy().astype(np.float64)
        if self.logit_offset:
            logits = logits - torch.tensor(self.logit_offset, device=logits.device)
        if self.task == "binary_classification":
            return torch.sigmoid(logits.squeeze(-1)).cpu().numpy().astype(np.float64)
        return torch.softmax(logits, dim=-1).cpu().numpy().astype(np.float64)


# --- network --------------------------------------------------------------------------------


class TabularNet(nn.Module):
    """Categorical embeddings (one shared table, offset per feature) + dense inputs -> MLP."""

    def __init__(self, n_dense: int, cardinalities: list[int], embedding_dim: int,
                 hidden_sizes: tuple[int, ...] | list[int], dropout: float, n_outputs: int) -> None:
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
    return TabularNet(encoder.n_dense, encoder.cardinalities, params.embedding_dim, params.hidden_sizes,
                      params.dropout, target.n_outputs)


# --- the fitted model -----------------------------------------------------------------------


class TorchTabularModel:
    """What ``fit`` returns: the best network (on CPU, eval mode) with its encoders."""

    def __init__(self, net: TabularNet, encoder: TabularEncoder, target: TargetEncoding,
                 params: TorchParams, feature_names: list[str], history: list[dict[str, float]]) -> None:
        self.net = net.cpu().eval()
        self.encoder = encoder
        self.target = target
        self.params = params
        self.feature_names = feature_names
        self.history = history

    @torch.no_grad()
    def predict(self, frame: pd.DataFrame) -> np.ndarray:
        """Scores for the rows of ``frame`` (fp32 on CPU; see ``include.modelops.scoring``)."""
        dense, cat = self.encoder.transform(frame)
        out = []
        for i in range(0, len(frame), _PREDICT_BATCH):
            logits = self.net(torch.from_numpy(dense[i:i + _PREDICT_BATCH]),
                              torch.from_numpy(cat[i:i + _PREDICT_BATCH]))
            out.append(self.target.scores(logits))
        if not out:
            return np.zeros((0, self.target.n_outputs) if self.target.n_outputs > 1 else 0)
        return np.concatenate(out)

    def config(self) -> dict[str, Any]:
        params = asdict(self.params)
        params["hidden_sizes"] = list(self.params.hidden_sizes)
        return {"format": CHECKPOINT_FORMAT, "feature_names": self.feature_names,
                "encoder": asdict(self.encoder), "target": asdict(self.target), "params": params}

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


# --- training -------------------------------------------------------------------------------


def stage(arrays: dict[str, np.ndarray], device: torch.device,
          max_fraction: float) -> tuple[dict[str, torch.Tensor], bool]:
    """Put the arrays on ``device`` if they fit in ``max_fraction`` of its free memory.

    Returns the tensors and whether they are on the device. When they do not fit they stay in
    (pinned) host memory and each batch is copied over; the log says so.
    """
    nbytes = sum(a.nbytes for a in arrays.values())
    if device.type != "cuda":
        return {k: torch.from_numpy(a) for k, a in arrays.items()}, True
    free, _total = torch.cuda.mem_get_info(device)
    if nbytes <= max_fraction * free:
        return {k: torch.from_numpy(a).to(device) for k, a in arrays.items()}, True
    log.warning("Training data (%.1f GiB) does not fit in %.0f%% of free GPU memory (%.1f GiB): "
                "copying batches from pinned host memory (slower)", nbytes / 2**30, 100 * max_fraction,
                free / 2**30)
    return {k: torch.from_numpy(a).pin_memory() for k, a in arrays.items()}, False


def train_one_epoch(net: nn.Module, optimizer: torch.optim.Optimizer, scaler: torch.amp.GradScaler,
                    loss_fn: nn.Module, data: dict[str, torch.Tensor], *, batch_size: int,
                    generator: torch.Generator, device: torch.device,
                    amp_dtype: torch.dtype | None) -> float:
    """One pass over ``data`` (keys ``dense``, ``cat``, ``y``) in shuffled index batches.

    Returns the mean loss. The loss is summed on the device, so the host waits once per epoch.
    """
    net.train()
    n = data["y"].shape[0]
    on_device = data["y"].device.type == device.type
    perm = torch.randperm(n, generator=generator)
    if on_device:
        perm = perm.to(device)
    total = torch.zeros((), device=device)
    for start in range(0, n, batch_size):
        idx = perm[start:start + batch_size]
        dense, cat, y = data["dense"][idx], data["cat"][idx], data["y"][idx]
        if not on_device:
            dense, cat, y = (t.to(device, non_blocking=True) for t in (dense, cat, y))
        with torch.autocast(device.type, dtype=amp_dtype or torch.float32, enabled=amp_dtype is not None):
            out = net(dense, cat)
            loss = loss_fn(out.squeeze(-1) if out.shape[-1] == 1 else out, y)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss / len(idx)).backward()
        scaler.step(optimizer)
        scaler.update()
        total += loss.detach().float()
    return float(total) / n


@torch.no_grad()
def _predict_logits(net: nn.Module, data: dict[str, torch.Tensor], device: torch.device,
                    amp_dtype: torch.dtype | None) -> torch.Tensor:
    net.eval()
    out = []
    for start in range(0, data["y"].shape[0], _PREDICT_BATCH):
        dense = data["dense"][start:start + _PREDICT_BATCH].to(device, non_blocking=True)
        cat = data["cat"][start:start + _PREDICT_BATCH].to(device, non_blocking=True)
        with torch.autocast(device.type, dtype=amp_dtype or torch.float32, enabled=amp_dtype is not None):
            out.append(net(dense, cat).float())
    return torch.cat(out)


def roc_auc(y: np.ndarray, scores: np.ndarray) -> float:
    """ROC-AUC from ranks (ties averaged); NaN when only one class is present."""
    pos = y == 1
    n_pos, n_neg = int(pos.sum()), int((~pos).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = pd.Series(scores).rank(method="average").to_numpy()
    return float((ranks[pos].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def validation_split(y: np.ndarray, task: str, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Seeded train/validation row indices; stratified by class for classification (rare positives)."""
    rng = np.random.default_rng(seed)
    groups = [np.flatnonzero(y == c) for c in np.unique(y)] if task != "regression" else [np.arange(len(y))]
    val = []
    for g in groups:
        k = int(round(len(g) * fraction))
        if len(g) >= 2:
            k = min(max(k, 1), len(g) - 1)  # every class on both sides when it can be
        val.append(rng.permutation(g)[:k])
    val_idx = np.sort(np.concatenate(val)) if val else np.zeros(0, dtype=np.int64)
    train_mask = np.ones(len(y), dtype=bool)
    train_mask[val_idx] = False
    return np.flatnonzero(train_mask), val_idx


def _fingerprint(spec: ModelSpec, params: TorchParams, frame: pd.DataFrame) -> str:
    """Identifies (spec, params, data): a checkpoint is resumed only by the run that wrote it.

    Device and precision are left out on purpose: a retry may land on another node type.
    """
    p = {k: v for k, v in asdict(params).items() if k not in ("device", "precision")}
    data_hash = int(pd.util.hash_pandas_object(frame, index=False).sum()) & 0xFFFFFFFFFFFFFFFF
    blob = json.dumps([spec.spec_hash(), p, len(frame), data_hash], sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    """Write the checkpoint atomically: a temporary file in the same folder, fsync, rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            torch.save(state, fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load_checkpoint(path: Path, fingerprint: str, device: torch.device) -> dict[str, Any] | None:
    """The checkpoint at ``path`` if it belongs to this run (same spec, params and data), else None."""
    if not path.exists():
        return None
    try:
        state = torch.load(path, map_location=device, weights_only=True)
    except Exception as exc:  # a torn or foreign file must not block training: start over
        log.warning("Ignoring unreadable checkpoint %s (%s); training from scratch", path, exc)
        return None
    if state.get("format") != CHECKPOINT_FORMAT or state.get("fingerprint") != fingerprint:
        log.warning("Checkpoint %s was written for other data, spec or params; training from scratch", path)
        return None
    return state


def _log_epoch_metrics(metrics: dict[str, float], epoch: int) -> None:
    if mlflow.active_run() is None:
        return
    # One batch per epoch, sent in the background: a slow tracking server never stalls the GPU.
    mlflow.log_metrics({k: v for k, v in metrics.items() if not math.isnan(v)}, step=epoch, synchronous=False)


def fit(spec: ModelSpec, train: pd.DataFrame, *, params: dict[str, Any],
        checkpoint_dir: Path | None = None) -> TorchTabularModel:
    """Train the network on ``train`` (features + target); resume from ``checkpoint_dir`` if it holds one.

    Raises:
        ValueError: a bad ``training.params`` value (named) or unusable labels.
    """
    t_start = time.perf_counter()
    p = TorchParams.from_spec(spec, params)
    device = resolve_device(p.device)
    amp_dtype = resolve_precision(p.precision, device)
    precision = {None: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}[amp_dtype]
    if device.type == "cuda":
        torch.set_float32_matmul_precision("high")  # TF32 for any fp32 matmul left outside autocast
    torch.manual_seed(p.seed)

    encoder = TabularEncoder.fit(spec, train)  # reads the feature columns only: no copy of the frame
    target = TargetEncoding.fit(spec, train[spec.target.name], p.class_weight)
    dense, cat = encoder.transform(train)
    y = target.encode(train[spec.target.name])
    tr_idx, va_idx = validation_split(y, target.task, p.validation_fraction, p.seed)
    data, staged = stage({"dense": dense[tr_idx], "cat": cat[tr_idx], "y": y[tr_idx]}, device,
                         p.max_device_memory_fraction)
    val, _ = stage({"dense": dense[va_idx], "cat": cat[va_idx], "y": y[va_idx]}, device,
                   p.max_device_memory_fraction)
    y_val = y[va_idx]
    n_train = len(tr_idx)

    net = build_network(encoder, target, p).to(device)
    optimizer = torch.optim.AdamW(net.parameters(), lr=p.lr, weight_decay=p.weight_decay,
                                  fused=device.type == "cuda")
    scaler = torch.amp.GradScaler(device.type, enabled=amp_dtype == torch.float16)
    loss_fn = target.loss_fn(device)
    shuffle = torch.Generator().manual_seed(p.seed)
    log.info("Torch trainer: %d train / %d validation rows, %d dense + %d categorical inputs, "
             "%d parameters, device %s (%s), precision %s, data %s", n_train, len(va_idx), encoder.n_dense,
             len(encoder.categorical), sum(x.numel() for x in net.parameters()), device,
             torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu", precision,
             "staged on the device" if staged else "in pinned host memory")

    higher_is_better = target.task == "binary_classification"
    best_metric = -math.inf if higher_is_better else math.inf
    best_epoch, bad_epochs, start_epoch, finished = 0, 0, 1, False
    best_state = {k: v.detach().clone() for k, v in net.state_dict().items()}
    history: list[dict[str, float]] = []

    ckpt_path = Path(checkpoint_dir) / CHECKPOINT_FILE if checkpoint_dir else None
    fingerprint = _fingerprint(spec, p, train[[*spec.feature_names, spec.target.name]])
    if ckpt_path is not None and (ckpt := load_checkpoint(ckpt_path, fingerprint, device)) is not None:
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
            log.info("Checkpoint %s: training already finished at epoch %d; reusing its best weights",
                     ckpt_path, ckpt["epoch"])
        else:
            log.info("Checkpoint %s: epoch %d done; resuming from epoch %d", ckpt_path, ckpt["epoch"],
                     start_epoch)

    epoch = start_epoch - 1
    for epoch in range(start_epoch, p.epochs + 1 if not finished else start_epoch):
        t0 = time.perf_counter()
        train_loss = train_one_epoch(net, optimizer, scaler, loss_fn, data, batch_size=p.batch_size,
                                     generator=shuffle, device=device, amp_dtype=amp_dtype)
        train_s = time.perf_counter() - t0
        logits = _predict_logits(net, val, device, amp_dtype)
        with torch.no_grad():
            y_dev = val["y"].to(device)
            val_loss = float(loss_fn(logits.squeeze(-1) if logits.shape[-1] == 1 else logits, y_dev)) / max(
                len(va_idx), 1)
        val_auc = roc_auc(y_val, target.scores(logits)) if higher_is_better else math.nan
        if higher_is_better:  # no positive in the validation split: fall back to the loss
            metric = -val_loss if math.isnan(val_auc) else val_auc
        else:
            metric = val_loss
        improved = (metric > best_metric + _MIN_DELTA) if higher_is_better else (
            metric < best_metric - _MIN_DELTA)
        if improved:
            best_metric, best_epoch, bad_epochs = metric, epoch, 0
            best_state = {k: v.detach().clone() for k, v in net.state_dict().items()}
        else:
            bad_epochs += 1
        epoch_s = time.perf_counter() - t0
        row = {"train_loss": train_loss, "val_loss": val_loss, "val_roc_auc": val_auc,
               "rows_per_s": n_train / train_s, "epoch_seconds": epoch_s}
        history.append({"epoch": float(epoch), **row})
        _log_epoch_metrics(row, epoch)
        log.info("epoch %d/%d: train_loss %.4f, val_loss %.4f%s, %.0f rows/s, %.1f s%s", epoch, p.epochs,
                 train_loss, val_loss, "" if math.isnan(val_auc) else f", val_roc_auc {val_auc:.4f}",
                 n_train / train_s, epoch_s, " (best)" if improved else "")
        finished = bad_epochs >= p.patience or epoch == p.epochs
        if finished and bad_epochs >= p.patience:
            log.info("Early stopping: no improvement for %d epochs; best epoch %d", p.patience, best_epoch)
        if ckpt_path is not None:
            save_checkpoint(ckpt_path, {
                "format": CHECKPOINT_FORMAT, "fingerprint": fingerprint, "epoch": epoch,
                "best_metric": best_metric, "best_epoch": best_epoch, "bad_epochs": bad_epochs,
                "finished": finished, "history": history, "best_state": best_state,
                "model": net.state_dict(), "optimizer": optimizer.state_dict(), "scaler": scaler.state_dict(),
                "rng": {"torch": torch.get_rng_state(), "shuffle": shuffle.get_state(),
                        "cuda": torch.cuda.get_rng_state_all() if device.type == "cuda" else []},
            })

    net.load_state_dict(best_state)
    model = TorchTabularModel(net, encoder, target, p, spec.feature_names, history)
    total_s = time.perf_counter() - t_start
    log.info("Trained in %.1f s; best epoch %d (%s %.4f)", total_s, best_epoch,
             "val_roc_auc" if higher_is_better else "val_loss", abs(best_metric))
    if mlflow.active_run() is not None:
        mlflow.flush_async_logging()
        mlflow.log_metrics({"train_seconds": total_s, "best_epoch": float(best_epoch),
                            "epochs_run": float(epoch)})
        mlflow.set_tags({"torch.device": str(device), "torch.precision": precision,
                         "torch.data_on_device": str(staged).lower(), "torch.version": torch.__version__})
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
            pip_requirements=[f"torch=={torch.__version__.split('+')[0]}", f"pandas=={pd.__version__}",
                              f"numpy=={np.__version__}", f"mlflow=={mlflow.__version__}"],
        )
    return info.model_uri
