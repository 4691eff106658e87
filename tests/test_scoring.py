"""scoring.py: from each pair's score to the ranked documents a client sees."""

from __future__ import annotations

import numpy as np
import pytest

from server.jobs import RerankJob
from server.scoring import best_windows, normalize_like_llama_box, rank, shape_scores, sigmoid


def job(**fields) -> RerankJob:
    return RerankJob(query="q", documents=["a", "b", "c"], **fields)


def test_rank_is_highest_first_with_request_order_for_ties_and_cut_to_top_n():
    scores = np.array([0.5, 2.0, 0.5, -1.0])
    assert [(r.index, r.score) for r in rank(scores, None)] == [(1, 2.0), (0, 0.5), (2, 0.5), (3, -1.0)]
    assert [r.index for r in rank(scores, 2)] == [1, 0]
    assert [r.index for r in rank(scores, 10)] == [1, 0, 2, 3]
    many = np.tile([1.0, 3.0], 50)  # past the size where an unstable sort keeps order by chance
    assert [r.index for r in rank(many, None)] == [*range(1, 100, 2), *range(0, 100, 2)]


def test_a_document_scores_as_its_best_window():
    assert best_windows(np.array([0.1, 0.9, 0.3, -2.0]), [0, 0, 1, 2], 3).tolist() == [0.9, 0.3, -2.0]


def test_logits_stay_logits_unless_the_dialect_promises_probabilities():
    logits = np.array([2.0, -1.0, 0.0], dtype=np.float32)
    raw = shape_scores(job(), "logit", logits, [0, 1, 2])
    assert [(r.index, r.score) for r in raw] == [(0, 2.0), (2, 0.0), (1, -1.0)]
    probabilities = shape_scores(job(probabilities=True), "logit", logits, [0, 1, 2])
    assert [r.score for r in probabilities] == pytest.approx(sigmoid(np.array([2.0, 0.0, -1.0])).tolist())


def test_a_probability_model_is_never_squashed_twice():
    p_yes = np.array([0.9, 0.2, 0.5], dtype=np.float32)
    ranked = shape_scores(job(probabilities=True), "probability", p_yes, [0, 1, 2])
    assert [r.score for r in ranked] == pytest.approx([0.9, 0.5, 0.2])


def test_normalize_maps_onto_the_anchors_range():
    pair_scores = np.array([1.0, 3.0, 2.0, 4.0, -2.0], dtype=np.float32)  # three documents, then the anchors
    ranked = shape_scores(job(normalize=True), "logit", pair_scores, [0, 1, 2])
    assert [r.index for r in ranked] == [1, 2, 0]
    assert [r.score for r in ranked] == pytest.approx([0.001 + 5 * 0.998 / 6, 0.001 + 4 * 0.998 / 6,
                                                       0.001 + 3 * 0.998 / 6])


def test_normalize_with_no_spread_divides_by_the_top():
    flat = normalize_like_llama_box(np.array([2.0, 2.0]), self_score=2.0, unknown_score=2.0)
    assert flat.tolist() == [1.0, 1.0]


def test_normalize_divides_by_the_top_when_the_best_document_is_the_query_itself():
    """llama-box v0.0.171's edge case: the query's own text ranked first maps s to s / max."""
    pair_scores = np.array([1.0, 3.0, 2.0, 4.0, -2.0], dtype=np.float32)
    ranked = shape_scores(RerankJob(query="b", documents=["a", "b", "c"], normalize=True), "logit",
                          pair_scores, [0, 1, 2])
    assert [r.score for r in ranked] == pytest.approx([3 / 4, 2 / 4, 1 / 4])
    other = shape_scores(RerankJob(query="c", documents=["a", "b", "c"], normalize=True), "logit",
                         pair_scores, [0, 1, 2])
    assert other[0].score == pytest.approx(0.001 + 5 * 0.998 / 6), "only when the query is the best document"
