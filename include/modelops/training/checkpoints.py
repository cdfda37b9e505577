"""Checkpoints of the torch trainer: what identifies a run's checkpoint, writing one atomically on a
background thread, and resuming only the run that wrote it.
"""

from __future__ import annotations

import hashlib
import json
import logging
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from include.modelops.training.torch_features import TabularEncoder

if TYPE_CHECKING:
    from include.modelops.spec import ModelSpec
    from include.modelops.training.torch_trainer import TorchParams

log = logging.getLogger(__name__)

CHECKPOINT_FORMAT = 1


_SPLIT_METHOD = 2  # in checkpoint fingerprints: a checkpoint made with another split is not resumed


def checkpoint_fingerprint(
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
