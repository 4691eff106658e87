"""Long documents: cut at their end, or scored in windows with the best window counting.

Truncation (Hugging Face's `only_second`) is blind to everything after the cut. The models' own
libraries score every window and keep the maximum (MaxP):
- BCEmbedding (bce-reranker-base_v1): windows of the room a pair leaves for the document,
  consecutive windows overlapping by `min(overlap, window // 4)`, the last one possibly short;
- jina-reranker-v2's `rerank()`: the query cut to half a pair, the same windows, and the last one
  moved back to end at the document's end, so it is full length;
- Cohere's `/v2/rerank`: the document cut to `max_tokens_per_doc`, the query to half a pair, then
  non-overlapping chunks.
A window is a pair like any other, so the scheduler batches, cancels and counts windows as pairs.
"""

from __future__ import annotations

from typing import Literal

import msgspec

LongDocuments = Literal["truncate", "windows"]
LastWindow = Literal["short", "aligned"]
WindowStyle = Literal["bcembedding", "jina"]
"""Whose library a model's windows follow (a catalog entry's `window_style`)."""


class WindowPlan(msgspec.Struct, frozen=True, kw_only=True):
    """How one request cuts its documents into windows."""

    overlap: int = 80
    """Tokens shared by consecutive windows (at most a quarter of a window, as BCEmbedding)."""
    last: LastWindow = "short"
    """`aligned`: the last window ends at the document's end and is full length (jina-v2)."""
    half_query: bool = False
    """The query is cut to half a pair's tokens, its special tokens counted (jina-v2, Cohere)."""
    max_windows: int = 32
    """More windows for one document is a 413 before any scoring."""
    pair_tokens: int | None = None
    """The longest pair of query and window (`--window-tokens`); None: the model's context."""


def plan_for(style: WindowStyle, overlap: int, max_windows: int, pair_tokens: int | None) -> WindowPlan:
    aligned = style == "jina"
    return WindowPlan(overlap=overlap, last="aligned" if aligned else "short", half_query=aligned,
                      max_windows=max_windows, pair_tokens=pair_tokens)


def cohere_chunks(plan: WindowPlan) -> WindowPlan:
    """Cohere's chunks: the whole context each, no overlap, the query cut to half."""
    return msgspec.structs.replace(plan, overlap=0, last="short", half_query=True, pair_tokens=None)


def window_spans(length: int, room: int, overlap: int, last: LastWindow) -> list[tuple[int, int]]:
    """(start, end) offsets of the windows of a document of `length` tokens, `room` tokens each."""
    if length <= room:
        return [(0, length)]
    overlap = max(0, min(overlap, room // 4))
    spans = []
    start = 0
    while start + room < length:
        spans.append((start, start + room))
        start += room - overlap
    spans.append((length - room, length) if last == "aligned" else (start, length))
    return spans
