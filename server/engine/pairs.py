"""Token pairs laid out as the model was trained, cut to its context: the truncation and window
policy lives here alone. Pure: it needs only the layout's tokenize function, not llama.cpp."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np

from ..faults import InputError, InputTooLongError, TooManyWindows
from .layout import InstructionNotSupported, Layout, QueryCutNotSupported, QueryPairs
from .windows import WindowPlan, window_spans

Side = Literal["right", "left"]
"""The end of a document that is cut: its end (`right`, what tokenizers do by default) or its start."""

Truncation = Literal["only_second", "longest_first"]
"""How a pair too long for the context is cut, in Hugging Face tokenizers' names: the document alone
(what FlagEmbedding and Qwen3-Reranker's code do), or the longer of query and document first
(`truncation=True`, what sentence-transformers' CrossEncoder does for BERT cross-encoders)."""


def truncation_for(architecture: str, tokenizer_model: str | None) -> Truncation:
    """BERT cross-encoders with a WordPiece vocabulary and ModernBERT ones are scored through
    sentence-transformers' CrossEncoder, which cuts the pair `longest_first`."""
    if (architecture, tokenizer_model) == ("bert", "bert") or architecture == "modern-bert":
        return "longest_first"
    return "only_second"


def longest_first(query: int, document: int, room: int) -> tuple[int, int]:
    """Tokens kept of each side, as Hugging Face tokenizers' `longest_first` keeps them: the shorter
    side whole if the longer still gets as much, else half the room each, the odd token to the
    longer side (to the document on a tie)."""
    if query + document <= room:
        return query, document
    shorter = min(query, document)
    if shorter <= room - shorter:
        kept_shorter, kept_longer = shorter, room - shorter
    else:
        kept_shorter, kept_longer = room // 2, room - room // 2
    return (kept_shorter, kept_longer) if query <= document else (kept_longer, kept_shorter)


def _keep(tokens: list[int], count: int, side: Side) -> list[int]:
    if len(tokens) <= count:
        return tokens
    return tokens[:count] if side == "right" else tokens[len(tokens) - count:]


class PairMaker:
    """The pairs of a request, for one model's layout and context."""

    def __init__(self, layout: Layout, max_pair_tokens: int, unknown_token: int | None,
                 truncation: Truncation = "only_second") -> None:
        self.layout = layout
        self.max_pair_tokens = max_pair_tokens
        self.truncation = truncation
        self.unknown_token = unknown_token if unknown_token is not None else 0
        """llama-box's second anchor; token 0 where the vocabulary has no unknown token, as in BPE."""

    def make(self, query: str, documents: Sequence[str], truncate: bool,
             max_doc_tokens: int | None = None, instruction: str | None = None, *,
             query_tokens: int | None = None, side: Side = "right") -> list[np.ndarray]:
        """Token pairs that fit the context; the truncation policy lives here alone.

        With `truncate`, a document is cut from its end so the pair fits, which is what
        Hugging Face tokenizers do with `truncation="only_second"` at the same maximum length
        (and what Qwen3-Reranker's reference code does to the text around the document); with
        the `longest_first` truncation, the longer of query and document is cut first.
        `max_doc_tokens` (Cohere's and vLLM's `max_tokens_per_doc`) cuts every document to that
        many tokens, `query_tokens` (vLLM's `max_tokens_per_query`) the query; `side="left"` cuts
        a document's start instead of its end, either way.
        """
        if self.truncation == "longest_first" and truncate:
            return self._make_longest_first(query, documents, max_doc_tokens, instruction, query_tokens, side)
        pairs_of, room = self._query_pairs(query, instruction, query_tokens=query_tokens)
        pairs = []
        for index, document in enumerate(documents):
            segment = pairs_of.segment(document)
            before, text = segment[: pairs_of.floor], segment[pairs_of.floor:]
            if max_doc_tokens is not None:
                text = _keep(text, max_doc_tokens, side)
            if len(before) + len(text) > room:
                if not truncate:
                    total = len(pairs_of.head) + len(before) + len(text) + len(pairs_of.tail)
                    raise InputTooLongError(
                        f"document {index} with the query is {total} tokens, more than the model's "
                        f"context of {self.max_pair_tokens} tokens; send \"truncate\": true to cut it"
                    )
                text = _keep(text, room - len(before), side)
            pairs.append(np.asarray([*pairs_of.head, *before, *text, *pairs_of.tail], dtype=np.int32))
        return pairs

    def _make_longest_first(self, query: str, documents: Sequence[str], max_doc_tokens: int | None,
                            instruction: str | None, query_tokens: int | None, side: Side) -> list[np.ndarray]:
        """Pairs cut as sentence-transformers' CrossEncoder cuts them: a query past the context is
        cut rather than refused, and a long query and a long document give up tokens alike."""
        whole = self._for_query(query, instruction, query_tokens=query_tokens)
        query_length = whole.query_length
        room = self.max_pair_tokens - (len(whole.head) - query_length) - len(whole.tail)
        if room < 2:
            raise InputTooLongError(f"the model's context of {self.max_pair_tokens} tokens leaves no room "
                                    f"for a query and a document")
        cut_queries = {query_length: whole}
        pairs = []
        for document in documents:
            text = whole.segment(document)
            if max_doc_tokens is not None:
                text = _keep(text, max_doc_tokens, side)
            kept_query, kept_text = longest_first(query_length, len(text), room)
            if kept_query not in cut_queries:
                cut_queries[kept_query] = self._for_query(query, instruction, query_tokens=kept_query)
            pairs_of = cut_queries[kept_query]
            pairs.append(np.asarray([*pairs_of.head, *_keep(text, kept_text, side), *pairs_of.tail], dtype=np.int32))
        return pairs

    def windows(self, query: str, documents: Sequence[str], plan: WindowPlan,
                max_doc_tokens: int | None = None, instruction: str | None = None, *,
                query_tokens: int | None = None, side: Side = "right") -> tuple[list[np.ndarray], list[int]]:
        """Every window of every document as a pair, and the document each pair belongs to.

        A document that fits is one pair, exactly as make() makes it; a longer one is cut
        into windows of the room its pair leaves (at most `plan.pair_tokens` tokens a pair). The
        template text before the document (Qwen3's `<Document>: `) starts every window.
        """
        pair_tokens = min(plan.pair_tokens or self.max_pair_tokens, self.max_pair_tokens)
        pairs_of, room = self._query_pairs(query, instruction, pair_tokens // 2 if plan.half_query else None,
                                           query_tokens)
        room = min(room, pair_tokens - len(pairs_of.head) - len(pairs_of.tail))
        if room - pairs_of.floor < 1:
            raise InputTooLongError(f"the query leaves no room for a document in a window of {pair_tokens} tokens")
        pairs: list[np.ndarray] = []
        owners: list[int] = []
        for index, document in enumerate(documents):
            segment = pairs_of.segment(document)
            before, text = segment[: pairs_of.floor], segment[pairs_of.floor:]
            if max_doc_tokens is not None:
                text = _keep(text, max_doc_tokens, side)
            spans = window_spans(len(text), room - pairs_of.floor, plan.overlap, plan.last)
            if len(spans) > plan.max_windows:
                raise TooManyWindows(f"document {index} needs {len(spans)} windows of {room} tokens, more than "
                                     f"the limit of {plan.max_windows} per document")
            for start, end in spans:
                pairs.append(np.asarray([*pairs_of.head, *before, *text[start:end], *pairs_of.tail], dtype=np.int32))
                owners.append(index)
        return pairs, owners

    def _for_query(self, query: str, instruction: str | None, max_query_tokens: int | None = None,
                   query_tokens: int | None = None) -> QueryPairs:
        """The layout's pairs of the query; what the layout cannot do is the client's error."""
        try:
            return self.layout.for_query(query, instruction, max_query_tokens, query_tokens)
        except (InstructionNotSupported, QueryCutNotSupported) as exc:
            raise InputError(str(exc)) from None

    def _query_pairs(self, query: str, instruction: str | None, max_query_tokens: int | None = None,
                     query_tokens: int | None = None):
        """The request's fixed parts, and how many segment tokens a pair may hold."""
        pairs_of = self._for_query(query, instruction, max_query_tokens, query_tokens)
        room = self.max_pair_tokens - len(pairs_of.head) - len(pairs_of.tail)
        if room - pairs_of.floor < 1:
            used = self.max_pair_tokens - room + pairs_of.floor
            raise InputTooLongError(
                f"the query takes {used} tokens with the model's special tokens and leaves no room for "
                f"a document in the model's context of {self.max_pair_tokens} tokens"
            )
        return pairs_of, room

    def anchors(self, query: str, instruction: str | None = None) -> list[np.ndarray]:
        """llama-box's normalisation anchors: the query against itself (cut to fit) and the
        query against a single unknown token (token 0 where the vocabulary has none, as in BPE)."""
        pairs_of, room = self._query_pairs(query, instruction)
        unknown = self.unknown_token
        return [
            np.asarray([*pairs_of.head, *segment[:room], *pairs_of.tail], dtype=np.int32)
            for segment in (pairs_of.segment(pairs_of.query), [*pairs_of.segment(""), unknown])
        ]


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
