"""Causal rerankers read from token logits, each described by data: which tokens, which formula,
which prompt. One mechanism serves them all: the engine asks llama.cpp for each pair's last hidden
state h and scores (w_positive - w_negative) . h, the difference of two tokens' logits, or
w_positive . h, one token's logit, with the rows of those tokens (classifier.py reads them as stored).

- Qwen3-Reranker: "yes" against "no", P(yes) = sigmoid(difference), the rows llama.cpp's converter
  keeps as `cls.output` and the prompt it writes as the GGUF's `rerank` template (Qwen's model card).
- mxbai-rerank-v2 (Qwen2): "1" against "0", the raw difference, the rows of the LM head, the prompt
  of mixedbread's own package (`mxbai_rerank/mxbai_rerank_v2.py`, PyPI mxbai-rerank 0.1.6), whose
  pieces it tokenizes one by one.
- bge-reranker-v2-gemma (Gemma): the raw logit of "Yes", the rows of the LM head, the prompt of
  FlagEmbedding's `inference/reranker/decoder_only/base.py` (PyPI FlagEmbedding 1.4.2): `<bos>`,
  `A: {query}`, `\n`, `B: {document}`, `\n` and a task prompt, each tokenized alone.

Pure: no llama.cpp, so the header check (servable.py) can use it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from ..scoring import ScoreKind
from .gguf_info import GGUFInfo


@dataclass(frozen=True)
class CausalReranker:
    family: str
    positive: str
    negative: str | None
    """None: the score is the positive token's logit alone."""
    rows: Literal["classifier", "lm_head"]
    """Where the tokens' rows are: `cls.output` (rows 0 and 1), or the LM head (`output.weight`,
    or the token embedding it is tied to) at the tokens' ids."""
    kind: ScoreKind
    """`probability`: sigmoid of the difference (a 2-way softmax); `logit`: the difference itself."""
    template: tuple[str, ...] | None = None
    """The prompt as pieces tokenized separately, with `{query}`, `{document}` and `{instruction}`;
    None: the GGUF's `rerank` template."""
    instruction: str = "{instruction}"
    """What `{instruction}` becomes when a request or the catalog gives one."""
    default_instruction: str | None = None
    """The instruction when neither gives one (None: `{instruction}` becomes nothing)."""


QWEN3 = CausalReranker("qwen3", "yes", "no", rows="classifier", kind="probability")

MXBAI_V2 = CausalReranker(
    "mxbai-rerank-v2", "1", "0", rows="lm_head", kind="logit",
    template=(
        "<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\n"
        "<|im_start|>user\n",
        "{instruction}query: {query}",
        "\n",
        "document: {document}",
        "\n",
        "You are a search relevance expert who evaluates how well documents match search queries. For each "
        "query-document pair, carefully analyze the semantic relationship between them, then provide your binary "
        "relevance judgment (0 for not relevant, 1 for relevant).\nRelevance:",
        "<|im_end|>\n<|im_start|>assistant\n",
    ),
    instruction="instruction: {instruction}\n",
)

BGE_GEMMA = CausalReranker(
    "bge-reranker-v2-gemma", "Yes", None, rows="lm_head", kind="logit",
    template=("<bos>", "A: {query}", "\n", "B: {document}", "\n", "{instruction}"),
    default_instruction="Given a query A and a passage B, determine whether the passage contains an answer to the "
                        "query by providing a prediction of either 'Yes' or 'No'.",
)


def _squashed(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "", name.lower())


def causal_reranker(info: GGUFInfo) -> CausalReranker | None:
    """The family of a causal reranker GGUF. mxbai's and BAAI's checkpoints convert as plain LMs, so
    they are known by name (llama.cpp's converter writes the repository's, `Mxbai Rerank Base V2`,
    `Bge Reranker V2 Gemma`)."""
    if info.architecture in ("qwen3", "qwen3vl"):
        return QWEN3
    if info.architecture == "qwen2" and "mxbairerank" in _squashed(info.name):
        return MXBAI_V2
    if info.architecture == "gemma" and "bgereranker" in _squashed(info.name):
        return BGE_GEMMA
    return None
