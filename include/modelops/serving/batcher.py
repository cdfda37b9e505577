"""Greedy micro-batching for the served bento: concurrent requests' rows scored in one model call.

``GreedyBatcher(score, max_rows)`` wraps a blocking ``score(list_of_row_lists) -> list_of_results``.
A request that arrives while no model call runs is scored at once (no wait at low load); requests
that arrive while a call runs queue up and go together in the next call, up to ``max_rows`` rows.
So the batch size follows the load by itself, and nothing polls or sleeps.

Why not BentoML's CORK dispatcher (behind ``batchable=True``): it polls its queue every 1 ms
while a request waits, and it waits on purpose for about as long as recent batches waited on
average (``Optimizer.wait``), so one slow stretch on a busy host makes later requests wait
longer too. For a tabular model, whose call costs about the same for 1 row as for 100, waiting
buys nothing: the next batch forms while the current one is scored. (Measured on the 2-core
host, the larger cost was elsewhere: OpenMP teams in the scoring threads, see ``bentos/service.py``
and ``docs/benchmarks.md``, Serving.)

A request that waited longer than ``max_wait_s`` in the queue gets ``overloaded()`` raised (the
service answers 503) instead of being scored late.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any


class GreedyBatcher:
    """Score queued requests together, one model call at a time, without waiting for a batch to fill."""

    def __init__(
        self,
        score: Callable[[Sequence[list[Any]]], Sequence[Any]],
        max_rows: int,
        *,
        max_wait_s: float,
        overloaded: Callable[[], Exception],
    ) -> None:
        self.score, self.max_rows, self.max_wait_s, self.overloaded = score, max_rows, max_wait_s, overloaded
        self._queue: deque[tuple[float, list[Any], asyncio.Future[Any]]] = deque()
        self._running = False
        self.calls = 0  # model calls made (for tests and debugging)

    async def __call__(self, rows: list[Any]) -> Any:
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._queue.append((time.monotonic(), rows, future))
        if not self._running:
            self._running = True
            asyncio.get_running_loop().create_task(self._drain())
        return await future

    def _take(self) -> list[tuple[float, list[Any], asyncio.Future[Any]]]:
        """The next batch: queued requests in order, up to ``max_rows`` rows (always at least one)."""
        batch, rows, now = [], 0, time.monotonic()
        while self._queue and (not batch or rows + len(self._queue[0][1]) <= self.max_rows):
            enqueued, job_rows, future = self._queue.popleft()
            if future.done():  # the client went away
                continue
            if now - enqueued > self.max_wait_s:
                future.set_exception(self.overloaded())
                continue
            batch.append((enqueued, job_rows, future))
            rows += len(job_rows)
        return batch

    async def _drain(self) -> None:
        from starlette.concurrency import run_in_threadpool

        try:
            while self._queue:
                batch = self._take()
                if not batch:
                    continue
                self.calls += 1
                try:
                    results = await run_in_threadpool(self.score, [rows for _, rows, _ in batch])
                except Exception as exc:  # every request of the batch gets the model's error
                    for _, _, future in batch:
                        if not future.done():
                            future.set_exception(exc)
                    continue
                for (_, _, future), result in zip(batch, results, strict=True):
                    if not future.done():
                        future.set_result(result)
        finally:
            self._running = False
