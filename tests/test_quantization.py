"""Weight types read from GGUF names as the hub's repositories spell them, and matched as users type them."""

from __future__ import annotations

import pytest

from server.provision.quantization import QuantizationError, canonical, choose_file, tag_of

# gpustack's file list for bge-reranker-v2-m3 (Q3_K_M there, Q3_K in most of its other repositories).
GPUSTACK = [f"bge-reranker-v2-m3-{t}.gguf" for t in
            ("FP16", "Q2_K", "Q3_K_M", "Q4_0", "Q4_K_M", "Q5_0", "Q5_K_M", "Q6_K", "Q8_0")] + ["README.md"]
PREFERRED = ("F16", "Q8_0")


@pytest.mark.parametrize("name,tag", [
    ("bge-reranker-v2-m3-FP16.gguf", "FP16"),
    ("qwen3-reranker-0.6b-q8_0.gguf", "q8_0"),                 # ggml-org
    ("Qwen3-Reranker-4B.Q4_K_M.gguf", "Q4_K_M"),               # dots, as some community repositories
    ("model-IQ4_XS.gguf", "IQ4_XS"),
    ("model-bf16.gguf", "bf16"),
    ("Q5_K_M/model.gguf", "Q5_K_M"),                           # the type as the folder's name
    ("model.gguf", None),
])
def test_tags_are_read_from_file_names(name, tag):
    assert tag_of(name) == tag


@pytest.mark.parametrize("spellings,same", [
    (("F16", "f16", "FP16", "fp16"), "F16"),
    (("Q8_0", "q8_0"), "Q8_0"),
    (("Q4_K", "Q4_K_M", "q4_k_m"), "Q4_K"),                    # llama-quantize's Q4_K is Q4_K_M
    (("Q3_K_S",), "Q3_K_S"),                                   # the small size is its own type
    (("Q6_K",), "Q6_K"),
])
def test_spellings_of_one_type_are_one_canonical_tag(spellings, same):
    assert {canonical(s) for s in spellings} == {same}


@pytest.mark.parametrize("wanted,file", [
    ("F16", "bge-reranker-v2-m3-FP16.gguf"),
    ("fp16", "bge-reranker-v2-m3-FP16.gguf"),
    ("q8_0", "bge-reranker-v2-m3-Q8_0.gguf"),
    ("Q3_K", "bge-reranker-v2-m3-Q3_K_M.gguf"),                # where only Q3_K_M exists
    ("Q4_K_M", "bge-reranker-v2-m3-Q4_K_M.gguf"),
    (None, "bge-reranker-v2-m3-FP16.gguf"),                    # nothing asked: the first preferred type
])
def test_a_file_is_chosen_by_its_tag(wanted, file):
    assert choose_file(GPUSTACK, wanted, PREFERRED, "gpustack/bge-reranker-v2-m3-GGUF") == file


def test_q3_k_m_finds_a_repository_s_q3_k():
    files = ["bce-reranker-base_v1-Q3_K.gguf", "bce-reranker-base_v1-FP16.gguf"]
    assert choose_file(files, "Q3_K_M", PREFERRED, "r") == "bce-reranker-base_v1-Q3_K.gguf"


def test_a_missing_tag_lists_the_tags_the_repository_has():
    with pytest.raises(QuantizationError) as err:
        choose_file(GPUSTACK, "Q5_1", PREFERRED, "gpustack/bge-reranker-v2-m3-GGUF")
    assert str(err.value) == ("gpustack/bge-reranker-v2-m3-GGUF has no Q5_1 file; it has "
                              "FP16, Q2_K, Q3_K_M, Q4_0, Q4_K_M, Q5_0, Q5_K_M, Q6_K, Q8_0")


def test_a_single_gguf_needs_no_tag_and_an_ambiguous_repository_asks_for_one():
    assert choose_file(["qwen3-reranker-0.6b-q8_0.gguf", "README.md"], None, PREFERRED, "r") == \
        "qwen3-reranker-0.6b-q8_0.gguf"
    with pytest.raises(QuantizationError, match=r"several GGUF files; choose one with :QUANT \(Q4_0, Q6_K\)"):
        choose_file(["m-Q4_0.gguf", "m-Q6_K.gguf"], None, PREFERRED, "r")
    with pytest.raises(QuantizationError, match="several Q8_0 files"):
        choose_file(["a-Q8_0.gguf", "b-q8_0.gguf"], "Q8_0", PREFERRED, "r")
    with pytest.raises(QuantizationError, match="r has no GGUF file"):
        choose_file(["config.json"], None, PREFERRED, "r")
