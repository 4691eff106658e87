"""`python -m server`: flags, and start-up failures that exit with one clear message."""

from __future__ import annotations

import httpx
import pytest

from server.config import ConfigError, ServerConfig, parse_args

from .conftest import XLMR, XLMR_EMBED, RunningServer, case


def test_flags_and_defaults():
    assert parse_args([]) == ServerConfig()
    config = parse_args(["--model", "m.gguf", "--host", "0.0.0.0", "--port", "9000", "--alias", "r",
                         "--ctx-size", "256", "--threads", "2", "--gpu-layers", "99"])
    assert (config.model, config.host, config.port, config.alias) == ("m.gguf", "0.0.0.0", 9000, "r")
    assert (config.ctx_size, config.threads, config.gpu_layers) == (256, 2, 99)
    settings = config.engine_settings(catalog_context=8192)
    assert settings.ctx_size == 256 and settings.threads == 2 and settings.gpu_layers == 99
    assert parse_args([]).engine_settings(catalog_context=8192).ctx_size == 8192


@pytest.mark.parametrize("argv,flag", [
    (["--ctx-size", "0"], "--ctx-size"),
    (["--threads", "-1"], "--threads"),
    (["--port", "70000"], "--port"),
])
def test_invalid_flag_values_name_the_flag(argv, flag):
    with pytest.raises(ConfigError, match=flag):
        parse_args(argv)


def run_to_exit(*args: str) -> tuple[int, str]:
    srv = RunningServer(*args)
    code = srv.proc.wait(timeout=60)
    return code, srv.proc.stdout.read()


def test_a_gguf_without_rank_head_fails_at_start_up():
    code, out = run_to_exit("--model", str(XLMR_EMBED))
    assert code == 1
    assert "xlmr-tiny-embed-f32.gguf is not a reranker" in out and "Traceback" not in out


def test_an_unknown_model_fails_at_start_up():
    code, out = run_to_exit("--model", "no-such-reranker")
    assert code == 1 and "neither a catalog model" in out


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
