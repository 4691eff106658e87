"""Prometheus metrics, in a registry owned by the application (no process-global state)."""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)


class _QueueDepth(Collector):
    """Read at scrape time, so the worker threads never touch a gauge."""

    def __init__(self, depths: Callable[[], dict[str, int]]) -> None:
        self._depths = depths

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily("rerank_queue_pairs", "Pairs waiting to be scored", labels=["model"])
        for model, depth in self._depths().items():
            family.add_metric([model], depth)
        yield family


class Metrics:
    def __init__(self, queue_depths: Callable[[], dict[str, int]]) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter("rerank_http_requests", "HTTP requests by route and status",
                                ["route", "method", "status"], registry=r)
        self.latency = Histogram("rerank_http_request_seconds", "HTTP request latency by route",
                                 ["route"], buckets=LATENCY_BUCKETS, registry=r)
        self.documents = Counter("rerank_documents", "Documents scored", ["model"], registry=r)
        self.tokens = Counter("rerank_prompt_tokens", "Tokens evaluated", ["model"], registry=r)
        self.batch_pairs = Histogram("rerank_batch_pairs", "Pairs per llama.cpp decode", ["model"],
                                     buckets=BATCH_BUCKETS, registry=r)
        self.batch_tokens = Histogram("rerank_batch_tokens", "Tokens per llama.cpp decode", ["model"],
                                      buckets=tuple(2 ** i for i in range(4, 15)), registry=r)
        self.load_seconds = Gauge("rerank_model_load_seconds", "Time taken to load the model", ["model"],
                                  registry=r)
        r.register(_QueueDepth(queue_depths))

    def observe_batch(self, model: str, pairs: int, tokens: int) -> None:
        self.batch_pairs.labels(model).observe(pairs)
        self.batch_tokens.labels(model).observe(tokens)

    def observe_rerank(self, model: str, documents: int, tokens: int) -> None:
        self.documents.labels(model).inc(documents)
        self.tokens.labels(model).inc(tokens)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)
