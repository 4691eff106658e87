"""ModernBERT cross-encoders (gte-reranker-modernbert-base): converted by the patched converter and
scored as transformers' ModernBertForSequenceClassification scores them.

The fixture (`scripts/fixtures_modernbert.py`) is a tiny checkpoint of the real architecture, with
alternating global and sliding-window attention whose window the pairs cross, and GPT-2's real
byte-level BPE vocabulary in ModernBERT's tokenizer shape. It is converted here for real from the
stand-in hub: under the catalog's repository name with mean pooling (gte-reranker-modernbert-base's),
and under another name with CLS pooling (ModernBERT's default).
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

from .conftest import FIXTURES, RunningServer, assert_ranked_as, fetch_only
from .stand_in_hub import StandInHub, checkpoint_files
from .test_hub import hub_env

REPO = "Alibaba-NLP/gte-reranker-modernbert-base"
MODEL = "gte-reranker-modernbert-base"
CLS_REPO = "example/modernbert-cls-reranker"
CHECKPOINT = FIXTURES / "modernbert-tiny-checkpoint"
# An F32 file against transformers in float32 (eager attention), over scores spread across -4.2 to
# 3.2. Without flash attention the graph is exact: 5.1e-6 at most measured (upstream's tanh GELU was
# 2.4e-3 to 5.5e-3 off on a 3-layer version of this fixture). Flash attention, which computes in
# f16, is 1.2e-2 off at most (CLS pooling; 6.9e-3 with mean pooling).
TOLERANCE = {False: 1e-4, True: 2e-2}
CASES = ["panda", "awkward", "long", "cut", "cut-query"]


@pytest.fixture(scope="module")
def reference() -> dict:
    return json.loads((FIXTURES / "modernbert-tiny.reference.json").read_text(encoding="utf-8"))["poolings"]


@pytest.fixture(scope="module")
def env(tmp_path_factory) -> Iterator[dict[str, str]]:
    files = checkpoint_files(CHECKPOINT)
    config = json.loads(files["config.json"])
    cls_files = {**files, "config.json": json.dumps({**config, "classifier_pooling": "cls"}).encode()}
    hub = StandInHub({REPO: files, CLS_REPO: cls_files}).start()
    yield hub_env(tmp_path_factory.mktemp("hf"), hub.endpoint)
    hub.stop()


@pytest.fixture(scope="module")
def converted(env) -> dict[str, Path]:
    return {"mean": fetch_only(MODEL, env), "cls": fetch_only(CLS_REPO, env)}


def scores_of(path: Path, c: dict, **settings) -> tuple[list[list[int]], np.ndarray]:
    engine = RerankEngine(read_gguf_info(path), EngineSettings(ctx_size=c.get("max_length"), **settings))
    try:
        pairs = engine.pairs.make(c["query"], c["documents"], truncate=True)
        return [p.tolist() for p in pairs], np.concatenate([engine.decode([p]) for p in pairs])
    finally:
        engine.close()


def test_the_checkpoint_converts_to_modern_bert_with_its_head(converted):
    info = read_gguf_info(converted["mean"])
    assert info.architecture == "modern-bert" and info.has_rank_head and info.pre_tokenizer == "modern-bert"


@pytest.mark.parametrize("flash_attn", [False, True])
@pytest.mark.parametrize("pooling", ["mean", "cls"])
@pytest.mark.parametrize("name", CASES)
def test_tokens_and_scores_match_transformers(converted, reference, pooling, name, flash_attn):
    c = next(c for c in reference[pooling] if c["name"] == name)
    ids, scores = scores_of(converted[pooling], c, flash_attn=flash_attn)
    assert ids == c["token_ids"]
    np.testing.assert_allclose(scores, c["scores"], atol=TOLERANCE[flash_attn], rtol=0)
    assert np.argsort(-scores).tolist() == np.argsort(-np.array(c["scores"])).tolist()


def test_the_catalog_entry_is_served_over_http(env, converted, reference):
    srv = RunningServer("--model", MODEL, env=env)
    cases = [c for c in reference["mean"] if "max_length" not in c]
    try:
        srv.wait_ready(timeout=600)
        answers = [httpx.post(f"{srv.url}/v1/rerank", timeout=60,
                              json={"query": c["query"], "documents": c["documents"]}).json() for c in cases]
        card = httpx.get(f"{srv.url}/v1/models").json()["data"][0]
    finally:
        srv.stop()
    for c, body in zip(cases, answers):
        assert_ranked_as(body, c["scores"], sum(len(ids) for ids in c["token_ids"]), c["name"], TOLERANCE[True])
    assert card["id"] == MODEL and card["meta"]["family"] == "modernbert" and card["meta"]["converted"] is True
