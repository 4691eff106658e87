"""mxbai-rerank-v2: a Qwen2 causal LM read from its "1" and "0" logits, one entry of the causal
rerankers of server/engine/causal.py beside Qwen3-Reranker.

The reference (`scripts/fixtures_mxbai.py`) is mixedbread's own package, mxbai-rerank 0.1.6: its
prepare_inputs() gives the token ids, its predict() the scores, on a tiny random-weight Qwen2
checkpoint with the real Qwen2/Qwen3 vocabulary. The checkpoint is converted here for real from the
stand-in hub under the catalog's repository name, as a plain Qwen2 LM.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest

from server.engine.causal import MXBAI_V2
from server.engine.context import RerankEngine
from server.engine.gguf_info import read_gguf_info
from server.provision.conversion import ConversionError, conversion_type
from server.settings import EngineSettings

from .conftest import FIXTURES, QWEN3_CHECKPOINT, RunningServer, assert_ranked_as, fetch_only
from .stand_in_hub import StandInHub, checkpoint_files
from .test_hub import hub_env

REPO = "mixedbread-ai/mxbai-rerank-base-v2"
MODEL = "mxbai-rerank-base-v2"
CHECKPOINT = FIXTURES / "mxbai-tiny-checkpoint"
# An F16 file (f16 KV cache and flash attention) against the package's float32 forward pass on the
# same f16-rounded weights: 3.9e-3 at most measured (7.3e-3 without flash attention), over logit
# differences spread across +-2.8.
TOLERANCE = 1e-2


@pytest.fixture(scope="module")
def reference() -> dict:
    return json.loads((FIXTURES / "mxbai-tiny.reference.json").read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def env(tmp_path_factory) -> Iterator[dict[str, str]]:
    tokenizer = {name: (QWEN3_CHECKPOINT / name).read_bytes() for name in ("tokenizer.json", "tokenizer_config.json")}
    hub = StandInHub({REPO: {**checkpoint_files(CHECKPOINT), **tokenizer}}).start()
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


def test_the_checkpoint_converts_as_a_plain_qwen2_lm_known_by_its_name(converted, engine):
    info = read_gguf_info(converted)
    assert info.architecture == "qwen2" and not info.has_rank_head and info.rerank_template is None
    assert engine.reranker is MXBAI_V2 and engine.causal and engine.score_kind == "logit"


@pytest.mark.parametrize("name", ["panda", "instruction", "whitespace"])
def test_tokens_and_scores_match_mxbai_reranks_own_package(engine, reference, name):
    c = next(c for c in reference["cases"] if c["name"] == name)
    pairs = engine.pairs.make(c["query"], c["documents"], truncate=True, instruction=c["instruction"])
    assert [p.tolist() for p in pairs] == c["token_ids"]
    scores = np.concatenate([engine.decode([p]) for p in pairs])
    np.testing.assert_allclose(scores, c["scores"], atol=TOLERANCE, rtol=0)
    assert np.argsort(-scores).tolist() == np.argsort(-np.array(c["scores"])).tolist()


def test_the_pairs_of_a_request_share_their_prefix(engine, reference):
    from server.engine.pairs import shared_prefix_length

    c = reference["cases"][0]
    pairs = engine.pairs.make(c["query"], c["documents"], truncate=True)
    prefix = shared_prefix_length(pairs)
    assert prefix > len(pairs[0]) // 3, "the chat prefix and the query are shared"
    np.testing.assert_allclose(engine.decode(pairs, prefix), c["scores"], atol=TOLERANCE, rtol=0)


def test_the_catalog_entry_is_served_over_http_on_every_scale(env, converted, reference):
    srv = RunningServer("--model", MODEL, env=env)
    try:
        srv.wait_ready(timeout=600)
        answers = [httpx.post(f"{srv.url}/v1/rerank", timeout=60, json={
            "query": c["query"], "documents": c["documents"],
            **({"instruction": c["instruction"]} if c["instruction"] else {})}).json() for c in reference["cases"]]
        panda = reference["cases"][0]
        score = httpx.post(f"{srv.url}/v1/score", timeout=60, json={"text_1": panda["query"],
                                                                     "text_2": panda["documents"]})
        card = httpx.get(f"{srv.url}/v1/models").json()["data"][0]
    finally:
        srv.stop()
    for c, body in zip(reference["cases"], answers):
        assert_ranked_as(body, c["scores"], sum(len(ids) for ids in c["token_ids"]), c["name"])
    # vLLM's score API answers probabilities: its from_2_way_softmax, sigmoid(l1 - l0)
    probabilities = [d["score"] for d in sorted(score.json()["data"], key=lambda d: d["index"])]
    np.testing.assert_allclose(probabilities, 1 / (1 + np.exp(-np.array(panda["scores"]))), atol=TOLERANCE)
    assert card["id"] == MODEL and card["meta"]["family"] == "mxbai" and card["meta"]["converted"] is True


def test_only_mxbai_rerank_checkpoints_convert_as_qwen2_rerankers():
    assert conversion_type("Qwen2ForCausalLM", REPO, None) == "F16"
    with pytest.raises(ConversionError, match="a Qwen2 language model, not an mxbai-rerank-v2 reranker"):
        conversion_type("Qwen2ForCausalLM", "Qwen/Qwen2.5-0.5B-Instruct", None)
