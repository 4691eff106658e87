"""vLLM's score API, `POST /score` and `/v1/score`, against a real server: pairings, order, scores
and usage against the rerank endpoints and the transformers reference."""

from __future__ import annotations

import numpy as np
import pytest

from .conftest import TOLERANCE, case


def sigmoid(x) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.asarray(x, dtype=np.float64)))


@pytest.mark.parametrize("path", ["/score", "/v1/score"])
def test_one_query_against_many_documents_in_input_order(client, reference, path):
    c = case(reference, "panda")
    body = client.post(path, json={"model": "m", "text_1": c["query"], "text_2": c["documents"]}).json()
    assert list(body) == ["id", "object", "created", "model", "data", "usage"]
    assert body["id"].startswith("score-") and body["object"] == "list" and body["model"] == "m"
    assert [d["index"] for d in body["data"]] == list(range(len(c["documents"])))
    assert all(d["object"] == "score" for d in body["data"])
    np.testing.assert_allclose([d["score"] for d in body["data"]], sigmoid(c["scores"]), atol=TOLERANCE)
    tei = client.post("/rerank", json={"query": c["query"], "texts": c["documents"]}).json()
    assert {r["index"]: r["score"] for r in tei} == {d["index"]: d["score"] for d in body["data"]}
    rerank = client.post("/v1/rerank", json={"query": c["query"], "documents": c["documents"]}).json()
    assert body["usage"] == {"prompt_tokens": rerank["usage"]["prompt_tokens"],
                             "total_tokens": rerank["usage"]["prompt_tokens"], "completion_tokens": 0}


def test_one_to_one_list_of_one_and_every_name_vllm_takes(client, reference):
    c = case(reference, "panda")
    single = client.post("/score", json={"text_1": c["query"], "text_2": c["documents"][1]}).json()["data"]
    assert len(single) == 1 and single[0]["score"] == pytest.approx(sigmoid(c["scores"][1]), abs=TOLERANCE)
    listed = client.post("/score", json={"text_1": [c["query"]], "text_2": c["documents"]}).json()["data"]
    expected = pytest.approx(sigmoid(c["scores"]), abs=TOLERANCE)
    assert [d["score"] for d in listed] == expected
    for first, second in (("queries", "documents"), ("queries", "items"), ("data_1", "data_2")):
        named = client.post("/score", json={first: c["query"], second: c["documents"]}).json()["data"]
        assert [d["score"] for d in named] == [d["score"] for d in listed], (first, second)


def test_pairwise_lists_score_each_pair_with_its_own_query(client, reference):
    panda, many = case(reference, "panda"), case(reference, "many")
    body = client.post("/score", json={"text_1": [panda["query"], many["query"], panda["query"]],
                                       "text_2": [panda["documents"][0], many["documents"][1], panda["documents"][2]]})
    scores = [d["score"] for d in body.json()["data"]]
    expected = sigmoid([panda["scores"][0], many["scores"][1], panda["scores"][2]])
    np.testing.assert_allclose(scores, expected, atol=TOLERANCE)


@pytest.mark.parametrize("body,fragment", [
    ({"text_1": ["a", "b"], "text_2": ["x", "y", "z"]}, "2 queries and 3 documents"),
    ({"text_1": "a", "text_2": []}, "neither list empty"),
    ({"text_1": "", "text_2": "x"}, "non-empty"),
    ({"text_1": "a", "queries": "a", "text_2": "x"}, "send one of `text_1`, `data_1`, `queries`"),
    ({"text_1": "a"}, "send one of `text_2`, `data_2`, `documents`, `items`"),
    ({"text_1": 3, "text_2": "x"}, "text_1"),
])
def test_bad_pairings_are_400_with_the_reason(client, body, fragment):
    r = client.post("/score", json=body)
    assert r.status_code == 400 and fragment in r.json()["error"]["message"], r.text
