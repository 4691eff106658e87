"""`python -m server`: flags, and start-up failures that exit with one clear message."""

from __future__ import annotations

import httpx
import numpy as np
import pytest

from server.config import ConfigError, ServerConfig, field_flags, parse_args
from server.provision.catalog import DEFAULT_CATALOG, load_catalog
from server.provision.plan import engine_settings

from .conftest import ROOT, TOLERANCE, XLMR, XLMR_EMBED, RunningServer, case


def test_flags_and_defaults():
    assert parse_args([], environ={}) == ServerConfig()
    config = parse_args(["--model", "m.gguf", "--host", "0.0.0.0", "--port", "9000", "--alias", "r",
                         "--ctx-size", "256", "--threads", "2", "--gpu-layers", "99"], environ={})
    assert (config.models, config.host, config.port, config.aliases) == (["m.gguf"], "0.0.0.0", 9000, ["r"])
    assert (config.ctx_size, config.threads, config.gpu_layers) == (256, 2, 99)
    entry = load_catalog(DEFAULT_CATALOG).models["bge-reranker-v2-m3"]
    settings = engine_settings(config, entry)
    assert settings.ctx_size == 256 and settings.threads == 2 and settings.gpu_layers == 99
    assert engine_settings(parse_args([], environ={}), entry).ctx_size == entry.context_length == 8192


def test_the_gpustack_llama_box_command_line_is_accepted(caplog):
    argv = ["--host", "0.0.0.0", "--embeddings", "--gpu-layers", "33", "--parallel", "1", "--ctx-size", "8192",
            "--port", "40001", "--model", "/models/bge.gguf", "--alias", "bge-reranker-v2-m3", "--no-mmap",
            "--no-warmup", "--rerank"]
    config = parse_args(argv, environ={})
    assert (config.host, config.gpu_layers, config.ctx_size, config.port) == ("0.0.0.0", 33, 8192, 40001)
    assert (config.models, config.aliases, config.use_mmap) == (["/models/bge.gguf"], ["bge-reranker-v2-m3"], False)
    warned = caplog.text
    assert "--embeddings has no effect here" in warned and "--parallel has no effect here" in warned


GPUSTACK_071_ARGV = ["--host", "0.0.0.0", "--embeddings", "--gpu-layers", "-1", "--parallel", "1", "--ctx-size",
                     "8192", "--port", "40000", "--model", "/models/bge.gguf", "--alias", "bge-reranker-v2-m3",
                     "--no-mmap", "--no-warmup", "--rerank", "--tensor-split", "2048,1024"]
"""What GPUStack 0.7.1's LlamaBoxServer.start() gives llama-box for a reranker on two GPUs (captured
from its own code: gpustack/worker/backends/llama_box.py)."""


def test_llama_box_flags_are_mapped_or_skipped_with_a_warning(caplog):
    config = parse_args([*GPUSTACK_071_ARGV, "--verbose", "-lv", "3", "--temp", "0.8", "--seed=42", "-sm", "row",
                         "--main-gpu", "1", "--pooling", "rank", "--lora-scaled", "a.gguf", "0.5", "--mmap"],
                        environ={})
    assert (config.gpu_layers, config.tensor_split, config.split_mode, config.main_gpu) == (-1, "2048,1024", "row", 1)
    assert config.log_level == "debug" and config.use_mmap is True and config.normalize == "on"
    settings = engine_settings(config, None)
    assert settings.tensor_split == (2048.0, 1024.0) and (settings.split_mode, settings.main_gpu) == ("row", 1)
    assert "llama-box flags with no effect here, skipped: -lv 3 --temp 0.8 --seed=42 --pooling rank " \
           "--lora-scaled a.gguf 0.5" in caplog.text
    assert parse_args(["--tensor-split", "3/1"], environ={}).tensor_split == "3/1"
    with pytest.raises(ConfigError, match="--tensor-split"):
        parse_args(["--tensor-split", "half"], environ={})
    with pytest.raises(SystemExit) as exited:
        parse_args(["--ctx-sise", "512"], environ={})  # a typo of this server's flags is still an error
    assert exited.value.code == 2


def test_normalize_defaults_to_llama_boxs_with_its_command_line():
    """llama-box has read a missing `normalize` as true since v0.0.81: started with its command line
    (`--rerank`), the server does the same unless told; otherwise raw logits."""
    assert parse_args([], environ={}).normalize is None
    assert parse_args(["--rerank"], environ={}).normalize == "on"
    assert parse_args(["--rerank", "--normalize", "off"], environ={}).normalize == "off"
    assert parse_args(["--rerank"], environ={"RERANK_NORMALIZE": "off"}).normalize == "off"
    assert parse_args(["--normalize", "on"], environ={}).normalize == "on"


