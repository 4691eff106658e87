"""The batching scheduler: one worker thread per model owns the engine and decodes pairs.

Requests hand their token pairs to `Scheduler.score` and await the scores without blocking the
event loop. The worker packs pairs of all waiting requests into decodes by a token budget,
taking one pair from each request in turn, so a 3-document request that arrives behind a
1,000-document one is finished after a few decodes instead of waiting for the whole queue.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections import deque
from collections.abc import Callable, Sequence
from typing import Protocol

import numpy as np

from .faults import QueueFull, SchedulerClosed

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

    __slots__ = ("pairs", "shared_prefix", "scores", "next", "remaining", "future", "loop", "cancelled")

    def __init__(self, pairs: Sequence[np.ndarray], shared_prefix: int, loop: asyncio.AbstractEventLoop) -> None:
        self.pairs = pairs
        self.shared_prefix = shared_prefix
        self.scores = np.empty(len(pairs), dtype=np.float32)
        self.next = 0
        self.remaining = len(pairs)
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
        self._wake = threading.Condition()
        self._closed = False
        self._thread = threading.Thread(target=self._run, name=f"scheduler-{name}", daemon=True)
        self._thread.start()

    async def score(self, pairs: Sequence[np.ndarray], shared_prefix: int = 0) -> np.ndarray:
        """The scores of `pairs`, in order. Cancelling the caller drops its unscored pairs.

        `shared_prefix` tokens begin every pair alike; a causal engine evaluates them once.
        """
        if not pairs:
            return np.empty(0, dtype=np.float32)
        job = _Job(pairs, shared_prefix if self._engine.causal else 0, asyncio.get_running_loop())
        with self._wake:
            if self._closed:
                raise SchedulerClosed("the server is shutting down")
            queued = self._queued_pairs()
            # An empty queue takes any request, so one larger than the bound still gets served.
            if self._max_queued is not None and queued and queued + len(pairs) > self._max_queued:
                raise QueueFull(f"{queued} pairs are waiting; the queue holds {self._max_queued}")
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
        try:
            scores = self._engine.decode(pairs, shared_prefix)
        except Exception as exc:  # an engine fault fails these requests, not the server
            log.exception("decode of %d pairs failed", len(picked))
            for job in {job for job, _ in picked}:
                job.deliver(exc)
                job.cancelled = True
            return
        for (job, i), score in zip(picked, scores):
            job.scores[i] = score
            job.remaining -= 1
            if job.remaining == 0:
                job.deliver(job.scores)
