"""The scoring engine: a llama.cpp context driven through llama-cpp-python's C API.

The engine loads a model the header check let through (servable.py), makes pairs with the model's
own layout (pairs.py), decodes them in batches that llama.cpp accepts, and reads one relevance
score per pair: from rank pooling's classifier head, or for a causal reranker (causal.py: Qwen3,
mxbai-rerank-v2) from each pair's last hidden state and its two tokens' rows (classifier.py).
It knows nothing of HTTP; it is used from one thread at a time for decoding
(a llama context is not thread-safe), while tokenisation may run on any thread.
"""

from __future__ import annotations

import ctypes
import logging
import unicodedata
from collections.abc import Sequence
from pathlib import Path

import llama_cpp
import numpy as np

from ..scoring import ScoreKind
from ..settings import EngineSettings
from .backend import ensure_backend, usable_cores
from .batch import Batch
from .causal import causal_reranker
from .classifier import head_row, p_yes
from .gguf_info import GGUFInfo
from .layout import Layout, SpecialTokenLayout, TemplateLayout, Tokenize
from .pairs import PairMaker, truncation_for
from .servable import ModelLoadError, check_servable

log = logging.getLogger(__name__)

# Vocabularies whose reference tokenizer normalises text to NFC before splitting (tokenizer.json's
# `normalizer`), where llama.cpp's pre-tokenizer does not: Qwen2 and Qwen3's byte-level BPE. Written
# with combining accents (macOS file names, some PDF extractors), "été" is 1 token there and 4 here
# without it. SentencePiece vocabularies (XLM-R, gte) are normalised by llama.cpp itself, with the
# file's precompiled character map, and match without help (tests/test_tokens.py).
NFC_PRE_TOKENIZERS = frozenset({"qwen2"})
SPLIT_MODES = {"none": llama_cpp.LLAMA_SPLIT_MODE_NONE, "layer": llama_cpp.LLAMA_SPLIT_MODE_LAYER,
               "row": llama_cpp.LLAMA_SPLIT_MODE_ROW}
# llama.cpp splits a causal model's decode into ubatches of this size (its own default); the
# compute buffer grows with it, by n_vocab floats per token under rank pooling.
CAUSAL_UBATCH = 512
# llama.cpp reserves an output row of n_vocab floats per sequence for a causal model (600 KiB each
# for Qwen3): 256 sequences cost 148 MiB, 32 cost 19 MiB (measured), and a decode of a
# `batch_tokens` budget rarely holds more than a few documents' tails.
CAUSAL_SEQ_MAX = 32


def special_token_layout(info: GGUFInfo, vocab: llama_cpp.llama_vocab_p, tokenize: Tokenize) -> SpecialTokenLayout:
    """The vocabulary's add-token rules, repaired for XLM-R files converted before those keys existed.

    Without `tokenizer.ggml.add_*_token`, llama.cpp falls back to its defaults for a
    SentencePiece-unigram ("t5") vocabulary: no BOS, no SEP, which is not the
    `<s> q </s></s> d </s>` that XLM-R rerankers (bge, bce) were trained on.
    """
    bos = llama_cpp.llama_vocab_bos(vocab)
    eos = llama_cpp.llama_vocab_eos(vocab)
    sep = llama_cpp.llama_vocab_sep(vocab)
    add_bos = llama_cpp.llama_vocab_get_add_bos(vocab)
    add_eos = llama_cpp.llama_vocab_get_add_eos(vocab)
    add_sep = llama_cpp.llama_vocab_get_add_sep(vocab)
    if eos < 0:
        eos = sep  # llama-server's fallback for vocabularies without EOS
    keys_missing = info.add_bos is None and info.add_eos is None and info.add_sep is None
    if keys_missing and info.architecture == "bert" and info.tokenizer_model == "t5":
        log.warning("%s lacks the add-token keys: using the XLM-R pair layout <s> q </s></s> d </s>",
                    Path(info.path).name)
        add_bos, add_eos, add_sep = True, True, True
        if sep < 0:
            sep = eos
    query_end = tuple(t for t, on in ((eos, add_eos), (sep, add_sep)) if on and t >= 0)
    doc_end = (eos,) if add_eos and eos >= 0 else ()
    return SpecialTokenLayout(bos=bos if add_bos and bos >= 0 else None, query_end=query_end,
                              doc_end=doc_end, tokenize=tokenize)