def test_started_by_gpustacks_llama_box_line_it_answers_as_llama_box_did(reference):
    """GPUStack 0.7.1's argv (two GPUs' tensor split, here on CPU): /v1/rerank answers llama-box's
    normalised scores unless the request says otherwise, and the process stays up."""
    c = case(reference, "panda")
    srv = RunningServer(*[str(XLMR) if a == "/models/bge.gguf" else a for a in GPUSTACK_071_ARGV
                          if a not in ("--port", "40000")])
    try:
        srv.wait_ready()
        body = {"query": c["query"], "documents": c["documents"]}
        unset = httpx.post(f"{srv.url}/v1/rerank", json=body).json()
        normalized = httpx.post(f"{srv.url}/v1/rerank", json={**body, "normalize": True}).json()
        raw = httpx.post(f"{srv.url}/v1/rerank", json={**body, "normalize": False}).json()
    finally:
        srv.stop()
    assert unset["results"] == normalized["results"] and unset["usage"] == normalized["usage"]
    assert all(0.001 <= r["relevance_score"] <= 0.999 for r in unset["results"])
    scores = {r["index"]: r["relevance_score"] for r in raw["results"]}
    np.testing.assert_allclose([scores[i] for i in range(len(c["documents"]))], c["scores"], atol=TOLERANCE)
    assert unset["model"] == "bge-reranker-v2-m3"


def test_short_flags_and_environment():
    config = parse_args(["-m", "a.gguf", "-a", "x", "-c", "64", "-ngl", "2", "-np", "4", "-b", "2048",
                         "-ub", "256", "-t", "2", "-fa", "off"], environ={"RERANK_PORT": "7001"})
    assert (config.models, config.aliases, config.ctx_size, config.gpu_layers) == (["a.gguf"], ["x"], 64, 2)
    assert (config.batch_tokens, config.threads, config.flash_attn, config.port) == (256, 2, False, 7001)
    env = {"RERANK_MODEL": "a.gguf,b.gguf", "RERANK_API_KEY": "k1,k2", "RERANK_CTX_SIZE": "128",
           "RERANK_PORT": "7002"}
    config = parse_args(["--port", "7003"], environ=env)
    assert (config.models, config.api_keys, config.ctx_size) == (["a.gguf", "b.gguf"], ["k1", "k2"], 128)
    assert config.port == 7003, "the command line wins over the environment"
    with pytest.raises(ConfigError, match="RERANK_PORT='x' is not a valid int"):
        parse_args([], environ={"RERANK_PORT": "x"})


def test_api_key_file(tmp_path):
    keys = tmp_path / "keys"
    keys.write_text("# operators\nk-one\n\n  k-two  \n")
    config = parse_args(["--api-key", "k0", "--api-key-file", str(keys)], environ={})
    assert config.api_keys == ["k0", "k-one", "k-two"]
    with pytest.raises(ConfigError, match="--api-key-file: cannot read"):
        parse_args(["--api-key-file", str(tmp_path / "none")], environ={})


@pytest.mark.parametrize("argv,flag", [
    (["--ctx-size", "0"], "--ctx-size"),
    (["--threads", "-1"], "--threads"),
    (["--port", "70000"], "--port"),
])
def test_invalid_flag_values_name_the_flag(argv, flag):
    with pytest.raises(ConfigError, match=flag):
        parse_args(argv, environ={})


def run_to_exit(*args: str) -> tuple[int, str]:
    return RunningServer(*args).wait_exit()


def test_a_gguf_without_rank_head_fails_at_start_up():
    code, out = run_to_exit("--model", str(XLMR_EMBED))
    assert code == 1
    assert "xlmr-tiny-embed-f32.gguf is not a reranker" in out and "Traceback" not in out


def test_an_unknown_model_fails_at_start_up():
    code, out = run_to_exit("--model", "no-such-reranker")
    assert code == 1 and "is none of: a catalog name" in out


def test_ctx_size_and_alias(reference):
    c = case(reference, "long")
    srv = RunningServer("--model", str(XLMR), "--ctx-size", "64", "--alias", "short")
    try:
        srv.wait_ready()
        body = httpx.post(f"{srv.url}/v1/rerank", json={"query": c["query"], "documents": c["documents"]}).json()
    finally:
        srv.stop()
    assert body["model"] == "short"
    lengths = [min(n, 64) for n in c["pair_tokens"]]
    assert body["usage"]["prompt_tokens"] == sum(lengths)


def test_a_file_that_is_not_gguf_fails_at_start_up(tmp_path):
    fake = tmp_path / "model.gguf"
    fake.write_bytes(b"GGUF\x03\x00\x00\x00" + b"\xff" * 10)
    code, out = run_to_exit("--model", str(fake))
    assert code == 1 and "model.gguf is not a readable GGUF file" in out and "Traceback" not in out


def test_the_readme_lists_every_flag_with_its_environment_variable():
    readme = (ROOT / "README.md").read_text()
    rows = [line.split("|")[1:3] for line in readme.splitlines() if line.startswith("| `--")]
    for spec, _, _ in field_flags().values():
        row = next((cells for cells in rows if f"`{spec.names[0]}`" in cells[0]), None)
        assert row is not None, f"README's flag table has no row for {spec.names[0]}"
        assert spec.variable() is None or f"`{spec.variable()}" in row[1], (spec.names[0], row)
