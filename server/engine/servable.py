"""Which GGUFs this engine serves faithfully, and the advice for those it refuses, decided from the
header before llama.cpp loads anything."""

from __future__ import annotations

from pathlib import Path

from .causal import QWEN3, causal_reranker
from .gguf_info import RANK_HEAD_TENSORS, GGUFInfo


class ModelLoadError(RuntimeError):
    """The file cannot be served; the message says why and what to do."""


CONVERT_QWEN3 = (
    "Serve the original checkpoint instead, which this server converts with llama.cpp's own "
    "converter: `--model Qwen/Qwen3-Reranker-4B` (or -0.6B, -8B, or your fine-tune's repository; "
    "ahead of time: `make convert MODEL=Qwen/Qwen3-Reranker-4B`)."
)

CONVERT_BERT = (
    "Serve the original checkpoint instead, which this server converts with the pooler kept: "
    "`--model cross-encoder/ms-marco-MiniLM-L6-v2` (or your fine-tune's repository; ahead of time: "
    "`make convert MODEL=cross-encoder/ms-marco-MiniLM-L6-v2`)."
)


def check_servable(info: GGUFInfo) -> None:
    """Refuse, before loading, a GGUF that llama.cpp would score silently wrong."""
    name = Path(info.path).name
    reranker = causal_reranker(info)
    if reranker is QWEN3 and "cls.output.weight" not in info.tensors:
        raise ModelLoadError(
            f"{name} is a {info.architecture} model without the tensor cls.output.weight (the yes/no "
            f"classifier head of Qwen3-Reranker): community conversions lack it and score near zero. "
            f"{CONVERT_QWEN3}"
        )
    if reranker is QWEN3 and not info.rerank_template:
        raise ModelLoadError(
            f"{name} has a classifier head but no tokenizer.chat_template.rerank, so the prompt the "
            f"model was trained on is unknown. {CONVERT_QWEN3}"
        )
    if info.architecture == "new":
        raise ModelLoadError(
            f"{name} is a GGUF of gte-multilingual-reranker made by GPUStack's llama-box converter "
            f"(architecture `new`): its RoPE base is written with a formula that loses the model's "
            f"own (which one depends on the llama-box version) and llama-box ran its FFN as SwiGLU, "
            f"so this file cannot be scored faithfully. Serve the original checkpoint, converted "
            f"here: --model Alibaba-NLP/gte-multilingual-reranker-base (or the catalog name "
            f"gte-multilingual-reranker-base)."
        )
    if not info.has_rank_head and reranker is None:
        raise ModelLoadError(
            f"{name} is not a reranker: it has no classification head "
            f"(none of the tensors {', '.join(RANK_HEAD_TENSORS)}), so llama.cpp's rank pooling "
            f"would return meaningless scores. Serve a reranker GGUF instead (the causal rerankers read "
            f"from token logits, mxbai-rerank-v2 and bge-reranker-v2-gemma, are known by their names: "
            f"`--model mixedbread-ai/mxbai-rerank-base-v2` or `--model BAAI/bge-reranker-v2-gemma` "
            f"converts one)."
        )
    if info.architecture == "bert" and info.tokenizer_model == "bert" and "cls.weight" not in info.tensors:
        raise ModelLoadError(
            f"{name} is a BERT cross-encoder (WordPiece vocabulary) whose classifier lacks BERT's "
            f"pooler: upstream llama.cpp's converter drops it, so every score would be wrong. "
            f"{CONVERT_BERT}"
        )
