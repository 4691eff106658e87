"""The one place scores are shaped: from each pair's score to the ranked documents a client sees.

The engine returns each pair's score as the model's own library computes it (a classifier's logit,
or Qwen3's P(yes)) and says which kind it is; everything a request asks on top of that happens
here: a document's best window, llama-box's normalisation, sigmoids for the dialects that promise
[0, 1], the order and the cut to `top_n`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np

from .jobs import RankedDocument, RerankJob

ScoreKind = Literal["logit", "probability"]


def shape_scores(job: RerankJob, kind: ScoreKind, pair_scores: np.ndarray,
                 owners: Sequence[int]) -> list[RankedDocument]:
    """`pair_scores` holds one score per pair (`owners[i]` is pair i's document), then, with
    `job.normalize`, the two anchors' (PairMaker.anchors())."""
    documents = best_windows(pair_scores[: len(owners)], owners, len(job.documents))
    if job.normalize:
        self_score, unknown_score = pair_scores[len(owners):len(owners) + 2]
        query_is_best = job.documents[int(np.argmax(documents))] == job.query
        documents = normalize_like_llama_box(documents, self_score, unknown_score, query_is_best)
    elif job.probabilities and kind == "logit":
        documents = sigmoid(documents)
    return rank(documents, job.top_n)


def best_windows(scores: np.ndarray, owners: Sequence[int], n_documents: int) -> np.ndarray:
    """A document scores as its best window (the same order for logits and their sigmoids)."""
    best = np.full(n_documents, -np.inf, dtype=np.float64)
    np.maximum.at(best, owners, scores)
    return best


def sigmoid(logits: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-logits))


def rank(scores: np.ndarray, top_n: int | None) -> list[RankedDocument]:
    """Highest score first; equal scores keep request order; at most `top_n`."""
    order = np.argsort(-scores, kind="stable")[:top_n]
    return [RankedDocument(int(i), float(scores[i])) for i in order]


def normalize_like_llama_box(scores: np.ndarray, self_score: float, unknown_score: float,
                             query_is_best: bool = False) -> np.ndarray:
    """llama-box's `normalize: true`: a min-max map onto [0.001, 0.999] whose ends are set by the
    query scored against itself and against a single unknown token (see shared/REFERENCE.md).
    When the best document is the query's own text, or the ends meet, llama-box (v0.0.171)
    divides by the highest score instead."""
    high = max(float(self_score), float(scores.max()))
    low = min(float(unknown_score), float(scores.min()))
    if query_is_best or high - low < 1e-6:
        return scores / high
    return 0.001 + (scores - low) * 0.998 / (high - low)
