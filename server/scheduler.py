"""The batching scheduler: one worker thread per model owns the engine and decodes pairs.

Requests hand their token pairs to `Scheduler.score` and await the scores without blocking the
event loop. The worker packs pairs of all waiting requests into decodes by a token budget,
taking one pair from each request in turn, so a 3-document request that arrives behind a
1,000-document one is finished after a few decodes instead of waiting for the whole queue.

Sharing the engine that way means that, past its capacity, every request slows down together
until all miss their deadlines. So a request with a deadline is admitted only if the tokens
waiting, at the rate the engine has been decoding, let it and every request already admitted
finish in time; otherwise it is refused at once, with the seconds after which to retry.
"""

from __future__ import annotations

import asyncio
import bisect
import logging
import math
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import Protocol

import numpy as np

from .faults import Overloaded, QueueFull, SchedulerClosed

log = logging.getLogger(__name__)

BatchObserver = Callable[[str, int, int], None]
"""Told (model name, pairs, tokens) of every decode, from the worker thread."""


class Decoder(Protocol):
    """What the scheduler needs of an engine."""

    batch_tokens: int
    n_seq_max: int
    causal: bool

    def decode(self, pairs: Sequence[np.ndarray], shared_prefix: int = 0) -> np.ndarray: ...


class _Job:
    """One request's pairs, the scores found so far, and where to deliver them."""

    __slots__ = ("pairs", "shared_prefix", "scores", "next", "remaining", "tokens_left", "deadline", "future",
                 "loop", "cancelled")

    def __init__(self, pairs: Sequence[np.ndarray], shared_prefix: int, loop: asyncio.AbstractEventLoop,
                 deadline: float | None = None) -> None:
        self.pairs = pairs
        self.shared_prefix = shared_prefix
        self.scores = np.empty(len(pairs), dtype=np.float32)
        self.next = 0
        self.remaining = len(pairs)
        self.tokens_left = sum(len(p) for p in pairs) - shared_prefix * len(pairs)
        """Tokens of the pairs not taken yet: the work this job still asks of the engine."""
        self.deadline = deadline
        """time.monotonic() by which the caller stops waiting; None: it waits as long as it takes."""
        self.loop = loop
        self.future: asyncio.Future[np.ndarray] = loop.create_future()
        self.cancelled = False

    def deliver(self, result: np.ndarray | BaseException) -> None:
        def settle() -> None:
            if self.future.done():
                return
            if isinstance(result, BaseException):
                self.future.set_exception(result)
            else:
                self.future.set_result(result)

        if self.cancelled or self.loop.is_closed():
            return  # nobody waits for this answer any more
        self.loop.call_soon_threadsafe(settle)


