"""The scoring engine: a llama.cpp context driven through llama-cpp-python's C API.

The engine turns (query, documents) into token pairs laid out as the model was trained,
decodes them in batches that llama.cpp accepts, and reads one relevance score per pair: from
rank pooling's classifier head, or for Qwen3-Reranker from each pair's last hidden state and the
classifier's two rows (classifier.py).
It knows nothing of HTTP; it is used from one thread at a time for decoding
(a llama context is not thread-safe), while tokenisation may run on any thread.
"""

from __future__ import annotations

import ctypes
import logging
import os
import threading
from collections.abc import Sequence
from pathlib import Path

import llama_cpp
import numpy as np

from ..faults import InputError, InputTooLongError, TooManyWindows
from ..scoring import ScoreKind
from ..settings import EngineSettings
from .classifier import p_yes, yes_minus_no
from .gguf_info import RANK_HEAD_TENSORS, GGUFInfo
from .layout import InstructionNotSupported, Layout, SpecialTokenLayout, TemplateLayout, Tokenize
from .llama_build import check_architectures
from .windows import WindowPlan, window_spans

log = logging.getLogger(__name__)

llama_log = logging.getLogger("llama.cpp")
# ggml_log_level (ggml.h): 3 WARN, 4 ERROR; DEBUG and INFO are the load-time chatter of every model.
_GGML_LEVELS = {3: logging.WARNING, 4: logging.ERROR}


@llama_cpp.llama_log_callback
def _forward_llama_log(level: int, text: bytes, user_data: ctypes.c_void_p) -> None:
    """llama.cpp's warnings and errors go to Python logging; without a callback it prints
    hundreds of lines to stderr for every model it loads."""
    if level in _GGML_LEVELS and text.strip():
        llama_log.log(_GGML_LEVELS[level], text.decode("utf-8", errors="replace").rstrip())

# Architectures whose rank head ends in a softmax (llama-graph.cpp, LLAMA_POOLING_TYPE_RANK).
PROBABILITY_ARCHITECTURES = frozenset({"qwen3", "qwen3vl"})
# Causal rerankers keep a KV cache, so the pairs of a request can share their common prefix.
CAUSAL_ARCHITECTURES = PROBABILITY_ARCHITECTURES
# llama.cpp splits a causal model's decode into ubatches of this size (its own default); the
# compute buffer grows with it, by n_vocab floats per token under rank pooling.
CAUSAL_UBATCH = 512
# llama.cpp reserves an output row of n_vocab floats per sequence for a causal model (600 KiB each
# for Qwen3): 256 sequences cost 148 MiB, 32 cost 19 MiB (measured), and a decode of a
# `batch_tokens` budget rarely holds more than a few documents' tails.
CAUSAL_SEQ_MAX = 32

_backend_lock = threading.Lock()
_backend_ready = False


class ModelLoadError(RuntimeError):
    """The file cannot be served; the message says why and what to do."""


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


def usable_cores() -> int:
    if hasattr(os, "sched_getaffinity"):  # Linux: honours taskset and container CPU sets
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def ensure_backend() -> None:
    """Set up llama.cpp's backend and log callback, process-wide, once; refuse a llama.cpp built
    without the project's patch (llama_build.py)."""
    global _backend_ready
    with _backend_lock:
        if not _backend_ready:
            llama_cpp.llama_log_set(_forward_llama_log, ctypes.c_void_p(0))
            llama_cpp.llama_backend_init()
            check_architectures()
            _backend_ready = True


class _Batch:
    """A llama_batch whose arrays are numpy buffers owned here, so a batch is filled without a
    per-token Python loop and never freed by llama.cpp."""

    def __init__(self, capacity: int, all_outputs: bool) -> None:
        self.capacity = capacity
        self.all_outputs = all_outputs
        self.token = np.zeros(capacity, dtype=np.int32)
        self.pos = np.zeros(capacity, dtype=np.int32)
        self.n_seq_id = np.ones(capacity, dtype=np.int32)
        self.seq_id = np.zeros(capacity, dtype=np.int32)
        self.logits = np.zeros(capacity, dtype=np.int8)
        self.ends = np.zeros(0, dtype=np.int64)
        addresses = self.seq_id.ctypes.data + 4 * np.arange(capacity, dtype=np.uint64)
        self._seq_ptrs = addresses.astype(np.uint64)
        self.struct = llama_cpp.llama_batch()
        self.struct.token = self.token.ctypes.data_as(ctypes.POINTER(llama_cpp.llama_token))
        self.struct.embd = ctypes.POINTER(ctypes.c_float)()
        self.struct.pos = self.pos.ctypes.data_as(ctypes.POINTER(llama_cpp.llama_pos))
        self.struct.n_seq_id = self.n_seq_id.ctypes.data_as(ctypes.POINTER(ctypes.c_int32))
        self.struct.seq_id = ctypes.cast(
            self._seq_ptrs.ctypes.data, ctypes.POINTER(ctypes.POINTER(llama_cpp.llama_seq_id))
        )
        self.struct.logits = self.logits.ctypes.data_as(ctypes.POINTER(ctypes.c_int8))

    def fill(self, sequences: Sequence[np.ndarray], first_pos: int = 0, first_seq: int = 0) -> None:
        """Sequence i gets id `first_seq + i` and positions from `first_pos` (after a shared prefix).
        Pooling needs every token as an output; the hidden state is needed of each sequence's last token only."""
        lengths = np.fromiter((len(p) for p in sequences), dtype=np.int64, count=len(sequences))
        n = int(lengths.sum())
        self.ends = np.cumsum(lengths) - 1
        starts = np.repeat(self.ends + 1 - lengths, lengths)
        self.token[:n] = np.concatenate(sequences)
        self.pos[:n] = np.arange(n) - starts + first_pos
        self.seq_id[:n] = np.repeat(np.arange(first_seq, first_seq + len(sequences), dtype=np.int32), lengths)
        self.logits[:n] = self.all_outputs
        self.logits[self.ends] = 1
        self.struct.n_tokens = n


