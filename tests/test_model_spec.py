"""`--model` in every form users type elsewhere, parsed before anything is fetched."""

from __future__ import annotations

import pytest

from server.provision.catalog import load_catalog
from server.provision.model_spec import ModelSpecError, parse_model_spec

from .conftest import ROOT, XLMR

CATALOG = load_catalog()


@pytest.mark.parametrize("text,kind,repo,quantization,filename,served", [
    ("bge-reranker-v2-m3", "catalog", "gpustack/bge-reranker-v2-m3-GGUF", None, None, "bge-reranker-v2-m3"),
    ("bge-reranker-v2-m3:Q8_0", "catalog", "gpustack/bge-reranker-v2-m3-GGUF", "Q8_0", None, "bge-reranker-v2-m3"),
    ("qwen3-reranker-4b", "catalog", "Qwen/Qwen3-Reranker-4B", None, None, "Qwen3-Reranker-4B"),
    ("gpustack/bce-reranker-base_v1-GGUF:Q4_K_M", "repo", "gpustack/bce-reranker-base_v1-GGUF", "Q4_K_M", None,
     "bce-reranker-base_v1"),
    ("ggml-org/Qwen3-Reranker-0.6B-Q8_0-GGUF", "repo", "ggml-org/Qwen3-Reranker-0.6B-Q8_0-GGUF", None, None,
     "Qwen3-Reranker-0.6B-Q8_0"),
    ("Qwen/Qwen3-Reranker-8B", "repo", "Qwen/Qwen3-Reranker-8B", None, None, "Qwen3-Reranker-8B"),
    ("someone/my-reranker-GGUF/sub/my-reranker-Q6_K.gguf", "file", "someone/my-reranker-GGUF", None,
     "sub/my-reranker-Q6_K.gguf", "my-reranker"),
])
def test_hub_forms(text, kind, repo, quantization, filename, served):
    spec = parse_model_spec(text, CATALOG)
    assert (spec.kind, spec.repo, spec.quantization, spec.filename, spec.served_name) == \
        (kind, repo, quantization, filename, served)


def test_a_repository_the_catalog_knows_keeps_its_entry():
    spec = parse_model_spec("gpustack/bge-reranker-v2-m3-GGUF:Q4_K_M", CATALOG)
    assert spec.kind == "repo" and spec.entry == CATALOG.models["bge-reranker-v2-m3"]
    assert parse_model_spec("Qwen/Qwen3-Reranker-4B", CATALOG).entry.instruction


def test_local_files_win_over_every_other_reading(monkeypatch):
    monkeypatch.chdir(ROOT)
    relative = str(XLMR.relative_to(ROOT))   # tests/fixtures/xlmr-tiny-f32.gguf: three parts, like a hub file
    spec = parse_model_spec(relative, CATALOG)
    assert spec.kind == "local" and spec.path == str(XLMR) and spec.served_name == "xlmr-tiny-f32"


@pytest.mark.parametrize("text,fragment", [
    ("/models/missing.gguf", "no such model file"),
    ("./missing.gguf", "no such model file"),
    ("models/missing.gguf", "no such model file"),
    ("no-such-model", "is none of: a catalog name"),
    ("a/b/c", "is none of"),
])
def test_what_names_nothing_is_refused(text, fragment):
    with pytest.raises(ModelSpecError, match=fragment):
        parse_model_spec(text, CATALOG)
