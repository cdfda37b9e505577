"""The served bento's micro-batcher: concurrent requests share model calls, a lone request never waits."""

import asyncio
import threading
import time

import pytest

from include.modelops.serving.batcher import GreedyBatcher


class Overloaded(Exception):
    pass


def _model(calls: list[list[int]], *, release: threading.Event | None = None, delay_s: float = 0.0):
    """A blocking 'model' that doubles every row and records each call's batch sizes."""

    def score(batches):
        if release is not None:
            release.wait(5)
        time.sleep(delay_s)
        calls.append([len(rows) for rows in batches])
        return [[2 * x for x in rows] for rows in batches]

    return score


def test_a_lone_request_is_scored_at_once_and_gets_its_own_rows_back():
    calls: list[list[int]] = []
    batcher = GreedyBatcher(_model(calls), 100, max_wait_s=2, overloaded=Overloaded)

    async def main():
        started = time.perf_counter()
        result = await batcher([1, 2, 3])
        return result, time.perf_counter() - started

    result, elapsed = asyncio.run(main())
    assert result == [2, 4, 6]
    assert calls == [[3]]
    assert elapsed < 0.5


def test_requests_arriving_during_a_call_go_together_in_the_next_one_up_to_max_rows():
    calls: list[list[int]] = []
    release = threading.Event()
    batcher = GreedyBatcher(_model(calls, release=release), 5, max_wait_s=10, overloaded=Overloaded)

    async def main():
        first = asyncio.ensure_future(batcher([0]))
        await asyncio.sleep(0.05)  # the first call is now running (blocked on release)
        rest = [asyncio.ensure_future(batcher([i, i])) for i in range(1, 5)]
        await asyncio.sleep(0.05)
        release.set()
        return await first, await asyncio.gather(*rest)

    first, rest = asyncio.run(main())
    assert first == [0]
    assert rest == [[2 * i, 2 * i] for i in range(1, 5)]
    # 8 queued rows with max 5 per call: two requests (4 rows), then the other two.
    assert calls == [[1], [2, 2], [2, 2]]
    assert batcher.calls == 3


def test_a_request_that_waited_too_long_is_refused_and_a_model_error_reaches_every_request_of_its_batch():
    calls: list[list[int]] = []
    batcher = GreedyBatcher(_model(calls, delay_s=0.3), 100, max_wait_s=0.1, overloaded=Overloaded)

    async def main():
        first = asyncio.ensure_future(batcher([1]))
        await asyncio.sleep(0.01)
        late = asyncio.ensure_future(batcher([2]))
        return await first, await asyncio.gather(late, return_exceptions=True)

    first, (late,) = asyncio.run(main())
    assert first == [2]
    assert isinstance(late, Overloaded)
    assert calls == [[1]]

    def broken(batches):
        raise ValueError("model exploded")

    failing = GreedyBatcher(broken, 100, max_wait_s=2, overloaded=Overloaded)

    async def both():
        return await asyncio.gather(failing([1]), failing([2]), return_exceptions=True)

    results = asyncio.run(both())
    assert all(isinstance(r, ValueError) and "exploded" in str(r) for r in results)
    with pytest.raises(ValueError):
        asyncio.run(failing([3]))