class RerankEngine:
    """One loaded reranker and its llama.cpp context."""

    def __init__(self, info: GGUFInfo, settings: EngineSettings) -> None:
        check_servable(info)
        ensure_backend()
        self.info = info
        self.settings = settings
        self._model = self._load_model(info.path, settings)
        try:
            self._vocab = llama_cpp.llama_model_get_vocab(self._model)
            self._nfc = info.pre_tokenizer in NFC_PRE_TOKENIZERS
            self.max_pair_tokens = self._context_size(settings)
            self.batch_tokens = settings.batch_tokens
            self.reranker = causal_reranker(info)
            self.causal = self.reranker is not None
            self.n_embd = llama_cpp.llama_model_n_embd(self._model)
            self.head = self._head_row()
            self._ctx = self._new_context(settings)
        except BaseException:
            llama_cpp.llama_model_free(self._model)
            raise
        self.n_seq_max = llama_cpp.llama_n_seq_max(self._ctx)
        self.max_decode_tokens = llama_cpp.llama_n_batch(self._ctx)
        template = self.reranker.template if self.reranker and self.reranker.template else info.rerank_template
        self.layout: Layout = (
            TemplateLayout(template, self._tokenize,
                           settings.instruction or (self.reranker.default_instruction if self.reranker else None),
                           self.reranker.instruction if self.reranker else "{instruction}") if template
            else special_token_layout(info, self._vocab, self._tokenize)
        )
        self.pairs = PairMaker(self.layout, self.max_pair_tokens, info.unknown_token,
                               truncation_for(info.architecture, info.tokenizer_model))
        self._batch = Batch(self.max_decode_tokens, all_outputs=self.head is None)
        self._memory = llama_cpp.llama_get_memory(self._ctx)
        self._cached_prefix: np.ndarray | None = None

    # -- loading ---------------------------------------------------------------------------

    @staticmethod
    def _load_model(path: str, settings: EngineSettings) -> llama_cpp.llama_model_p:
        params = llama_cpp.llama_model_default_params()
        params.n_gpu_layers = settings.gpu_layers
        params.use_mmap = settings.use_mmap
        params.main_gpu = settings.main_gpu
        params.split_mode = SPLIT_MODES[settings.split_mode]
        # llama.cpp reads one proportion per device it may use; the array lives until the load returns.
        split = (ctypes.c_float * llama_cpp.llama_max_devices())(*settings.tensor_split[:llama_cpp.llama_max_devices()])
        if settings.tensor_split:
            params.tensor_split = split
        model = llama_cpp.llama_model_load_from_file(str(path).encode(), params)
        if not model:
            raise ModelLoadError(
                f"llama.cpp could not load {Path(path).name}: its architecture or tensor types "
                f"are not supported by this llama.cpp version (see the log above)."
            )
        return model

    def _head_row(self) -> np.ndarray | None:
        """A causal reranker's w_positive - w_negative (or w_positive); None keeps llama.cpp's rank
        head (Qwen3's `cls.output` in a type not read here)."""
        if self.reranker is None:
            return None
        tokens = [t for t in (self.reranker.positive, self.reranker.negative) if t is not None]
        ids = [self._tokenize(token, False) for token in tokens]
        if any(len(t) != 1 for t in ids):
            raise ModelLoadError(f"{Path(self.info.path).name}: {' and '.join(map(repr, tokens))} are not "
                                 f"single tokens of its vocabulary, so it is no {self.reranker.family} reranker")
        row = head_row(self.info, self.reranker.rows, tuple(t[0] for t in ids), self.n_embd)
        if row is None and self.reranker.rows == "lm_head":
            raise ModelLoadError(f"{Path(self.info.path).name}: the LM head's rows cannot be read "
                                 f"(its tensor type is not one this server reads)")
        return row

    def _context_size(self, settings: EngineSettings) -> int:
        """The longest pair: the setting, else the trained context; never past a position table.

        llama-box clamps an encoder's context the same way; llama.cpp itself does not, and a pair
        longer than the table aborts the process (GPUStack always passes `--ctx-size 8192`).
        """
        trained = llama_cpp.llama_model_n_ctx_train(self._model)
        if settings.ctx_size is None:
            return trained if trained > 0 else 512
        if self.info.absolute_positions and settings.ctx_size > trained > 0:
            log.warning("--ctx-size %d is more than the %d positions %s was trained with (a learned "
                        "position table); pairs are limited to %d tokens",
                        settings.ctx_size, trained, Path(self.info.path).name, trained)
            return trained
        return settings.ctx_size

    def _new_context(self, settings: EngineSettings) -> llama_cpp.llama_context_p:
        params = llama_cpp.llama_context_default_params()
        # A non-causal model must see a whole pair in one ubatch (llama.cpp aborts otherwise), and
        # one decode packs up to `batch_tokens`: the batch (and a causal model's KV cache) holds both.
        size = max(self.max_pair_tokens, self.batch_tokens)
        params.n_batch = size
        params.n_ubatch = min(size, CAUSAL_UBATCH) if self.causal else size
        # A causal model's KV cache holds a shared prefix (at most a pair) beside the tails of one
        # decode (at most the budget), or one long pair alone.
        params.n_ctx = self.max_pair_tokens + self.batch_tokens if self.causal else size
        params.n_seq_max = min(llama_cpp.llama_max_parallel_sequences(), self.batch_tokens,
                               CAUSAL_SEQ_MAX if self.causal else self.batch_tokens)
        params.kv_unified = True
        params.embeddings = True
        # A causal reranker's head is applied to the last hidden states (classifier.py): unpooled embeddings,
        # of the tokens the batch marks only (the project's patch); else llama.cpp's rank head.
        params.pooling_type = (llama_cpp.LLAMA_POOLING_TYPE_NONE if self.head is not None
                               else llama_cpp.LLAMA_POOLING_TYPE_RANK)
        params.flash_attn_type = (
            llama_cpp.LLAMA_FLASH_ATTN_TYPE_ENABLED if settings.flash_attn
            else llama_cpp.LLAMA_FLASH_ATTN_TYPE_DISABLED
        )
        # llama.cpp's default of 4 threads oversubscribes a 2-core machine; use the cores we may run on.
        threads = settings.threads or usable_cores()
        params.n_threads = params.n_threads_batch = threads
        ctx = llama_cpp.llama_init_from_model(self._model, params)
        if not ctx:
            raise ModelLoadError(
                f"llama.cpp could not create a context of {self.max_pair_tokens} tokens for "
                f"{Path(self.info.path).name}; try a smaller --ctx-size."
            )
        return ctx

    def close(self) -> None:
        if self._ctx:
            llama_cpp.llama_free(self._ctx)
            self._ctx = None
        if self._model:
            llama_cpp.llama_model_free(self._model)
            self._model = None

    # -- tokens ----------------------------------------------------------------------------

    def tokenize(self, text: str) -> list[int]:
        """Tokens of a text without special tokens; text that looks like a special token stays text."""
        return self._tokenize(text, False)

    def _tokenize(self, text: str, parse_special: bool) -> list[int]:
        if self._nfc and not unicodedata.is_normalized("NFC", text):
            text = unicodedata.normalize("NFC", text)
        data = text.encode("utf-8", errors="replace")
        capacity = len(data) + 8
        buffer = (llama_cpp.llama_token * capacity)()
        n = llama_cpp.llama_tokenize(self._vocab, data, len(data), buffer, capacity, False, parse_special)
        if n < 0:
            capacity = -n
            buffer = (llama_cpp.llama_token * capacity)()
            n = llama_cpp.llama_tokenize(self._vocab, data, len(data), buffer, capacity, False, parse_special)
        return buffer[:n]

    @property
    def score_kind(self) -> ScoreKind:
        """A causal reranker's own (Qwen3's head ends in a softmax over yes/no: P(yes)); else a logit."""
        return self.reranker.kind if self.reranker else "logit"

    # -- scoring ---------------------------------------------------------------------------

    def decode(self, pairs: Sequence[np.ndarray], shared_prefix: int = 0) -> np.ndarray:
        """One score per pair from a single llama_decode. Call from one thread at a time.

        With `shared_prefix` (a causal model, pairs of one request), the first `shared_prefix`
        tokens, equal in every pair, are evaluated once and kept in the KV cache; each pair then
        evaluates only its own tail. The sizes are checked here, before llama.cpp sees them: a
        non-causal model aborts the whole process (GGML_ASSERT) when a decode holds more tokens
        than the ubatch, which for it is the whole batch.
        """
        shared_prefix = shared_prefix if self.causal else 0
        total = sum(len(p) for p in pairs) - shared_prefix * len(pairs)
        if (not pairs or total > self.max_decode_tokens or len(pairs) + (shared_prefix > 0) > self.n_seq_max
                or any(len(p) <= shared_prefix for p in pairs)):
            raise ValueError(
                f"a decode of {len(pairs)} pairs and {total} tokens exceeds the context's limits "
                f"({self.n_seq_max} sequences, {self.max_decode_tokens} tokens)"
            )
        if shared_prefix:
            return self._decode_after_prefix(pairs, shared_prefix)
        if self._memory:
            # A causal model keeps a KV cache: no pair may see another batch's tokens.
            llama_cpp.llama_memory_clear(self._memory, True)
            self._cached_prefix = None
        self._batch.fill(pairs)
        return self._run(first_seq=0, count=len(pairs))

    def _decode_after_prefix(self, pairs: Sequence[np.ndarray], shared_prefix: int) -> np.ndarray:
        prefix = pairs[0][:shared_prefix]
        if self._cached_prefix is None or not np.array_equal(self._cached_prefix, prefix):
            llama_cpp.llama_memory_clear(self._memory, True)
            self._cached_prefix = None
            self._batch.fill([prefix])  # sequence 0 holds the prefix
            self._run(first_seq=0, count=0)
            self._cached_prefix = prefix.copy()
        for seq in range(1, len(pairs) + 1):
            llama_cpp.llama_memory_seq_cp(self._memory, 0, seq, -1, -1)
        self._batch.fill([p[shared_prefix:] for p in pairs], first_pos=shared_prefix, first_seq=1)
        try:
            return self._run(first_seq=1, count=len(pairs))
        finally:
            for seq in range(1, len(pairs) + 1):
                llama_cpp.llama_memory_seq_rm(self._memory, seq, -1, -1)

    def _run(self, first_seq: int, count: int) -> np.ndarray:
        status = llama_cpp.llama_decode(self._ctx, self._batch.struct)
        if status != 0:
            raise RuntimeError(f"llama_decode failed with status {status}")
        out = np.empty(count, dtype=np.float32)
        if self.head is not None:
            for i, end in enumerate(self._batch.ends[:count]):
                hidden = llama_cpp.llama_get_embeddings_ith(self._ctx, int(end))
                out[i] = np.ctypeslib.as_array(hidden, shape=(self.n_embd,)) @ self.head
            return p_yes(out) if self.score_kind == "probability" else out
        for i in range(count):
            out[i] = llama_cpp.llama_get_embeddings_seq(self._ctx, first_seq + i)[0]
        return out


