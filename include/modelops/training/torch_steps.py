"""The torch trainer's device work: staging the data, the training step (CUDA graphs, autocast),
one epoch, validation (loss and ROC-AUC on the device, with no host sync per batch).
"""

from __future__ import annotations

import logging
import math
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from include.modelops.training.torch_features import TargetEncoding

if TYPE_CHECKING:
    pass

log = logging.getLogger(__name__)

PREDICT_BATCH = 65_536


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
    for start in range(0, data["y"].shape[0], PREDICT_BATCH):
        dense = data["dense"][start : start + PREDICT_BATCH].to(device, non_blocking=True)
        cat = data["cat"][start : start + PREDICT_BATCH].to(device, non_blocking=True)
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
