"""Text Embeddings Inference's own rerank test, replayed against this server: the same requests and
the same properties, written here (their code is not copied). TEI's router test
(router/tests/test_http_rerank.rs) is commented out on main (0d124dc9); the last active version
(before 1db97c24, bge-reranker-base) and the one of the open PR #878 (ms-marco-MiniLM-L2-v2) are
replayed, with the router's documented behaviours: sigmoid scores unless `raw_scores`, `text` only
with `return_text`, best first, 400 for no texts, and `truncation_direction`.

Here the model is the XLM-R fixture and orders come from its transformers reference. Where this
server answers otherwise on purpose, the difference is in DIFFERENCES with its reason, and a test
checks that it still holds.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from .conftest import TOLERANCE, case

DIFFERENCES = {
    "ties": "TEI sorts ascending and reverses, so equal scores come out last index first ([2, 0, 1] in its "
            "snapshot); this server keeps request order for equal scores ([0, 2, 1]), a documented choice.",
    "error body": "TEI's errors are {\"error\": message, \"error_type\": ...}; this server answers its one "
                  "error envelope for every dialect. The status codes agree where both refuse.",
    "batch size": "TEI refuses more than --max-client-batch-size texts (32) with 422; this server takes up "
                  "to --max-documents (1,000) and answers 413 past it.",
    "too long": "TEI answers 422 for an input too long with `truncate: false`; this server answers 400, as for "
                "every bad request.",
}


def ranks(client, **body) -> list[dict]:
    r = client.post("/rerank", json=body)
    assert r.status_code == 200, r.text
    assert isinstance(r.json(), list)
    return r.json()


def test_rerank_snapshot_properties(client):
    """The active test's request: the two equal texts score the same, above the other one, each with its
    text and a sigmoid score (its tolerance: 4e-3)."""
    answer = ranks(client, query="test", texts=["test", "other", "test"], return_text=True)
    assert [set(r) for r in answer] == [{"index", "score", "text"}] * 3
    by_index = {r["index"]: r for r in answer}
    assert by_index[0]["score"] == pytest.approx(by_index[2]["score"], abs=4e-3)
    assert all(0 < r["score"] < 1 for r in answer)
    assert [r["score"] for r in answer] == sorted((r["score"] for r in answer), reverse=True)
    assert all(r["text"] == ["test", "other", "test"][r["index"]] for r in answer)


def test_difference_equal_scores_keep_request_order(client):
    answer = ranks(client, query="test", texts=["test", "other", "test"])
    equal = [r["index"] for r in answer if r["index"] != 1]
    assert equal == [0, 2] and "ties" in DIFFERENCES


def test_rerank_pr_878(client, reference):
    """Two texts: the better one (by the reference) first, with its text, both scores finite and apart."""
    c = case(reference, "panda")
    texts = c["documents"][:2]
    answer = ranks(client, query=c["query"], texts=texts, return_text=True)
    best = int(np.argmax(c["scores"][:2]))
    assert len(answer) == 2 and answer[0]["index"] == best and answer[0]["text"] == texts[best]
    assert all(math.isfinite(r["score"]) for r in answer) and answer[0]["score"] > answer[1]["score"]
    assert [{"index": r["index"], "text": r["text"]} for r in answer] == [
        {"index": i, "text": texts[i]} for i in (best, 1 - best)]


def test_scores_are_sigmoids_unless_raw_scores(client, reference):
    c = case(reference, "panda")
    for raw, expected in ((False, 1 / (1 + np.exp(-np.asarray(c["scores"])))), (True, np.asarray(c["scores"]))):
        answer = sorted(ranks(client, query=c["query"], texts=c["documents"], raw_scores=raw), key=lambda r: r["index"])
        np.testing.assert_allclose([r["score"] for r in answer], expected, atol=TOLERANCE)
        assert all("text" not in r for r in answer)


def test_empty_texts_are_a_400(client):
    r = client.post("/rerank", json={"query": "q", "texts": []})
    assert r.status_code == 400 and "texts" in r.json()["error"]["message"] and "error body" in DIFFERENCES


def test_difference_more_than_32_texts_are_served(client):
    assert len(ranks(client, query="q", texts=[f"text {i}" for i in range(40)])) == 40
    assert "batch size" in DIFFERENCES


def test_difference_too_long_without_truncation_is_a_400(client):
    r = client.post("/rerank", json={"query": "q", "texts": ["panda " * 400], "truncate": False})
    assert r.status_code == 400 and "too long" in DIFFERENCES


@pytest.mark.parametrize("direction", ["Left", "left"])
def test_truncation_direction_left_keeps_a_long_texts_end(client, engine, direction):
    """A text cut to fit the context from its start scores as its last tokens alone."""
    tail_tokens = engine.tokenize("bamboo " * 200)
    room = engine.max_pair_tokens - len(engine.pairs.make("q", [""], True)[0])
    text = "The giant panda lives in China. " * 3 + "bamboo " * 200
    left = ranks(client, query="q", texts=[text], truncation_direction=direction, raw_scores=True)
    right = ranks(client, query="q", texts=[text], truncation_direction="Right", raw_scores=True)
    alone = ranks(client, query="q", texts=["bamboo " * 200], raw_scores=True)
    assert len(tail_tokens) > room, "the tail alone is cut too, at its end: the same last tokens if all equal"
    assert left[0]["score"] == pytest.approx(alone[0]["score"], abs=1e-5)
    assert right[0]["score"] != pytest.approx(left[0]["score"], abs=1e-4)
