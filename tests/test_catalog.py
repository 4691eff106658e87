"""models.yaml: every entry valid, and a typo is a clear error at start-up."""

from __future__ import annotations

import pytest

from server.provision.catalog import CatalogError, load_catalog
from server.provision.conversion import ConverterEnv
from server.provision.sources import ModelSourceError, resolve_model

from .conftest import XLMR

FAMILIES = {"bge", "bce", "jina", "jina-v2", "gte", "qwen3", "cross-encoder", "mxbai", "bge-gemma", "modernbert"}
PRODUCT_MODELS = {
    "bge-reranker-v2-m3", "bge-reranker-base", "bce-reranker-base_v1", "jina-reranker-v1-tiny-en",
    "jina-reranker-v1-turbo-en", "jina-reranker-v2-base-multilingual", "gte-multilingual-reranker-base",
    "Qwen3-Reranker-0.6B", "Qwen3-Reranker-4B", "Qwen3-Reranker-8B",
    "ms-marco-MiniLM-L6-v2", "ms-marco-MiniLM-L12-v2", "ms-marco-TinyBERT-L2-v2",
    "mxbai-rerank-base-v2", "mxbai-rerank-large-v2", "bge-reranker-v2-gemma",
    "gte-reranker-modernbert-base",
}


def test_the_catalog_lists_the_product_models():
    catalog = load_catalog()
    assert set(catalog.models) == PRODUCT_MODELS
    assert catalog.default == "bge-reranker-v2-m3"
    assert {e.family for e in catalog.models.values()} == FAMILIES
    assert all(e.instruction for e in catalog.models.values() if e.family == "qwen3")


VALID_ENTRY = "    repo: a/b\n    family: bge\n    context_length: 512\n    quantization: F16\n"


@pytest.mark.parametrize("text,fragment", [
    ("default: x\nmodels:\n  x:\n" + VALID_ENTRY + "    contxt_length: 5\n", "model 'x': Object contains unknown field `contxt_length`"),
    ("default: x\nmodels:\n  x:\n" + VALID_ENTRY.replace("bge", "bert"), "model 'x': Invalid enum value 'bert' - at `$.family`"),
    ("default: x\nmodels:\n  x:\n" + VALID_ENTRY.replace("512", "-1"), "model 'x': Expected `int` >= 1 - at `$.context_length`"),
    ("default: x\nmodels:\n  x:\n" + VALID_ENTRY.replace("a/b", "a b"), "model 'x': Expected `str` matching regex"),
    ("default: y\nmodels:\n  x:\n" + VALID_ENTRY, "the default model 'y' is not an entry"),
    ("default: x\nmodels: [\n", "models.yaml"),
])
def test_catalog_typos_are_clear_errors(tmp_path, text, fragment):
    path = tmp_path / "models.yaml"
    path.write_text(text)
    with pytest.raises(CatalogError) as err:
        load_catalog(path)
    assert fragment in str(err.value) and str(path) in str(err.value)


def test_unknown_names_and_missing_files():
    catalog = load_catalog()
    with pytest.raises(ModelSourceError, match="is none of: a catalog name"):
        resolve_model("no-such-model", catalog, ConverterEnv())
    with pytest.raises(ModelSourceError, match="no such model file"):
        resolve_model("/nowhere/model.gguf", catalog, ConverterEnv())


def test_a_folder_of_gguf_files_serves_the_preferred_one(tmp_path):
    """A downloaded GGUF repository as a folder (GPUStack v2's {{model_path}}): its file is chosen as
    in a repository, by `:QUANT`'s order of preference."""
    catalog = load_catalog()
    folder = tmp_path / "gpustack" / "bge-reranker-v2-m3-GGUF"
    folder.mkdir(parents=True)
    for name in ("bge-reranker-v2-m3-Q4_K_M.gguf", "bge-reranker-v2-m3-Q8_0.gguf", "bge-reranker-v2-m3-FP16.gguf"):
        (folder / name).symlink_to(XLMR)
    source = resolve_model(str(folder), catalog, ConverterEnv())
    assert (source.name, source.path, source.quantization) == (
        "bge-reranker-v2-m3", str(folder / "bge-reranker-v2-m3-FP16.gguf"), "F16")
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "README.md").write_text("no model here")
    with pytest.raises(ModelSourceError, match="holds neither GGUF files nor a Hugging Face checkpoint"):
        resolve_model(str(empty), catalog, ConverterEnv())
