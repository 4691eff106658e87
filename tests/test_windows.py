"""Long documents in windows: the spans, the pairs, the limit, and windows as ordinary pairs."""

from __future__ import annotations

import asyncio
import itertools
import json
import threading
from collections.abc import Iterator

import httpx
import numpy as np
import pytest

from server.engine.context import RerankEngine
from server.engine.gguf_info import read_gguf_info
from server.engine.windows import WindowPlan, cohere_chunks, plan_for, window_spans
from server.faults import TooManyWindows
from server.jobs import RerankJob
from server.rerank import ServedModel, rerank
from server.settings import EngineSettings

from .conftest import FIXTURES, QWEN3, TOLERANCE, XLMR, XLMR_JINA_V2, RunningServer, case


def bcembedding_spans(length: int, room: int, overlap: int) -> list[tuple[int, int]]:
    """BCEmbedding 0.1.5's loop (BCEmbedding/models/utils.py, reranker_tokenize_preproc), as written."""
    if length <= room:
        return [(0, length)]
    overlap = min(overlap, room // 4)
    spans, start = [], 0
    while start < length:
        end = start + room
        spans.append((start, min(end, length)))
        start = end - overlap if end < length else end
    return spans


@pytest.mark.parametrize("room,overlap", [(10, 80), (100, 80), (101, 25), (7, 3), (400, 80)])
def test_spans_are_bcembeddings(room, overlap):
    for length in range(1, 5 * room + 7):
        assert window_spans(length, room, overlap, "short") == bcembedding_spans(length, room, overlap)


@pytest.mark.parametrize("length,room", [(1, 10), (10, 10), (11, 10), (95, 20), (400, 128)])
def test_an_aligned_last_window_is_full_length_and_ends_the_document(length, room):
    spans = window_spans(length, room, 5, "aligned")
    assert spans[-1][1] == length and all(end - start == min(room, length) for start, end in spans)
    assert [s for s, _ in spans] == sorted(s for s, _ in spans)
    covered = set(itertools.chain.from_iterable(range(s, e) for s, e in spans))
    assert covered == set(range(length)), "every token is in a window"


def test_a_document_that_fits_is_one_pair_as_when_truncating(engine, reference):
    c = case(reference, "panda")
    pairs, owners = engine.pairs.windows(c["query"], c["documents"], WindowPlan())
    assert owners == [0, 1, 2]
    assert [p.tolist() for p in pairs] == [p.tolist() for p in engine.pairs.make(c["query"], c["documents"], True)]


def test_windows_hold_the_query_and_consecutive_pieces_of_the_document(engine, reference):
    c = case(reference, "long")  # the second document is 1,625 characters, the context 128 tokens
    plan = WindowPlan(overlap=16)
    pairs, owners = engine.pairs.windows(c["query"], c["documents"], plan)
    truncated = engine.pairs.make(c["query"], c["documents"], True)
    head = truncated[1][: truncated[1].tolist().index(2) + 2]  # <s> query </s></s>
    windows = [p for p, owner in zip(pairs, owners, strict=True) if owner == 1]
    assert len(windows) > 2 and owners.count(0) == owners.count(2) == 1
    assert all(len(w) <= engine.max_pair_tokens and w[: len(head)].tolist() == head.tolist() for w in windows)
    assert windows[0].tolist() == truncated[1].tolist(), "the first window is the truncated pair"
    pieces = [w[len(head):-1].tolist() for w in windows]
    assert all(a[-16:] == b[:16] for a, b in itertools.pairwise(pieces)), "consecutive windows overlap by 16"


def test_too_many_windows_is_refused_before_any_scoring(engine, reference):
    c = case(reference, "long")
    with pytest.raises(TooManyWindows, match="document 1 needs .* windows .* more than the limit of 2"):
        engine.pairs.windows(c["query"], c["documents"], WindowPlan(max_windows=2))


class GatedEngine:
    """The real engine, recording the pair lengths of each decode; the first decode waits for the
    gate, so the test decides what is queued while it runs."""

    def __init__(self, engine: RerankEngine) -> None:
        self._engine = engine
        self.decodes: list[list[int]] = []
        self.first_decode = threading.Event()
        self.gate = threading.Event()

    def __getattr__(self, name: str):
        return getattr(self._engine, name)

    def decode(self, pairs, shared_prefix=0):
        self.first_decode.set()
        self.gate.wait(10)
        self.decodes.append([len(p) for p in pairs])
        return self._engine.decode(pairs, shared_prefix)


def test_windows_are_batched_with_other_requests_pairs(reference):
    """While a long document's first windows decode, a short request arrives; the next decode
    holds pairs of both (the scheduler takes round-robin), and the long document scores as its
    best window."""
    c = case(reference, "long")
    engine = RerankEngine(read_gguf_info(XLMR), EngineSettings(batch_tokens=512))
    gated = GatedEngine(engine)
    model = ServedModel("tiny", gated, long_documents="windows", windows=WindowPlan(overlap=16))
    short_documents = ["bamboo"] * 6

    async def long_then_short():
        long = asyncio.ensure_future(rerank(model, RerankJob(query=c["query"], documents=c["documents"])))
        await asyncio.to_thread(gated.first_decode.wait, 10)
        waiting = model.scheduler.queued_pairs
        short = asyncio.ensure_future(rerank(model, RerankJob(query="a panda?", documents=short_documents)))
        while model.scheduler.queued_pairs < waiting + len(short_documents):
            await asyncio.sleep(0.005)
        gated.gate.set()
        return await long, await short

    try:
        long, _ = asyncio.run(long_then_short())
        pairs, owners = engine.pairs.windows(c["query"], c["documents"], model.windows)
        short_length = len(engine.pairs.make("a panda?", ["bamboo"], True)[0])
        window_scores = [float(engine.decode([pair])[0]) for pair in pairs]
    finally:
        model.close()  # and the engine with it
    assert short_length not in gated.decodes[0]
    assert short_length in gated.decodes[1] and max(gated.decodes[1]) > short_length, gated.decodes
    best = {i: max(s for s, o in zip(window_scores, owners, strict=True) if o == i) for i in range(3)}
    # Flash attention rounds in f16, and the rounding depends on what shares the decode (6.3e-4 here).
    assert {r.index: r.score for r in long.ranked} == pytest.approx(best, abs=2e-3)
    assert long.prompt_tokens == sum(len(p) for p in pairs), "usage counts every window"


@pytest.fixture(scope="module")
def windows_server() -> Iterator[RunningServer]:
    srv = RunningServer("--model", str(XLMR), "--long-documents", "windows", "--window-overlap", "16",
                        "--max-windows-per-document", "8")
    srv.wait_ready()
    yield srv
    srv.stop()


def test_the_served_mode_and_the_request_field(windows_server, reference):
    c = case(reference, "long")
    url = f"{windows_server.url}/v1/rerank"
    meta = httpx.get(f"{windows_server.url}/v1/models").json()["data"][0]["meta"]
    assert meta["long_documents"] == "windows"
    windowed = httpx.post(url, json={"query": c["query"], "documents": c["documents"]}).json()
    truncated = httpx.post(url, json={"query": c["query"], "documents": c["documents"],
                                      "long_documents": "truncate"}).json()
    assert truncated["usage"]["prompt_tokens"] == sum(c["pair_tokens"])
    assert windowed["usage"]["prompt_tokens"] > truncated["usage"]["prompt_tokens"], "every window counts"
    scores = {mode: {r["index"]: r["relevance_score"] for r in body["results"]}
              for mode, body in (("windows", windowed), ("truncate", truncated))}
    assert scores["windows"][0] == pytest.approx(scores["truncate"][0], abs=1e-6), "short documents: one pair"
    assert scores["windows"][1] >= scores["truncate"][1] - 1e-6, "the first window is the truncated pair"
    tei = httpx.post(f"{windows_server.url}/rerank", json={"query": c["query"], "texts": c["documents"],
                                                          "raw_scores": True, "long_documents": "windows"}).json()
    assert {r["index"]: r["score"] for r in tei} == pytest.approx(scores["windows"], abs=1e-6)


def test_the_window_limit_is_a_413_and_truncate_false_is_still_a_400(windows_server, reference):
    c = case(reference, "long")
    r = httpx.post(f"{windows_server.url}/v1/rerank",
                   json={"query": c["query"], "documents": ["panda " * 2000]})
    assert r.status_code == 413 and "more than the limit of 8 per document" in r.json()["error"]["message"]
    r = httpx.post(f"{windows_server.url}/v1/rerank", json={"query": c["query"], "documents": c["documents"],
                                                            "long_documents": "truncate", "truncate": False})
    assert r.status_code == 400 and "document 1" in r.json()["error"]["message"]


# -- Against the models' own libraries (tests/fixtures/xlmr-tiny.windows.reference.json, made by
#    scripts/fixtures_windows.py: BCEmbedding 0.1.5 run as is, jina-v2's rerank() and Cohere's chunks).

@pytest.fixture(scope="module")
def windows_reference() -> dict:
    return json.loads((FIXTURES / "xlmr-tiny.windows.reference.json").read_text())["references"]


def windows_case(reference: dict, library: str, name: str) -> dict:
    return next(c for c in reference[library]["cases"] if c["name"] == name)


def check_windows(engine: RerankEngine, c: dict, plan: WindowPlan, max_doc_tokens: int | None = None) -> None:
    """Token ids of every window equal the library's; each document's best window scores as its."""
    pairs, owners = engine.pairs.windows(c["query"], c["documents"], plan, max_doc_tokens)
    assert [p.tolist() for p in pairs] == [w["input_ids"] for r in c["results"] for w in r["windows"]]
    assert owners == [r["index"] for r in c["results"] for _ in r["windows"]]
    scores = np.array([float(engine.decode([p])[0]) for p in pairs])
    best = [scores[np.array(owners) == r["index"]].max() for r in c["results"]]
    np.testing.assert_allclose(best, [r["best_logit"] for r in c["results"]], atol=TOLERANCE)
    np.testing.assert_allclose(1 / (1 + np.exp(-np.array(best))), [r["score"] for r in c["results"]],
                               atol=TOLERANCE)


@pytest.mark.parametrize("name", ["mixed", "near_refusal", "boundary", "tie"])
def test_bce_windows_are_bcembeddings(engine, windows_reference, name):
    c = windows_case(windows_reference, "bce", name)
    check_windows(engine, c, plan_for("bcembedding", c["overlap_tokens"], 32, c["max_length"]))


def test_a_query_bcembedding_refuses_is_scored_here(engine, windows_reference):
    """BCEmbedding asserts a window of more than 100 tokens; the service scores the request."""
    c = windows_case(windows_reference, "bce", "refused")
    assert c["refused"].startswith("AssertionError")
    pairs, owners = engine.pairs.windows(c["query"], c["documents"], plan_for("bcembedding", 80, 32, 128))
    assert len(pairs) >= 1 and set(owners) == {0}


@pytest.fixture(scope="module")
def jina_engine() -> Iterator[RerankEngine]:
    engine = RerankEngine(read_gguf_info(XLMR_JINA_V2), EngineSettings())
    yield engine
    engine.close()


@pytest.mark.parametrize("name", ["mixed", "long_query", "boundary", "tie"])
def test_jina_v2_windows_are_its_reranks(jina_engine, windows_reference, name):
    c = windows_case(windows_reference, "jina", name)
    assert c["max_query_length"] * 2 == c["max_length"], "jina's rerank() cuts the query to half a pair"
    check_windows(jina_engine, c, plan_for("jina", c["overlap_tokens"], 32, c["max_length"]))


@pytest.mark.parametrize("name", ["mixed", "long_query"])
def test_cohere_chunks_engine(engine, windows_reference, name):
    c = windows_case(windows_reference, "cohere", name)
    check_windows(engine, c, cohere_chunks(WindowPlan()), c["max_tokens_per_doc"])


def test_cohere_v2_scores_long_documents_by_their_best_chunk(server, windows_reference):
    c = windows_case(windows_reference, "cohere", "mixed")
    body = httpx.post(f"{server.url}/v2/rerank", json={"query": c["query"], "documents": c["documents"],
                                                       "max_tokens_per_doc": c["max_tokens_per_doc"]}).json()
    got = {r["index"]: r["relevance_score"] for r in body["results"]}
    np.testing.assert_allclose([got[r["index"]] for r in c["results"]], [r["score"] for r in c["results"]],
                               atol=TOLERANCE)
    assert body["meta"]["tokens"]["input_tokens"] == sum(len(w["input_ids"]) for r in c["results"]
                                                          for w in r["windows"])


def test_served_windows_score_and_count_as_bcembedding(windows_server, windows_reference):
    """The server started with --long-documents windows --window-overlap 16 (the boundary case's)."""
    c = windows_case(windows_reference, "bce", "boundary")
    body = httpx.post(f"{windows_server.url}/v1/rerank", json={"query": c["query"], "documents": c["documents"]}).json()
    got = {r["index"]: r["relevance_score"] for r in body["results"]}
    np.testing.assert_allclose([got[r["index"]] for r in c["results"]], [r["best_logit"] for r in c["results"]],
                               atol=TOLERANCE)
    assert body["usage"]["prompt_tokens"] == sum(len(w["input_ids"]) for r in c["results"] for w in r["windows"])
    ranked = sorted(c["results"], key=lambda r: -r["score"])
    assert [r["index"] for r in body["results"]] == [r["index"] for r in ranked]


def test_qwen3_windows_share_the_template_and_query_prefix():
    """A causal model's windows are one request's pairs: they share the template head and the
    query (evaluated once, kept in the KV cache), and score as each window does alone."""
    engine = RerankEngine(read_gguf_info(QWEN3), EngineSettings())
    gated = GatedEngine(engine)
    gated.gate.set()
    model = ServedModel("qwen3", gated, long_documents="windows", windows=WindowPlan(overlap=8, pair_tokens=160))
    document = " ".join(["Giant pandas eat bamboo shoots and leaves, and sometimes other grasses."] * 12)
    job = RerankJob(query="What do giant pandas eat?", documents=[document, "Pandas eat bamboo."])
    prefixes: list[int] = []
    decode = engine.decode

    def recording_decode(pairs, shared_prefix=0):
        prefixes.append(shared_prefix)
        return decode(pairs, shared_prefix)

    engine.decode = recording_decode
    try:
        outcome = asyncio.run(rerank(model, job))
        pairs, owners = engine.pairs.windows(job.query, job.documents, model.windows)
        alone = [float(decode([p])[0]) for p in pairs]
        head = len(engine.layout.for_query(job.query, None).head)  # the template and the query
    finally:
        model.close()  # and the engine with it
    assert owners.count(0) > 2, "the long document is several windows"
    assert prefixes and min(prefixes) >= head, (prefixes, head)
    best = {i: max(s for s, o in zip(alone, owners, strict=True) if o == i) for i in (0, 1)}
    # Decoding tails after a cached prefix rounds differently in f16 (SHARED_PREFIX_TOLERANCE in test_qwen3).
    assert {r.index: r.score for r in outcome.ranked} == pytest.approx(best, abs=5e-3)