class Scheduler:
    """Queue, cross-request batching and fairness for one engine."""

    def __init__(self, engine: Decoder, name: str = "model", on_batch: BatchObserver | None = None,
                 max_queued_pairs: int | None = None) -> None:
        self._engine = engine
        self._max_queued = max_queued_pairs
        self._name = name
        self._on_batch = on_batch
        self._jobs: deque[_Job] = deque()
        self._rate: float | None = None
        """Tokens a second the engine has been decoding, a moving average; None until a decode is timed."""
        self._wake = threading.Condition()
        self._closed = False
        self._thread = threading.Thread(target=self._run, name=f"scheduler-{name}", daemon=True)
        self._thread.start()

    async def score(self, pairs: Sequence[np.ndarray], shared_prefix: int = 0,
                    timeout: float | None = None) -> np.ndarray:
        """The scores of `pairs`, in order. Cancelling the caller drops its unscored pairs.

        `shared_prefix` tokens begin every pair alike; a causal engine evaluates them once.
        `timeout`: the seconds the caller will wait, which admission keeps to (Overloaded if not).
        """
        if not pairs:
            return np.empty(0, dtype=np.float32)
        now = time.monotonic()
        job = _Job(pairs, shared_prefix if self._engine.causal else 0, asyncio.get_running_loop(),
                   None if timeout is None else now + timeout)
        with self._wake:
            if self._closed:
                raise SchedulerClosed("the server is shutting down")
            queued = self._queued_pairs()
            # An empty queue takes any request, so one larger than the bound still gets served.
            if self._max_queued is not None and queued and queued + len(pairs) > self._max_queued:
                raise QueueFull(f"{queued} pairs are waiting; the queue holds {self._max_queued}")
            self._admit(job, now)
            self._jobs.append(job)
            self._wake.notify()
        try:
            return await job.future
        except asyncio.CancelledError:
            job.cancelled = True
            raise

    @property
    def queued_pairs(self) -> int:
        with self._wake:
            return self._queued_pairs()

    def _queued_pairs(self) -> int:
        return sum(len(job.pairs) - job.next for job in self._jobs if not job.cancelled)

    def _admit(self, job: _Job, now: float) -> None:
        """Refuse `job` if, with the engine shared in turn, it would finish past its deadline or make
        a job that finishes in time without it finish late. Jobs already late do not count: the
        new one is not the cause. Each job's finish is estimated as processor sharing gives it: a
        job of w tokens waits for min(w, w_j) tokens of every other job j."""
        waiting = [j for j in self._jobs if not j.cancelled and j.tokens_left > 0]
        if self._rate is None or not waiting:
            return  # nothing measured yet, or the engine is free: any request is served
        works = sorted(j.tokens_left for j in waiting)
        before = np.concatenate([[0], np.cumsum(works)])  # before[i]: the i smallest works, summed

        def shared_finish(work: int) -> float:
            """Tokens decoded before a job of `work` tokens ends, among the waiting jobs."""
            i = bisect.bisect_right(works, work)
            return float(before[i] + work * (len(works) - i))

        rate, new_work = self._rate, job.tokens_left

        def made_late(other: _Job) -> bool:
            if other.deadline is None:
                return False
            finish = now + shared_finish(other.tokens_left) / rate
            return finish <= other.deadline < finish + min(new_work, other.tokens_left) / rate

        late = job.deadline is not None and now + (shared_finish(new_work) + new_work) / rate > job.deadline
        if late or any(made_late(other) for other in waiting):
            retry = max(1, min(60, math.ceil(before[-1] / self._rate)))
            raise Overloaded(f"{len(waiting)} requests hold {int(before[-1])} tokens of work, about "
                             f"{before[-1] / self._rate:.0f} s at this model's rate, and this one would not finish "
                             f"in its time; retry after {retry} s", retry)

    def close(self) -> None:
        """Stop after the decode under way; waiting requests fail with SchedulerClosed."""
        with self._wake:
            self._closed = True
            self._wake.notify()
        self._thread.join()

    # -- the worker thread -------------------------------------------------------------------

    def _run(self) -> None:
        while True:
            with self._wake:
                while not self._closed and not self._jobs:
                    self._wake.wait()
                if self._closed:
                    pending = list(self._jobs)
                    self._jobs.clear()
                    break
                picked = self._take_batch()
            if picked:
                self._decode(picked)
        for job in pending:
            job.deliver(SchedulerClosed("the server is shutting down"))

    def _take_batch(self) -> list[tuple[_Job, int]]:
        for job in [j for j in self._jobs if j.cancelled]:
            self._jobs.remove(job)
        if not self._jobs:
            return []
        picked = self._take_from_one_job() if self._engine.causal else self._take_round_robin()
        return self._rotate(picked)

    def _take_round_robin(self) -> list[tuple[_Job, int]]:
        """One pair from each waiting job in turn, within the token budget."""
        picked: list[tuple[_Job, int]] = []
        used = 0
        budget, max_seqs = self._engine.batch_tokens, self._engine.n_seq_max
        while True:
            progressed = False
            for job in self._jobs:
                if job.next >= len(job.pairs):
                    continue
                n = len(job.pairs[job.next])
                if picked and (used + n > budget or len(picked) >= max_seqs):
                    return picked
                picked.append((job, job.next))
                job.next += 1
                job.tokens_left -= n
                used += n
                progressed = True
            if not progressed:
                return picked

    def _take_from_one_job(self) -> list[tuple[_Job, int]]:
        """For a causal engine: pairs of the first job only, so they share its prefix in the KV
        cache; jobs still take turns, one decode each."""
        job = self._jobs[0]
        picked: list[tuple[_Job, int]] = []
        used = 0
        budget, max_seqs = self._engine.batch_tokens, self._engine.n_seq_max - 1  # one holds the prefix
        while job.next < len(job.pairs):
            n = len(job.pairs[job.next]) - job.shared_prefix
            if picked and (used + n > budget or len(picked) >= max_seqs):
                break
            picked.append((job, job.next))
            job.next += 1
            job.tokens_left -= n
            used += n
        return picked

    def _rotate(self, picked: list[tuple[_Job, int]]) -> list[tuple[_Job, int]]:
        """The next batch starts with the next job, so no request always goes first."""
        fully_taken = [job for job in self._jobs if job.next >= len(job.pairs)]
        for job in fully_taken:
            self._jobs.remove(job)
        if self._jobs:
            self._jobs.rotate(-1)
        return picked

    def _decode(self, picked: list[tuple[_Job, int]]) -> None:
        pairs = [job.pairs[i] for job, i in picked]
        if self._on_batch:
            self._on_batch(self._name, len(pairs), sum(len(p) for p in pairs))
        shared_prefix = picked[0][0].shared_prefix if self._engine.causal else 0
        started = time.perf_counter()
        try:
            scores = self._engine.decode(pairs, shared_prefix)
        except Exception as exc:  # an engine fault fails these requests, not the server
            log.exception("decode of %d pairs failed", len(picked))
            for job in {job for job, _ in picked}:
                job.deliver(exc)
                job.cancelled = True
            return
        self._measure(sum(len(p) for p in pairs) - shared_prefix * len(pairs), time.perf_counter() - started)
        for (job, i), score in zip(picked, scores):
            job.scores[i] = score
            job.remaining -= 1
            if job.remaining == 0:
                job.deliver(job.scores)

    def _measure(self, tokens: int, seconds: float) -> None:
        if seconds <= 0:
            return
        rate = tokens / seconds
        with self._wake:
            self._rate = rate if self._rate is None else 0.7 * self._rate + 0.3 * rate
