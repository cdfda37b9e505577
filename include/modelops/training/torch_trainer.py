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

import ctypes
import hashlib
import json
import logging
import math
import os
import tempfile
import time
from concurrent.futures import Future, ThreadPoolExecutor
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
_HALF_PRECISION_MIN_WIDTH = 1024
_HALF_PRECISION_MIN_BATCH = 65_536
_MIN_DELTA = 1e-4
_SPLIT_METHOD = 2  # in checkpoint fingerprints: a checkpoint made with another split is not resumed
_METRICS_EVERY_S = 10.0  # epoch metrics go to MLflow in one batch at most this often


# --- parameters -----------------------------------------------------------------------------


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
        stats = _map_columns(
            lambda name: _numeric_stats(_numeric_column(frame[name])), list(spec.numeric_features), len(frame)
        )
        return cls._from_stats(spec, stats)

    @classmethod
    def fit_transform(
        cls, spec: ModelSpec, frame: pd.DataFrame
    ) -> tuple[TabularEncoder, tuple[np.ndarray, np.ndarray]]:
        """``fit`` then ``transform``, reading each column once, all columns in one parallel pass."""
        names = list(spec.numeric_features)
        dense = np.empty((len(frame), len(names) + len(spec.boolean_features)), dtype=np.float32)
        encoder = cls._from_stats(spec, [(0.0, 0.0, 1.0)] * len(names))  # statistics filled in below

        def fit_and_encode(j: int) -> None:
            values = _numeric_column(frame[names[j]])
            stats = _numeric_stats(values)
            _encode_numeric(values, *stats, out=dense[:, j])
            encoder.medians[j], encoder.means[j], encoder.stds[j] = stats

        # The numeric columns fit and encode while the others encode: no stage waits for another.
        return encoder, encoder.transform(frame, _dense=dense, _numeric=fit_and_encode)

    @classmethod
    def _from_stats(cls, spec: ModelSpec, stats: list[tuple[float, float, float]]) -> TabularEncoder:
        cats = {f.name: [str(c) for c in f.categories or []] for f in spec.features}
        return cls(
            numeric=list(spec.numeric_features),
            medians=[m for m, _, _ in stats],
            means=[m for _, m, _ in stats],
            stds=[s for _, _, s in stats],
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

    def transform(
        self, frame: pd.DataFrame, *, _dense: np.ndarray | None = None, _numeric: Any = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """``(dense float32 [n, n_dense], categorical int64 [n, n_cat])``; unknown categories map to 0.

        Column-wise numpy and pandas work, no per-row Python, one column per thread on large
        frames (numpy, pandas' factorize and Arrow release the GIL). ``_dense`` and ``_numeric``
        are for ``fit_transform``: the output array, and what encodes numeric column ``j``.
        """
        n = len(frame)
        dense = np.empty((n, self.n_dense), dtype=np.float32) if _dense is None else _dense
        cat = np.empty((n, len(self.categorical)), dtype=np.int64)
        offset = len(self.numeric)

        def encode(task: tuple[Any, ...]) -> None:
            kind, j = task[0], task[1]
            if kind == "numeric" and _numeric is not None:
                _numeric(j)
            elif kind == "numeric":
                _encode_numeric(
                    _numeric_column(frame[self.numeric[j]]),
                    self.medians[j],
                    self.means[j],
                    self.stds[j],
                    out=dense[:, j],
                )
            elif kind == "boolean":
                col = frame[self.boolean[j]]
                # bool from Parquet, nullable boolean, or float64 1/0/NaN from ``feature_frame``:
                # a null is 0 in each (``astype(bool)`` would make NaN true).
                dense[:, offset + j] = (
                    col.to_numpy()
                    if col.dtype == bool
                    else col.astype("boolean").fillna(False).to_numpy(dtype="float32")
                )
            else:  # rows [a, b) of a categorical column; -1 (unknown or missing) becomes 0
                a, b = task[2], task[3]
                col = frame[self.categorical[j]].iloc[a:b]
                cat[a:b, j] = _category_codes(col, self.categories[j]) + 1

        # Categorical columns first, in row chunks: they are the slowest per column, so their chunks
        # start while the numeric columns fill the rest of the pool.
        chunks = max(1, min(4, n // _PARALLEL_MIN_ROWS))
        bounds = [n * i // chunks for i in range(chunks + 1)]
        tasks: list[tuple[Any, ...]] = [
            ("categorical", j, a, b)
            for j in range(len(self.categorical))
            for a, b in zip(bounds[:-1], bounds[1:], strict=True)
        ]
        tasks += [("numeric", j) for j in range(len(self.numeric))]
        tasks += [("boolean", j) for j in range(len(self.boolean))]
        _map_columns(encode, tasks, n)
        return dense, cat


_PARALLEL_MIN_ROWS = 100_000  # below this, threads cost more than they save
_column_pool: ThreadPoolExecutor | None = None


def _map_columns(fn: Any, items: Any, n_rows: int) -> list[Any]:
    """``[fn(item) for item in items]``, on a small thread pool for large frames."""
    global _column_pool
    items = list(items)
    if n_rows < _PARALLEL_MIN_ROWS or len(items) < 2:
        return [fn(item) for item in items]
    if _column_pool is None:
        _column_pool = ThreadPoolExecutor(
            max_workers=min(16, os.cpu_count() or 1), thread_name_prefix="encode"
        )
    return list(_column_pool.map(fn, items))


def _numeric_column(col: pd.Series) -> np.ndarray:
    """A column as float64; unparsable values become NaN."""
    if not pd.api.types.is_numeric_dtype(col.dtype) or pd.api.types.is_bool_dtype(col.dtype):
        col = pd.to_numeric(col, errors="coerce")
    return col.to_numpy(dtype="float64", na_value=np.nan)


def _numeric_stats(values: np.ndarray) -> tuple[float, float, float]:
    """(median, mean, std) of a column, missing values imputed with the median; std 1 if constant."""
    if len(values) == 0:
        return 0.0, 0.0, 1.0
    missing = np.isnan(values)
    if missing.any():
        median = float(np.median(values[~missing])) if not missing.all() else 0.0
        values = np.where(missing, median, values)
    else:
        median = float(np.median(values))
    std = float(values.std())
    return median, float(values.mean()), std if std > 1e-12 else 1.0


def _encode_numeric(values: np.ndarray, median: float, mean: float, std: float, *, out: np.ndarray) -> None:
    """Impute, standardise and clip into ``out`` (a float32 column)."""
    filled = np.where(np.isnan(values), median, values)
    filled -= mean
    filled /= std
    # Clipping keeps a wild value at serving time from saturating the network.
    np.clip(filled, -10.0, 10.0, out=filled)
    out[:] = filled


def _category_codes(col: pd.Series, categories: list[str]) -> np.ndarray:
    """Position of each value in ``categories`` (compared as text), -1 for unknown or missing.

    One pass over the rows; only the few distinct values are turned into text and looked up.
    Categorical columns use their codes. Object columns (text read from Parquet or CSV) are
    factorized by object identity, which needs no string hashing and no GIL; see
    ``_factorize_objects``. Anything else goes through one ``pd.factorize``.
    """
    if isinstance(col.dtype, pd.CategoricalDtype):
        codes, uniques = col.cat.codes.to_numpy(), pd.Series(col.cat.categories)
    elif col.dtype == object and (found := _factorize_objects(col.to_numpy())) is not None:
        codes, uniques = found
    else:
        codes, uniques_index = pd.factorize(col, use_na_sentinel=True)
        uniques = pd.Series(uniques_index)
    lookup = pd.Index(categories).get_indexer(uniques.astype(str))
    lookup[uniques.isna().to_numpy()] = -1  # a missing value is never a category, even one named "nan"
    return np.append(lookup, -1)[codes]  # code -1 (missing) picks the appended -1


_MAX_DISTINCT_OBJECTS = 0.01  # share of rows: above it, identity factorizing is dropped for ``pd.factorize``


def _factorize_objects(values: np.ndarray) -> tuple[np.ndarray, pd.Series] | None:
    """``(codes, distinct objects)`` of an object array, grouping rows that hold the same object.

    An object array's buffer is one pointer per row. Pyarrow's ``to_pandas`` and pandas' CSV
    parser both reuse one object for equal strings, so a text column has a handful of distinct
    pointers, and factorizing those as integers is about 3x faster than hashing the strings, and
    runs without the GIL (columns encode in parallel). Equal values held by different objects
    get different codes, which is harmless: each code is looked up by its value. None when the
    column has too many distinct objects for this to pay (then the caller hashes the values).
    """
    if len(values) < _PARALLEL_MIN_ROWS:
        return None
    values = np.ascontiguousarray(values)
    # A view of the pointers, valid while ``values`` (which holds the references) lives.
    pointers = np.frombuffer((ctypes.c_size_t * len(values)).from_address(values.ctypes.data), dtype=np.uintp)
    codes, distinct = pd.factorize(pointers)
    if len(distinct) > max(1024, _MAX_DISTINCT_OBJECTS * len(values)):
        return None
    # Codes are numbered in order of first appearance: a row holds a new object where their
    # running maximum steps up.
    running = np.maximum.accumulate(codes)
    first = np.flatnonzero(np.concatenate([[True], running[1:] != running[:-1]]))
    return codes, pd.Series(values[first], dtype=object)


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
        return cls.fit_encode(spec, y, class_weight)[0]

    @classmethod
    def fit_encode(
        cls, spec: ModelSpec, y: pd.Series, class_weight: str
    ) -> tuple[TargetEncoding, np.ndarray]:
        """``fit``, and ``encode(y)`` of the same labels (encoded once)."""
        task = spec.task.value
        if task == "regression":
            values = pd.to_numeric(y, errors="raise").astype("float64")
            std = float(values.std(ddof=0))
            enc = cls(task=task, mean=float(values.mean()), std=std if std > 1e-12 else 1.0)
            return enc, enc.encode(y)
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
        return enc, labels

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


# --- the fitted model -----------------------------------------------------------------------


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
        for i in range(0, len(frame), _PREDICT_BATCH):
            logits = self.net(
                torch.from_numpy(dense[i : i + _PREDICT_BATCH]), torch.from_numpy(cat[i : i + _PREDICT_BATCH])
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


# --- training -------------------------------------------------------------------------------


def stage(
    arrays: dict[str, np.ndarray], device: torch.device, max_fraction: float, splits: dict[str, np.ndarray]
) -> tuple[dict[str, dict[str, torch.Tensor]], bool]:
    """Put the arrays on ``device`` and cut them into ``splits`` (name -> row indices) there.

    On a GPU the whole arrays go over once, and the train/validation rows are gathered on the
    device. Returns ``{split: {array: tensor}}`` and
    whether the data is on the device. When it does not fit in ``max_fraction`` of free GPU
    memory it stays in pinned host memory and each batch is copied over; the log says so.
    """
    if device.type != "cuda":
        return {
            name: {k: torch.from_numpy(a[idx]) for k, a in arrays.items()} for name, idx in splits.items()
        }, True
    nbytes = sum(a.nbytes for a in arrays.values())
    free, _total = torch.cuda.mem_get_info(device)
    if 2 * nbytes <= max_fraction * free:  # the whole arrays plus their split copies
        # Plain (pageable) copies of data sent once: the whole stage phase took 0.02 s for 2 M rows
        # on an H100 (docs/benchmarks.md).
        whole = {k: torch.from_numpy(a).to(device) for k, a in arrays.items()}
        out = {}
        for name, idx in splits.items():
            idx_d = torch.from_numpy(idx).to(device)
            out[name] = {k: t.index_select(0, idx_d) for k, t in whole.items()}
        return out, True
    log.warning(
        "Training data (%.1f GiB) does not fit in %.0f%% of free GPU memory (%.1f GiB): "
        "copying batches from pinned host memory (slower)",
        nbytes / 2**30,
        100 * max_fraction,
        free / 2**30,
    )
    return {
        name: {k: torch.from_numpy(a[idx]).pin_memory() for k, a in arrays.items()}
        for name, idx in splits.items()
    }, False


def resolve_batch_size(
    requested: int | str, n_train: int, device: torch.device, n_inputs: int, hidden_sizes: tuple[int, ...]
) -> int:
    """``auto``: 2,048 rows on CPU; on a GPU a power of two near ``n_train / 128`` (about 128
    optimizer steps per epoch), between 1,024 and 16,384, and no more than a tenth of free GPU
    memory holds in activations. See docs/benchmarks.md for the measurements behind it."""
    if requested != "auto":
        return int(requested)
    if device.type != "cuda":
        return 2048
    target = 2 ** max(int(math.log2(max(n_train, 1) / 128)), 0)
    batch = min(max(target, 1024), 16_384)
    # fp32 activations and their gradients, each layer's input and output, with room to spare
    bytes_per_row = 4 * 4 * (n_inputs + 2 * sum(hidden_sizes) + 1)
    free, _total = torch.cuda.mem_get_info(device)
    while batch > 256 and batch * bytes_per_row > 0.1 * free:
        batch //= 2
    return batch


def resolve_cuda_graphs(
    requested: str, device: torch.device, amp_dtype: torch.dtype | None, staged: bool
) -> bool:
    """``auto``: capture each optimizer step as a CUDA graph on a GPU when the data is on the device
    (fp16's gradient scaler is left out: it syncs with the host). The small networks this trainer
    builds are bound by kernel launches, which a graph replay removes."""
    possible = device.type == "cuda" and staged and amp_dtype != torch.float16
    if requested == "on" and not possible:
        log.warning(
            "training.params.cuda_graphs is 'on' but needs a GPU, data staged on it and no "
            "fp16; training without CUDA graphs"
        )
    return possible and requested != "off"


def _autocast(device: torch.device, amp_dtype: torch.dtype | None, *, cache: bool = True) -> Any:
    return torch.autocast(
        device.type, dtype=amp_dtype or torch.float32, enabled=amp_dtype is not None, cache_enabled=cache
    )


def _step(
    net: nn.Module,
    optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler,
    loss_fn: nn.Module,
    dense: torch.Tensor,
    cat: torch.Tensor,
    y: torch.Tensor,
    device: torch.device,
    amp_dtype: torch.dtype | None,
    *,
    graph_safe: bool = False,
) -> torch.Tensor:
    """One optimizer step on one batch; returns the batch's summed loss (on the device)."""
    with _autocast(device, amp_dtype, cache=not graph_safe):
        out = net(dense, cat)
        loss = loss_fn(out.squeeze(-1) if out.shape[-1] == 1 else out, y)
    optimizer.zero_grad(set_to_none=True)
    scaler.scale(loss / y.shape[0]).backward()
    scaler.step(optimizer)
    scaler.update()
    return loss.detach().float()


class StepGraph:
    """An optimizer step on ``batch_size`` rows of device-resident ``data``, captured once as a CUDA graph.

    Each replay gathers the rows named by ``idx`` (copied in before the replay), runs forward,
    backward and the (capturable) optimizer step, and adds the batch loss to ``total``: one
    launch instead of some hundred. Capturing needs a few warm-up steps; the model, optimizer
    and RNG states are put back afterwards, so a captured run trains exactly as if the warm-up had
    not happened (and a resumed run the same as an uninterrupted one).
    """

    def __init__(self, batch_size: int) -> None:
        self.batch_size = batch_size
        self.graph: torch.cuda.CUDAGraph | None = None
        self.idx: torch.Tensor | None = None
        self.total: torch.Tensor | None = None

    def capture(
        self,
        net: nn.Module,
        optimizer: torch.optim.Optimizer,
        scaler: torch.amp.GradScaler,
        loss_fn: nn.Module,
        data: dict[str, torch.Tensor],
        device: torch.device,
        amp_dtype: torch.dtype | None,
    ) -> None:
        params = [q for g in optimizer.param_groups for q in g["params"]]
        saved_params = [q.detach().clone() for q in net.parameters()]
        saved_buffers = [b.detach().clone() for b in net.buffers()]
        saved_state = {
            q: {k: (v.clone() if torch.is_tensor(v) else v) for k, v in optimizer.state[q].items()}
            for q in params
            if q in optimizer.state
        }
        rng = torch.cuda.get_rng_state(device)
        self.idx = torch.arange(self.batch_size, device=device)
        self.total = torch.zeros((), device=device)

        def step() -> None:
            self.total += _step(
                net,
                optimizer,
                scaler,
                loss_fn,
                data["dense"][self.idx],
                data["cat"][self.idx],
                data["y"][self.idx],
                device,
                amp_dtype,
                graph_safe=True,
            )

        side = torch.cuda.Stream(device)
        side.wait_stream(torch.cuda.current_stream(device))
        with torch.cuda.stream(side):
            for _ in range(2):  # lazy state (optimizer moments, cuBLAS workspaces) outside the capture
                step()
        torch.cuda.current_stream(device).wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        optimizer.zero_grad(set_to_none=True)
        with torch.cuda.graph(graph):
            step()
        with torch.no_grad():  # undo the warm-up, in place: the graph holds these addresses
            for q, v in zip(net.parameters(), saved_params, strict=True):
                q.copy_(v)
            for b, v in zip(net.buffers(), saved_buffers, strict=True):
                b.copy_(v)
            for q in params:
                for k, v in optimizer.state[q].items():
                    if not torch.is_tensor(v):
                        continue
                    if q in saved_state:
                        v.copy_(saved_state[q][k])
                    else:  # fresh optimizer: its moments and step count start at zero
                        v.zero_()
        torch.cuda.set_rng_state(rng, device)
        self.graph = graph


def draw_permutation(n: int, generator: torch.Generator, device: torch.device) -> torch.Tensor:
    """A shuffled order of ``n`` rows, drawn on the CPU (the same order on any device), sent to ``device``."""
    perm = torch.randperm(n, generator=generator)
    if device.type == "cuda":
        perm = perm.pin_memory().to(device, non_blocking=True)
    return perm


def train_one_epoch(
    net: nn.Module,
    optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler,
    loss_fn: nn.Module,
    data: dict[str, torch.Tensor],
    *,
    batch_size: int,
    generator: torch.Generator,
    device: torch.device,
    amp_dtype: torch.dtype | None,
    graph: StepGraph | None = None,
    perm: torch.Tensor | None = None,
) -> torch.Tensor:
    """One pass over ``data`` (keys ``dense``, ``cat``, ``y``) in shuffled index batches.

    The row order is ``perm`` when given (``draw_permutation`` on ``generator``, drawn ahead while
    the GPU was still busy), else drawn here.

    Returns the mean loss as a 0-d tensor on the device: nothing here waits for the GPU. With a
    ``graph`` (and the data on the device) full batches are CUDA-graph replays; it is captured on
    the first call.
    """
    net.train()
    n = data["y"].shape[0]
    on_device = data["y"].device.type == device.type
    if perm is None:
        perm = draw_permutation(n, generator, device if on_device else torch.device("cpu"))
    total = torch.zeros((), device=device)
    start = 0
    if graph is not None and on_device and n >= graph.batch_size:
        if graph.graph is None:
            graph.capture(net, optimizer, scaler, loss_fn, data, device, amp_dtype)
        assert graph.idx is not None and graph.total is not None and graph.graph is not None
        graph.total.zero_()
        b = graph.batch_size
        for start in range(0, n - b + 1, b):
            graph.idx.copy_(perm[start : start + b])
            graph.graph.replay()
        start += b
        total += graph.total
    for start in range(start, n, batch_size):
        idx = perm[start : start + batch_size]
        dense, cat, y = data["dense"][idx], data["cat"][idx], data["y"][idx]
        if not on_device:
            dense, cat, y = (t.to(device, non_blocking=True) for t in (dense, cat, y))
        total += _step(net, optimizer, scaler, loss_fn, dense, cat, y, device, amp_dtype)
    return total / max(n, 1)


@torch.no_grad()
def _predict_logits(
    net: nn.Module, data: dict[str, torch.Tensor], device: torch.device, amp_dtype: torch.dtype | None
) -> torch.Tensor:
    net.eval()
    out = []
    for start in range(0, data["y"].shape[0], _PREDICT_BATCH):
        dense = data["dense"][start : start + _PREDICT_BATCH].to(device, non_blocking=True)
        cat = data["cat"][start : start + _PREDICT_BATCH].to(device, non_blocking=True)
        with _autocast(device, amp_dtype):
            out.append(net(dense, cat).float())
    return torch.cat(out)


@torch.no_grad()
def roc_auc_tensor(y: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
    """ROC-AUC from ranks (ties averaged) on the scores' device, without waiting for it; NaN when
    only one class is present. Same figure as scikit-learn's ``roc_auc_score``.

    Kept apart from ``evaluation.metrics`` (weighted, numpy, for the report and the bootstrap): early
    stopping reads it every epoch, and computing it where the scores are means no device-to-host
    copy and no synchronisation per epoch."""
    n = scores.shape[0]
    if n == 0:
        return torch.full((), float("nan"), dtype=torch.float64, device=scores.device)
    s, order = torch.sort(scores.double())
    pos = (y[order] == 1).double()
    i = torch.arange(n, device=s.device)
    first = torch.ones(n, dtype=torch.bool, device=s.device)
    first[1:] = s[1:] != s[:-1]
    last = torch.ones(n, dtype=torch.bool, device=s.device)
    last[:-1] = first[1:]
    start = torch.where(first, i, 0).cummax(0).values
    end = torch.where(last, i, n - 1).flip(0).cummin(0).values.flip(0)
    ranks = (start + end).double() / 2 + 1
    n_pos = pos.sum()
    n_neg = n - n_pos
    auc = ((ranks * pos).sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)
    return torch.where((n_pos > 0) & (n_neg > 0), auc, torch.full_like(auc, float("nan")))


def validate(
    net: nn.Module,
    val: dict[str, torch.Tensor],
    loss_fn: nn.Module,
    target: TargetEncoding,
    device: torch.device,
    amp_dtype: torch.dtype | None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Validation loss and ROC-AUC (NaN unless binary) as 0-d tensors on the device: no host sync."""
    logits = _predict_logits(net, val, device, amp_dtype)
    y = val["y"].to(device, non_blocking=True)
    n = max(y.shape[0], 1)
    with torch.no_grad():
        loss = loss_fn(logits.squeeze(-1) if logits.shape[-1] == 1 else logits, y).double() / n
        if target.task == "binary_classification":
            # Shifting by the offset and the sigmoid keep the order: rank the scores the model serves.
            # A Python number, not ``torch.tensor(..., device=...)``: copying that to the GPU would
            # make the host wait for the whole epoch queued before it.
            scores = torch.sigmoid(logits.squeeze(-1) - float((target.logit_offset or [0.0])[0]))
            auc = roc_auc_tensor(y, scores)
        else:
            auc = torch.full((), float("nan"), dtype=torch.float64, device=device)
    return loss, auc


def validation_split(y: np.ndarray, task: str, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Seeded train/validation row indices; stratified by class for classification (rare positives)."""
    rng = np.random.default_rng(seed)
    if task == "regression":
        groups = [np.arange(len(y))]
    else:  # labels are class indices: the classes present, without sorting the labels
        groups = [np.flatnonzero(y == c) for c in np.flatnonzero(np.bincount(y.astype(np.int64)))]
    val = []
    for g in groups:
        k = int(round(len(g) * fraction))
        if len(g) >= 2:
            k = min(max(k, 1), len(g) - 1)  # every class on both sides when it can be
        # Draws k rows without shuffling all of them (a partial shuffle: about 10x faster).
        val.append(g[rng.choice(len(g), size=k, replace=False)])
    val_idx = np.sort(np.concatenate(val)) if val else np.zeros(0, dtype=np.int64)
    train_mask = np.ones(len(y), dtype=bool)
    train_mask[val_idx] = False
    return np.flatnonzero(train_mask), val_idx


def _fingerprint(
    spec: ModelSpec, params: TorchParams, encoder: TabularEncoder, arrays: dict[str, np.ndarray]
) -> str:
    """Identifies (spec, params, data): a checkpoint is resumed only by the run that wrote it.

    The data is identified by what training sees: the fitted encoder and the encoded arrays
    (hashed in C, off the GIL, so it can run beside staging). Device, precision and CUDA graphs are
    left out on purpose: a retry may land on another node type.
    """
    p = {k: v for k, v in asdict(params).items() if k not in ("device", "precision", "cuda_graphs")}
    h = hashlib.sha256()
    for name in sorted(arrays):
        a = np.ascontiguousarray(arrays[name])
        h.update(f"{name}{a.dtype}{a.shape}".encode())
        # A flat byte view: ``memoryview.cast`` refuses a shape with a zero in it, as the category
        # matrix of a table without categorical features has ([n, 0]). Same bytes otherwise.
        h.update(a.reshape(-1).view(np.uint8))
    blob = json.dumps(
        [spec.spec_hash(), p, asdict(encoder), h.hexdigest(), _SPLIT_METHOD], sort_keys=True, default=str
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    """Write the checkpoint atomically: a temporary file in the same folder, fsync, rename."""
    from include.modelops.platform.storage import atomic_file

    with atomic_file(path, "wb", fsync=True) as fh:
        torch.save(state, fh)


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


def _snapshot(obj: Any) -> Any:
    """A copy of ``obj`` with its tensors in host memory, for a background write, without waiting.

    GPU tensors are copied into pinned host memory with non-blocking copies queued behind the work
    already on the stream: the snapshot is of this moment, and is complete once an event recorded
    after these copies has passed. CPU tensors are cloned.
    """
    if torch.is_tensor(obj):
        return obj.detach().to("cpu", non_blocking=True) if obj.is_cuda else obj.detach().clone()
    if isinstance(obj, dict):
        return {k: _snapshot(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_snapshot(v) for v in obj)
    return obj


class CheckpointWriter:
    """Writes checkpoints with ``save_checkpoint`` on a background thread, in order, one at a time.

    ``submit`` takes a snapshot (GPU tensors copied to host memory without waiting for the GPU)
    and returns at once; it first waits for the previous write (which
    had a whole epoch to finish) and raises its error, if any, so a failing disk still fails the
    run one epoch later. ``close`` waits for the last write: when ``fit`` returns, the final
    checkpoint is on disk.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="checkpoint")
        self._pending: Future[None] | None = None

    def submit(self, state: dict[str, Any]) -> None:
        self.wait()
        snapshot = _snapshot(state)
        copied: torch.cuda.Event | None = None
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            copied = torch.cuda.Event()
            copied.record()  # after the copies to host memory, before the next epoch's work

        def write() -> None:
            # Waits for the copies only, not for the epoch queued behind them on the GPU, so the
            # training thread never waits for this write while the next epoch runs.
            if copied is not None:
                copied.synchronize()
            save_checkpoint(self.path, snapshot)

        self._pending = self._pool.submit(write)

    def wait(self) -> None:
        pending, self._pending = self._pending, None
        if pending is not None:
            pending.result()

    def close(self, *, raise_errors: bool = True) -> None:
        try:
            self.wait()
        except Exception:
            if raise_errors:
                raise
            log.warning("Writing the last checkpoint to %s failed", self.path, exc_info=True)
        finally:
            self._pool.shutdown(wait=True)


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
    fingerprint = hasher.submit(_fingerprint, spec, p, encoder, arrays) if ckpt_path is not None else None
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
