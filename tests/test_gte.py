"""gte-multilingual-reranker-base (Alibaba's NewModel) on the project's patched llama.cpp.

The reference (`scripts/fixtures_gte.py`) is a float64 forward pass written from the model's
description, not from the patch: RoPE with NTK scaling at every length, post-LN layers, the gated
GELU FFN down(up * gelu(gate)) and the pooler + classifier head. Pairs of 700 to 1,600 tokens
exercise the scaled RoPE far past a few hundred positions.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Iterator

import httpx
import numpy as np
import pytest

from server.engine.context import RerankEngine
from server.engine.gguf_info import read_gguf_info
from server.engine.llama_build import UnpatchedEngineError, check_architectures, knows_architecture
from server.settings import EngineSettings

from .conftest import FIXTURES, GTE, TOLERANCE, TOLERANCE_NO_FLASH_ATTN, RunningServer, assert_ranked_as
from .stand_in_hub import StandInHub, checkpoint_files
from .test_hub import hub_env

GTE_LLAMABOX = FIXTURES / "gte-tiny-llamabox-f32.gguf"
GTE_CHECKPOINT = FIXTURES / "gte-tiny-checkpoint"
GTE_REPO = "Alibaba-NLP/gte-multilingual-reranker-base"
UNPREFIXED_REPO = "test-org/gte-tiny-unprefixed"


@pytest.fixture(scope="module")
def gte_reference() -> dict:
    return json.loads((FIXTURES / "gte-tiny.reference.json").read_text())


def engine_scores(engine: RerankEngine, c: dict) -> tuple[list[list[int]], np.ndarray]:
    pairs = engine.pairs.make(c["query"], c["documents"], truncate=False)
    return [p.tolist() for p in pairs], np.concatenate([engine.decode([p]) for p in pairs])


@pytest.mark.parametrize("flash_attn,tolerance", [(False, TOLERANCE_NO_FLASH_ATTN), (True, TOLERANCE)])
def test_gte_scores_match_the_independent_reference_at_short_and_long_lengths(gte_reference, flash_attn, tolerance):
    engine = RerankEngine(read_gguf_info(GTE), EngineSettings(flash_attn=flash_attn, ctx_size=2048))
    try:
        for c in gte_reference["cases"]:
            ids, scores = engine_scores(engine, c)
            assert ids == c["token_ids"], c["name"]
            np.testing.assert_allclose(scores, c["logits"], atol=tolerance, err_msg=c["name"])
            assert np.argsort(-scores).tolist() == np.argsort(-np.array(c["logits"])).tolist()
    finally:
        engine.close()
    assert max(gte_reference["cases"][-1]["lengths"]) > 1500


def without_prefix(safetensors: bytes) -> bytes:
    """The same checkpoint with `NewModel`'s tensor names (no `new.`): only the header changes."""
    (size,) = struct.unpack_from("<Q", safetensors)
    header = json.loads(safetensors[8:8 + size])
    renamed = {k.removeprefix("new."): v for k, v in header.items()}
    raw = json.dumps(renamed).encode()
    raw += b" " * (-len(raw) % 8)
    return struct.pack("<Q", len(raw)) + raw + safetensors[8 + size:]


@pytest.fixture(scope="module")
def hub() -> Iterator[StandInHub]:
    files = checkpoint_files(GTE_CHECKPOINT)
    server = StandInHub({
        GTE_REPO: files,
        UNPREFIXED_REPO: {**files, "model.safetensors": without_prefix(files["model.safetensors"])},
    }).start()
    yield server
    server.stop()


def test_the_catalog_entry_is_converted_from_the_checkpoint_and_served_over_http(hub, tmp_path, gte_reference):
    srv = RunningServer("--model", "gte-multilingual-reranker-base:F32", env=hub_env(tmp_path, hub.endpoint))
    try:
        srv.wait_ready(timeout=600)
        bodies = {c["name"]: httpx.post(f"{srv.url}/v1/rerank", timeout=120, json={
            "query": c["query"], "documents": c["documents"]}).json() for c in gte_reference["cases"]}
        card = httpx.get(f"{srv.url}/v1/models").json()["data"][0]
    finally:
        log = srv.stop()
    for c in gte_reference["cases"]:
        assert_ranked_as(bodies[c["name"]], c["logits"], sum(c["lengths"]), c["name"])
    assert card["id"] == "gte-multilingual-reranker-base"
    assert card["meta"]["repository"] == GTE_REPO and card["meta"]["converted"] is True
    assert "converting gte-multilingual-reranker-base to f32" in log


def test_a_checkpoint_without_the_new_prefix_converts_to_the_same_scores(hub, tmp_path, gte_reference):
    code, out = RunningServer("--model", f"{UNPREFIXED_REPO}:F32", "--fetch-only",
                              env=hub_env(tmp_path, hub.endpoint)).wait_exit(timeout=600)
    assert code == 0, out
    path = out.strip().splitlines()[-1].split("\t")[1]
    engine = RerankEngine(read_gguf_info(path), EngineSettings(flash_attn=False))
    try:
        c = gte_reference["cases"][0]
        ids, scores = engine_scores(engine, c)
    finally:
        engine.close()
    assert ids == c["token_ids"]
    np.testing.assert_allclose(scores, c["logits"], atol=TOLERANCE_NO_FLASH_ATTN)


def test_the_default_conversion_is_f32(hub, tmp_path):
    code, out = RunningServer("--model", "gte-multilingual-reranker-base", "--fetch-only",
                              env=hub_env(tmp_path, hub.endpoint)).wait_exit(timeout=600)
    assert code == 0, out
    info = read_gguf_info(out.strip().splitlines()[-1].split("\t")[1])
    assert (info.architecture, info.weight_type) == ("gte", "F32")


def test_llama_box_ggufs_are_refused_with_the_way_to_convert():
    code, out = RunningServer("--model", str(GTE_LLAMABOX)).wait_exit()
    assert code == 1
    assert "made by GPUStack's llama-box converter (architecture `new`)" in out
    assert "--model Alibaba-NLP/gte-multilingual-reranker-base" in out


def test_the_engine_knows_the_patched_architecture():
    assert knows_architecture("gte")
    assert not knows_architecture("new")
    check_architectures()


def test_an_engine_without_an_architecture_is_refused_with_how_to_rebuild():
    with pytest.raises(UnpatchedEngineError, match=r"without the project's patch .*architecture "
                                                   r"not-built-in\. Build it with `make clean install`"):
        check_architectures(("gte", "not-built-in"))