CONVERT_QWEN3 = (
    "Serve the original checkpoint instead, which this server converts with llama.cpp's own "
    "converter: `--model Qwen/Qwen3-Reranker-4B` (or -0.6B, -8B, or your fine-tune's repository; "
    "ahead of time: `make convert MODEL=Qwen/Qwen3-Reranker-4B`)."
)


def check_servable(info: GGUFInfo) -> None:
    """Refuse, before loading, a GGUF that llama.cpp would score silently wrong."""
    name = Path(info.path).name
    if info.architecture in PROBABILITY_ARCHITECTURES and "cls.output.weight" not in info.tensors:
        raise ModelLoadError(
            f"{name} is a {info.architecture} model without the tensor cls.output.weight (the yes/no "
            f"classifier head of Qwen3-Reranker): community conversions lack it and score near zero. "
            f"{CONVERT_QWEN3}"
        )
    if info.architecture in PROBABILITY_ARCHITECTURES and not info.rerank_template:
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
    if not info.has_rank_head:
        raise ModelLoadError(
            f"{name} is not a reranker: it has no classification head "
            f"(none of the tensors {', '.join(RANK_HEAD_TENSORS)}), so llama.cpp's rank pooling "
            f"would return meaningless scores. Serve a reranker GGUF instead."
        )
    if info.architecture == "bert" and info.tokenizer_model == "bert" and "cls.weight" not in info.tensors:
        raise ModelLoadError(
            f"{name} is a BERT cross-encoder (WordPiece vocabulary, classifier without its pooler): "
            f"llama.cpp's converter drops BERT's pooler and llama.cpp cannot pass token type ids, "
            f"so its scores would be wrong. Use an XLM-R reranker such as bge-reranker-v2-m3."
        )


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
            self.max_pair_tokens = self._context_size(settings)
            self.batch_tokens = settings.batch_tokens
            self.causal = info.architecture in CAUSAL_ARCHITECTURES
            self.n_embd = llama_cpp.llama_model_n_embd(self._model)
            self.head = yes_minus_no(info, self.n_embd) if info.architecture in PROBABILITY_ARCHITECTURES else None
            self._ctx = self._new_context(settings)
        except BaseException:
            llama_cpp.llama_model_free(self._model)
            raise
        self.n_seq_max = llama_cpp.llama_n_seq_max(self._ctx)
        self.max_decode_tokens = llama_cpp.llama_n_batch(self._ctx)
        self.layout: Layout = (
            TemplateLayout(info.rerank_template, self._tokenize, settings.instruction) if info.rerank_template
            else special_token_layout(info, self._vocab, self._tokenize)
        )
        self._batch = _Batch(self.max_decode_tokens, all_outputs=self.head is None)
        self._memory = llama_cpp.llama_get_memory(self._ctx)
        self._cached_prefix: np.ndarray | None = None

    # -- loading ---------------------------------------------------------------------------

    @staticmethod
    def _load_model(path: str, settings: EngineSettings) -> llama_cpp.llama_model_p:
        params = llama_cpp.llama_model_default_params()
        params.n_gpu_layers = settings.gpu_layers
        params.use_mmap = settings.use_mmap
        model = llama_cpp.llama_model_load_from_file(str(path).encode(), params)
        if not model:
            raise ModelLoadError(
                f"llama.cpp could not load {Path(path).name}: its architecture or tensor types "
                f"are not supported by this llama.cpp version (see the log above)."
            )
        return model

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
        # Qwen3's head is applied to the last hidden states (classifier.py): unpooled embeddings,
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
        """Qwen3's head ends in a softmax over yes/no: its score is P(yes), not a logit."""
        return "probability" if self.info.architecture in PROBABILITY_ARCHITECTURES else "logit"

    def prepare_pairs(self, query: str, documents: Sequence[str], truncate: bool,
                      max_doc_tokens: int | None = None, instruction: str | None = None) -> list[np.ndarray]:
        """Token pairs that fit the context; the truncation policy lives here alone.

        With `truncate`, a document is cut from its end so the pair fits, which is what
        Hugging Face tokenizers do with `truncation="only_second"` at the same maximum length
        (and what Qwen3-Reranker's reference code does to the text around the document).
        `max_doc_tokens` (Cohere's `max_tokens_per_doc`) cuts every document to that many tokens.
        """
        pairs_of, room = self._query_pairs(query, instruction)
        pairs = []
        for index, document in enumerate(documents):
            segment = pairs_of.segment(document)
            if max_doc_tokens is not None:
                segment = segment[: pairs_of.floor + max_doc_tokens]
            if len(segment) > room:
                if not truncate:
                    total = len(pairs_of.head) + len(segment) + len(pairs_of.tail)
                    raise InputTooLongError(
                        f"document {index} with the query is {total} tokens, more than the model's "
                        f"context of {self.max_pair_tokens} tokens; send \"truncate\": true to cut it"
                    )
                segment = segment[:room]
            pairs.append(np.asarray([*pairs_of.head, *segment, *pairs_of.tail], dtype=np.int32))
        return pairs

    def prepare_windows(self, query: str, documents: Sequence[str], plan: WindowPlan,
                        max_doc_tokens: int | None = None,
                        instruction: str | None = None) -> tuple[list[np.ndarray], list[int]]:
        """Every window of every document as a pair, and the document each pair belongs to.

        A document that fits is one pair, exactly as prepare_pairs() makes it; a longer one is cut
        into windows of the room its pair leaves (at most `plan.pair_tokens` tokens a pair). The
        template text before the document (Qwen3's `<Document>: `) starts every window.
        """
        pair_tokens = min(plan.pair_tokens or self.max_pair_tokens, self.max_pair_tokens)
        pairs_of, room = self._query_pairs(query, instruction, pair_tokens // 2 if plan.half_query else None)
        room = min(room, pair_tokens - len(pairs_of.head) - len(pairs_of.tail))
        if room - pairs_of.floor < 1:
            raise InputTooLongError(f"the query leaves no room for a document in a window of {pair_tokens} tokens")
        pairs: list[np.ndarray] = []
        owners: list[int] = []
        for index, document in enumerate(documents):
            segment = pairs_of.segment(document)
            before, text = segment[: pairs_of.floor], segment[pairs_of.floor:]
            if max_doc_tokens is not None:
                text = text[:max_doc_tokens]
            spans = window_spans(len(text), room - pairs_of.floor, plan.overlap, plan.last)
            if len(spans) > plan.max_windows:
                raise TooManyWindows(f"document {index} needs {len(spans)} windows of {room} tokens, more than "
                                     f"the limit of {plan.max_windows} per document")
            for start, end in spans:
                pairs.append(np.asarray([*pairs_of.head, *before, *text[start:end], *pairs_of.tail], dtype=np.int32))
                owners.append(index)
        return pairs, owners

    def _query_pairs(self, query: str, instruction: str | None, max_query_tokens: int | None = None):
        """The request's fixed parts, and how many segment tokens a pair may hold."""
        try:
            pairs_of = self.layout.for_query(query, instruction, max_query_tokens)
        except InstructionNotSupported as exc:
            raise InputError(str(exc)) from None
        room = self.max_pair_tokens - len(pairs_of.head) - len(pairs_of.tail)
        if room - pairs_of.floor < 1:
            used = self.max_pair_tokens - room + pairs_of.floor
            raise InputTooLongError(
                f"the query takes {used} tokens with the model's special tokens and leaves no room for "
                f"a document in the model's context of {self.max_pair_tokens} tokens"
            )
        return pairs_of, room

    def anchor_pairs(self, query: str, instruction: str | None = None) -> list[np.ndarray]:
        """llama-box's normalisation anchors: the query against itself (cut to fit) and the
        query against a single unknown token (token 0 where the vocabulary has none, as in BPE)."""
        pairs_of, room = self._query_pairs(query, instruction)
        unknown = self.info.unknown_token if self.info.unknown_token is not None else 0
        return [
            np.asarray([*pairs_of.head, *segment[:room], *pairs_of.tail], dtype=np.int32)
            for segment in (pairs_of.segment(pairs_of.query), [*pairs_of.segment(""), unknown])
        ]

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
            return p_yes(out)
        for i in range(count):
            out[i] = llama_cpp.llama_get_embeddings_seq(self._ctx, first_seq + i)[0]
        return out


def shared_prefix_length(pairs: Sequence[np.ndarray]) -> int:
    """Tokens at the start of every pair that are the same in all, leaving each pair at least one
    token of its own (its last token carries the score)."""
    if len(pairs) < 2:
        return 0
    shortest = min(len(p) for p in pairs)
    first = pairs[0][:shortest]
    same = np.ones(shortest, dtype=bool)
    for p in pairs[1:]:
        same &= p[:shortest] == first
    differs = np.flatnonzero(~same)
    common = int(differs[0]) if len(differs) else shortest
    return min(common, shortest - 1)
