"""A causal reranker's two token rows, applied in Python to each pair's last hidden state.

llama.cpp's rank pooling makes every token an output, so its graph runs the LM head (151,936 rows)
over every token of every pair only to keep two numbers of the last one: about a tenth of
Qwen3-Reranker-4B's work per token, and n_vocab floats of compute buffer per token. Instead the
engine asks for unpooled embeddings of each pair's last token (the project's patch lets an unpooled
embeddings context output only the tokens a batch marks) and applies the rows here: for Qwen3
`cls.output`, P(yes) = softmax(W h)[0] = sigmoid((w_yes - w_no) . h), the arithmetic rank pooling
does; for the other families of causal.py the LM head's rows of their tokens.

The rows are read from the GGUF as stored and turned into floats by ggml's own row routines, so
every weight type llama.cpp can quantize them to is read exactly as the graph would read it.
"""

from __future__ import annotations

import ctypes
from functools import cache
from typing import Literal

import llama_cpp
import numpy as np
from llama_cpp import _ctypes_extensions

from .gguf_info import GGUFInfo, tensor_rows

# ggml's exported to-float routine of each stored type: f(const void * x, float * y, int64_t k).
_TO_FLOAT = {
    "F16": "ggml_fp16_to_fp32_row", "BF16": "ggml_bf16_to_fp32_row", "Q4_0": "dequantize_row_q4_0",
    "Q4_1": "dequantize_row_q4_1", "Q5_0": "dequantize_row_q5_0", "Q5_1": "dequantize_row_q5_1",
    "Q8_0": "dequantize_row_q8_0", "Q2_K": "dequantize_row_q2_K", "Q3_K": "dequantize_row_q3_K",
    "Q4_K": "dequantize_row_q4_K", "Q5_K": "dequantize_row_q5_K", "Q6_K": "dequantize_row_q6_K",
}


def head_row(info: GGUFInfo, rows: Literal["classifier", "lm_head"], token_ids: tuple[int, ...],
             n_embd: int) -> np.ndarray | None:
    """The row whose product with h is the score, in float32: w_positive - w_negative, from
    `cls.output`'s two rows or from the LM head's rows of the tokens (`output.weight`, else the token
    embedding a tied head reuses), or w_positive alone for a family scored by one token's logit; None
    if they cannot be read here (for Qwen3 the engine then keeps rank pooling)."""
    if rows == "classifier":
        tensor, wanted = "cls.output.weight", [0, 1]
    else:
        tensor, wanted = ("output.weight" if "output.weight" in info.tensors else "token_embd.weight"), list(token_ids)
    found = tensor_rows(info.path, {tensor: wanted})[tensor]
    if found is None:
        return None
    ggml_type, stored = found
    if ggml_type != "F32" and ggml_type not in _TO_FLOAT:
        return None
    positive, *negative = (_to_float(ggml_type, row, n_embd) for row in stored)
    return positive - negative[0] if negative else positive


def p_yes(yes_minus_no_logits: np.ndarray) -> np.ndarray:
    """The softmax over (yes, no), the sigmoid of their difference, in the input's precision."""
    return 0.5 * (1 + np.tanh(yes_minus_no_logits / 2))


def _to_float(ggml_type: str, row: bytes, n: int) -> np.ndarray:
    if ggml_type == "F32":
        return np.frombuffer(row, dtype=np.float32, count=n).copy()
    out = np.empty(n, dtype=np.float32)
    routine = getattr(_ggml_base(), _TO_FLOAT[ggml_type])
    routine.argtypes = [ctypes.c_char_p, ctypes.c_void_p, ctypes.c_int64]
    routine.restype = None
    routine(row, out.ctypes.data, n)
    return out


@cache
def _ggml_base() -> ctypes.CDLL:
    """The ggml library llama-cpp-python loaded (the same file, so the same routines)."""
    return _ctypes_extensions.load_shared_library("ggml-base", llama_cpp.llama_cpp._base_path)
