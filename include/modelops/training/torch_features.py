"""The torch trainer's inputs: a table encoded into dense and categorical tensors, and the target.

Fitted on the training rows only (medians, standardisation, category codes); saved with the model as
JSON, so a served model encodes a request exactly as training did.
"""

from __future__ import annotations

import ctypes
import logging
import math
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import torch
from torch import nn

if TYPE_CHECKING:
    from include.modelops.spec import ModelSpec

log = logging.getLogger(__name__)


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
