"""The scheduler with a slow stand-in decoder: batching, fairness, cancellation, backpressure, faults."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Sequence

import numpy as np
import pytest

from server.faults import Overloaded, QueueFull, SchedulerClosed
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


class TokenTimedDecoder(SlowDecoder):
    """A decode takes `per_token` seconds a token, like an engine at a steady rate."""

    def __init__(self, per_token: float, **options) -> None:
        super().__init__(**options)
        self.per_token = per_token

    def decode(self, pairs: Sequence[np.ndarray], shared_prefix: int = 0) -> np.ndarray:
        self.delay = self.per_token * sum(len(p) for p in pairs)
        return super().decode(pairs, shared_prefix)


def test_past_its_capacity_the_engine_admits_what_can_finish_in_time():
    """Fuzzer finding 9: twelve requests of 0.13 s of work each, with 0.6 s to wait, arrive at once.
    Shared in turn, all would finish after about 1.5 s, every one late. Admitted by work and
    deadline, about four are served in time and the others are refused at once, with a retry time."""
    decoder = TokenTimedDecoder(per_token=5e-4, batch_tokens=64, n_seq_max=8)
    scheduler = Scheduler(decoder)
    timeout = 0.6

    async def one(start: int) -> tuple[str, float]:
        began = time.monotonic()
        try:
            await scheduler.score(pairs(start, 16, length=16), timeout=timeout)
        except Overloaded as exc:
            assert exc.retry_after >= 1 and "would not finish in its time" in str(exc)
            return "refused", time.monotonic() - began
        return "served", time.monotonic() - began

    async def run() -> list[tuple[str, float]]:
        await scheduler.score(pairs(0, 4, length=16))  # the rate is measured on a first decode
        return await asyncio.gather(*(one(100 * (i + 1)) for i in range(12)))

    try:
        outcomes = asyncio.run(run())
    finally:
        scheduler.close()
    served = [t for kind, t in outcomes if kind == "served"]
    refused = [t for kind, t in outcomes if kind == "refused"]
    assert 2 <= len(served) <= 6 and len(served) + len(refused) == 12
    assert max(served) < timeout * 1.5, "what is admitted finishes about in time"
    assert max(refused) < 0.1, "a refusal comes at once"


def admission(*jobs: tuple[int, float | None]) -> list[str]:
    """Each job (pairs of 16 tokens, timeout) is sent after the one before is queued, while an engine
    at 2,000 tokens a second works: what was served and what refused."""
    decoder = TokenTimedDecoder(per_token=5e-4, batch_tokens=64, n_seq_max=8)
    scheduler = Scheduler(decoder)

    async def run() -> list[str]:
        await scheduler.score(pairs(0, 4, length=16))
        sent = []
        for n, (count, timeout) in enumerate(jobs):
            sent.append(asyncio.ensure_future(scheduler.score(pairs(1000 * (n + 1), count, length=16),
                                                              timeout=timeout)))
            await asyncio.sleep(0.005)
        done = await asyncio.gather(*sent, return_exceptions=True)
        return ["refused" if isinstance(d, Overloaded) else "served" for d in done]

    try:
        return asyncio.run(run())
    finally:
        scheduler.close()


def test_a_request_that_would_make_an_admitted_one_late_is_refused():
    """0.5 s of work due in 0.6 s, then 0.26 s more due in 10 s: the second would make the first late."""
    assert admission((64, 0.6), (32, 10.0)) == ["served", "refused"]


def test_without_deadlines_nothing_is_refused():
    assert admission((64, None), (64, None), (64, None)) == ["served"] * 3


def test_a_request_already_late_does_not_block_the_others():
    """The first cannot make its 0.05 s (an idle engine takes any request); the second is not its cause."""
    assert admission((64, 0.05), (4, 10.0)) == ["served", "served"]


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
