"""The scheduler with a slow stand-in decoder: batching, fairness, cancellation, backpressure, faults."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Sequence

import numpy as np
import pytest

from server.faults import QueueFull, SchedulerClosed
from server.scheduler import Scheduler


class SlowDecoder:
    """Scores a pair by its last token; each decode takes `delay` seconds and is recorded."""

    def __init__(self, batch_tokens: int = 8, n_seq_max: int = 4, delay: float = 0.01, causal: bool = False) -> None:
        self.causal = causal
        self.shared_prefixes: list[int] = []
        self.batch_tokens = batch_tokens
        self.n_seq_max = n_seq_max
        self.delay = delay
        self.decodes: list[list[int]] = []
        self.fail_on: int | None = None
        self.lock = threading.Lock()

    def decode(self, pairs: Sequence[np.ndarray], shared_prefix: int = 0) -> np.ndarray:
        time.sleep(self.delay)
        self.shared_prefixes.append(shared_prefix)
        firsts = [int(p[-1]) for p in pairs]
        with self.lock:
            self.decodes.append(firsts)
        if self.fail_on is not None and self.fail_on in firsts:
            raise RuntimeError("engine fault")
        return np.asarray(firsts, dtype=np.float32)


def pairs(start: int, count: int, length: int = 2) -> list[np.ndarray]:
    return [np.full(length, start + i, dtype=np.int32) for i in range(count)]


def test_pairs_are_packed_by_token_budget_and_sequence_count():
    decoder = SlowDecoder(batch_tokens=8, n_seq_max=3, delay=0)
    scheduler = Scheduler(decoder)
    try:
        scores = asyncio.run(scheduler.score(pairs(0, 7)))
    finally:
        scheduler.close()
    assert scores.tolist() == list(range(7))
    assert [len(d) for d in decoder.decodes] == [3, 3, 1]  # 3 sequences of 2 tokens fit 8 tokens and 3 seqs


def test_a_long_pair_goes_alone():
    decoder = SlowDecoder(batch_tokens=8, n_seq_max=4, delay=0)
    scheduler = Scheduler(decoder)
    try:
        asyncio.run(scheduler.score([*pairs(0, 1), np.full(20, 1, dtype=np.int32), *pairs(2, 1)]))
    finally:
        scheduler.close()
    assert decoder.decodes == [[0], [1], [2]]


def test_a_small_request_is_not_starved_by_a_large_one():
    decoder = SlowDecoder(batch_tokens=4, n_seq_max=2, delay=0.005)
    scheduler = Scheduler(decoder)

    async def run() -> tuple[float, float]:
        big = asyncio.ensure_future(scheduler.score(pairs(1000, 400)))
        await asyncio.sleep(0.05)
        started = time.perf_counter()
        await scheduler.score(pairs(0, 3))
        small_latency = time.perf_counter() - started
        await big
        return small_latency, time.perf_counter() - started

    try:
        small_latency, rest = asyncio.run(run())
    finally:
        scheduler.close()
    # Alone, 3 pairs take 2 decodes; interleaved with the big request, one pair per decode each.
    small_decodes = [i for i, d in enumerate(decoder.decodes) if any(x < 1000 for x in d)]
    assert len(small_decodes) <= 3 and small_decodes[-1] - small_decodes[0] <= 3
    assert small_latency < rest / 5


def test_a_cancelled_request_has_its_pairs_dropped():
    decoder = SlowDecoder(batch_tokens=2, n_seq_max=1, delay=0.01)
    scheduler = Scheduler(decoder)

    async def run() -> None:
        task = asyncio.ensure_future(scheduler.score(pairs(0, 200)))
        await asyncio.sleep(0.1)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await asyncio.sleep(0.1)

    try:
        asyncio.run(run())
    finally:
        scheduler.close()
    assert len(decoder.decodes) < 30, "the remaining pairs were not computed"
    assert scheduler.queued_pairs == 0


def test_a_full_queue_refuses_at_once():
    decoder = SlowDecoder(batch_tokens=2, n_seq_max=1, delay=0.01)
    scheduler = Scheduler(decoder, max_queued_pairs=50)

    async def run() -> None:
        big = asyncio.ensure_future(scheduler.score(pairs(0, 40)))
        await asyncio.sleep(0.02)
        with pytest.raises(QueueFull, match="the queue holds 50"):
            await scheduler.score(pairs(100, 20))
        await scheduler.score(pairs(200, 5))  # still fits
        big.cancel()

    try:
        asyncio.run(run())
    finally:
        scheduler.close()


def test_an_engine_fault_fails_only_its_requests():
    decoder = SlowDecoder(batch_tokens=2, n_seq_max=1, delay=0)
    decoder.fail_on = 7
    scheduler = Scheduler(decoder)

    async def run() -> None:
        with pytest.raises(RuntimeError, match="engine fault"):
            await scheduler.score(pairs(5, 5))
        assert (await scheduler.score(pairs(20, 2))).tolist() == [20, 21]

    try:
        asyncio.run(run())
    finally:
        scheduler.close()


def test_closing_fails_waiting_requests():
    decoder = SlowDecoder(batch_tokens=2, n_seq_max=1, delay=0.01)
    scheduler = Scheduler(decoder)

    async def run() -> None:
        task = asyncio.ensure_future(scheduler.score(pairs(0, 100)))
        await asyncio.sleep(0.05)
        await asyncio.to_thread(scheduler.close)
        with pytest.raises(SchedulerClosed):
            await task
        with pytest.raises(SchedulerClosed):
            await scheduler.score(pairs(0, 1))

    asyncio.run(run())


def test_a_causal_engine_gets_one_requests_pairs_per_decode_with_their_prefix():
    decoder = SlowDecoder(batch_tokens=6, n_seq_max=4, delay=0.001, causal=True)
    scheduler = Scheduler(decoder)
    prefix = [7, 7, 7, 7]

    def with_prefix(start: int, count: int) -> list[np.ndarray]:
        return [np.array([*prefix, 0, 0, start + i], dtype=np.int32) for i in range(count)]

    async def run() -> list[np.ndarray]:
        return await asyncio.gather(scheduler.score(with_prefix(100, 5), shared_prefix=2),
                                    scheduler.score(with_prefix(200, 5), shared_prefix=3))

    try:
        results = asyncio.run(run())
    finally:
        scheduler.close()
    assert results[0].tolist() == [100 + i for i in range(5)] and results[1].tolist() == [200 + i for i in range(5)]
    for firsts, prefix_len in zip(decoder.decodes, decoder.shared_prefixes):
        assert len({x // 100 for x in firsts}) == 1, "one request per decode"
        assert prefix_len == (2 if firsts[0] < 200 else 3)
        # own tokens: 7 - prefix per pair; budget 6 tokens and 3 sequences (one holds the prefix)
        assert len(firsts) * (7 - prefix_len) <= 6 and len(firsts) <= 3
    owners = [d[0] // 100 for d in decoder.decodes]
    assert owners[:4] in ([1, 2, 1, 2], [2, 1, 2, 1]), "requests take turns"
