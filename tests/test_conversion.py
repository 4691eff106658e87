"""Original checkpoints on the hub are converted once with llama.cpp's own converter and served.

The stand-in hub serves the tiny XLM-R reranker's Hugging Face checkpoint (the one its committed
transformers reference was computed from); the converter runs for real, in the environment
`make test` sets up with the same code the server uses on first use.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest

from server.engine.gguf_info import read_gguf_info

from .conftest import FIXTURES, QWEN3_CHECKPOINT, TOLERANCE, XLMR_CHECKPOINT, RunningServer, case
from .stand_in_hub import COMMIT, StandInHub, checkpoint_files
from .test_hub import hub_env
from .test_qwen3 import SERVED_TOLERANCE, qcase

CHECKPOINT_REPO = "test-org/xlmr-tiny"
# No README and a neutral config: the repository's name is all that tells llama.cpp's converter this
# Qwen3ForCausalLM is a reranker, as for Qwen/Qwen3-Reranker-4B and -8B.
QWEN3_REPO = "test-org/Qwen3-Reranker-tiny"
UNSUPPORTED_REPO = "test-org/bert-tiny"
PLAIN_QWEN3_REPO = "test-org/Qwen3-tiny"


@pytest.fixture
def hub() -> Iterator[StandInHub]:
    unsupported = {"config.json": json.dumps({"architectures": ["BertModel"]}).encode(),
                   "model.safetensors": b"weights that must not be downloaded"}
    plain_qwen3 = {"config.json": json.dumps({"architectures": ["Qwen3ForCausalLM"]}).encode(),
                   "model.safetensors": b"weights that must not be downloaded"}
    server = StandInHub({
        # An ONNX export in a folder, as real repositories carry, is not part of the checkpoint.
        CHECKPOINT_REPO: {**checkpoint_files(XLMR_CHECKPOINT), "onnx/model.onnx": b"not wanted"},
        QWEN3_REPO: checkpoint_files(QWEN3_CHECKPOINT),
        UNSUPPORTED_REPO: unsupported,
        PLAIN_QWEN3_REPO: plain_qwen3,
    }).start()
    yield server
    server.stop()


def converted_file(tmp_path: Path, quantization: str, repo: str = CHECKPOINT_REPO) -> Path:
    return (tmp_path / "hf" / "hub" / f"models--{repo.replace('/', '--')}" / "converted" / COMMIT
            / f"{repo.split('/')[1]}-{quantization}.gguf")


def test_a_checkpoint_is_converted_once_and_scores_like_its_reference(hub, tmp_path, reference):
    env = hub_env(tmp_path, hub.endpoint)
    srv = RunningServer("--model", f"{CHECKPOINT_REPO}:F32", env=env)
    try:
        srv.wait_ready(timeout=600)
        scores = {}
        for name in ("panda", "unicode", "many", "long"):
            c = case(reference, name)
            body = httpx.post(f"{srv.url}/v1/rerank", json={"query": c["query"], "documents": c["documents"]},
                              timeout=60).json()
            scores[name] = {r["index"]: r["relevance_score"] for r in body["results"]}
            assert body["usage"]["prompt_tokens"] == sum(c["pair_tokens"])
        card = httpx.get(f"{srv.url}/v1/models").json()["data"][0]
    finally:
        log = srv.stop()
    for name, got in scores.items():
        c = case(reference, name)
        np.testing.assert_allclose([got[i] for i in range(len(c["documents"]))], c["scores"], atol=TOLERANCE,
                                   err_msg=name)
    assert card["id"] == "xlmr-tiny"
    assert {k: card["meta"][k] for k in ("repository", "file", "quantization", "converted")} == {
        "repository": CHECKPOINT_REPO, "file": "xlmr-tiny-F32.gguf", "quantization": "F32", "converted": True}
    assert "converting xlmr-tiny to f32 with llama.cpp's convert_hf_to_gguf.py" in log
    assert "Model successfully exported" in log, "the converter's own progress is shown"
    assert not any("onnx" in path for path in hub.file_requests()), "only the checkpoint is downloaded"
    assert read_gguf_info(converted_file(tmp_path, "F32")).weight_type == "F32"

    # Converted once: the next start (here offline) serves the cached file without the converter.
    hub.requests.clear()
    code, out = RunningServer("--model", f"{CHECKPOINT_REPO}:F32", "--fetch-only",
                              env={**env, "HF_HUB_OFFLINE": "1"}).wait_exit()
    assert code == 0, out
    assert out.strip().endswith(str(converted_file(tmp_path, "F32")))
    assert "converting" not in out and hub.requests == []


def test_a_qwen3_reranker_checkpoint_is_converted_with_its_head_and_template(hub, tmp_path):
    reference = json.loads((FIXTURES / "qwen3-tiny.reference.json").read_text())
    srv = RunningServer("--model", f"{QWEN3_REPO}:F16", env=hub_env(tmp_path, hub.endpoint))
    try:
        srv.wait_ready(timeout=600)
        results = {}
        for name in ("default", "instruction"):
            c = qcase(reference, name)
            body = httpx.post(f"{srv.url}/v1/rerank", timeout=60, json={
                "query": c["query"], "documents": c["documents"], "instruction": c["instruction"]}).json()
            results[name] = body
        card = httpx.get(f"{srv.url}/v1/models").json()["data"][0]
    finally:
        srv.stop()
    for name, body in results.items():
        c = qcase(reference, name)
        got = {r["index"]: r["relevance_score"] for r in body["results"]}
        np.testing.assert_allclose([got[i] for i in range(len(c["documents"]))], c["scores"],
                                   atol=SERVED_TOLERANCE, err_msg=name)
        assert body["usage"]["prompt_tokens"] == sum(c["pair_tokens"])
    assert card["id"] == "Qwen3-Reranker-tiny" and card["meta"]["scores"] == "probability"
    info = read_gguf_info(converted_file(tmp_path, "F16", QWEN3_REPO))
    assert "cls.output.weight" in info.tensors and info.rerank_template


def test_a_qwen3_reranker_checkpoint_is_converted_to_f16_by_default(hub, tmp_path):
    code, out = RunningServer("--model", QWEN3_REPO, "--fetch-only",
                              env=hub_env(tmp_path, hub.endpoint)).wait_exit(timeout=600)
    assert code == 0, out
    assert out.strip().endswith(str(converted_file(tmp_path, "F16", QWEN3_REPO)))
    assert read_gguf_info(converted_file(tmp_path, "F16", QWEN3_REPO)).weight_type == "F16"


def test_an_encoder_checkpoint_is_converted_to_f32_by_default(hub, tmp_path):
    code, out = RunningServer("--model", CHECKPOINT_REPO, "--fetch-only",
                              env=hub_env(tmp_path, hub.endpoint)).wait_exit(timeout=600)
    assert code == 0, out
    assert out.strip().endswith(str(converted_file(tmp_path, "F32")))
    assert read_gguf_info(converted_file(tmp_path, "F32")).weight_type == "F32"


def test_types_the_converter_lacks_are_quantized_by_llama_cpp(hub, tmp_path):
    code, out = RunningServer("--model", f"{CHECKPOINT_REPO}:q4_k_m", "--fetch-only",
                              env=hub_env(tmp_path, hub.endpoint)).wait_exit(timeout=600)
    assert code == 0, out
    assert "quantizing to Q4_K_M" in out
    path = converted_file(tmp_path, "Q4_K_M")
    assert out.strip().endswith(str(path))
    # The tiny model's rows (32 wide) are too narrow for K-quants, so llama.cpp falls back to Q5_0/Q8_0
    # per tensor as llama-quantize does; the file is quantized, not F16.
    assert read_gguf_info(path).weight_type not in ("F16", "F32")


@pytest.mark.parametrize("repo,fragment", [
    (UNSUPPORTED_REPO, "test-org/bert-tiny is a BertModel checkpoint; this server converts only rerankers"),
    (PLAIN_QWEN3_REPO, "test-org/Qwen3-tiny is a Qwen3 language model, not a Qwen3-Reranker"),
])
def test_a_checkpoint_that_cannot_be_converted_is_named_before_its_weights_are_downloaded(hub, tmp_path, repo,
                                                                                          fragment):
    code, out = RunningServer("--model", repo, "--fetch-only", env=hub_env(tmp_path, hub.endpoint)).wait_exit()
    assert code == 1
    assert fragment in out
    assert hub.file_requests() == [f"/{repo}/resolve/main/config.json"]


def test_an_unknown_weight_type_is_refused(hub, tmp_path):
    code, out = RunningServer("--model", f"{CHECKPOINT_REPO}:Q9_9", "--fetch-only",
                              env=hub_env(tmp_path, hub.endpoint)).wait_exit()
    assert code == 1
    assert "cannot convert test-org/xlmr-tiny to Q9_9; weight types: F32, F16, BF16, Q8_0, Q2_K" in out
