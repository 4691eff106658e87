"""models.yaml: every entry valid, and a typo is a clear error at start-up."""

from __future__ import annotations

import pytest

from server.provision.catalog import CatalogError, load_catalog
from server.provision.conversion import ConverterEnv
from server.provision.sources import ModelSourceError, resolve_model

FAMILIES = {"bge", "bce", "jina", "jina-v2", "gte", "qwen3"}
PRODUCT_MODELS = {
    "bge-reranker-v2-m3", "bge-reranker-base", "bce-reranker-base_v1", "jina-reranker-v1-tiny-en",
    "jina-reranker-v1-turbo-en", "jina-reranker-v2-base-multilingual", "gte-multilingual-reranker-base",
    "Qwen3-Reranker-0.6B", "Qwen3-Reranker-4B", "Qwen3-Reranker-8B",
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
