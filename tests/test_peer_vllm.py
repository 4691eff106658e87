"""vLLM's own rerank and score tests, replayed against this server: the same requests and the same
properties, written here (their code is not copied). Source: vLLM v0.34.0 (commit 62d4bc3c7),
tests/entrypoints/pooling/scoring/test_cross_encoder_online.py, the model-free checks of
test_bi_encoder_online.py, the five paths of tests/entrypoints/launchers/test_run_batch.py::test_score,
and the /score-against-/rerank check of scoring/test_qwen3_reranker_online.py.

Their model is bge-reranker-base at `--max-model-len 100`, scored as sigmoids; here it is the XLM-R
fixture (context 128) and its transformers reference, so "the relevant document first" and their
`>= 0.9` / `<= 0.01` thresholds become "the reference's order, and the reference's sigmoids". Where
this server answers otherwise on purpose, the difference is in DIFFERENCES with its reason, and a
test checks that it still holds, so the list stays true.
"""

from __future__ import annotations

import numpy as np
import pytest

from .conftest import TOLERANCE, case

DIFFERENCES = {
    "use_activation unset": "vLLM answers sigmoids when `use_activation` is unset; /v1/rerank answers raw logits, "
                            "llama-box's contract that GPUStack's users rely on. `use_activation: true` gives "
                            "vLLM's scores, and /score always does.",
    "top_n 0": "vLLM reads `top_n: 0` as every document; here it is a 400, as for Jina and Cohere, whose "
               "`top_n` is a count. Leave it out for every document.",
    "max_tokens_per_doc 0": "vLLM 0.34 reads 0 as no limit (earlier releases answered 400); this server keeps "
                            "the 400 the issue asked for. Leave it out for no limit.",
    "error wording": "vLLM's messages (\"Please reduce the length of the input prompt\", \"At least one "
                     "text_pair element must be given\") are its own; the status codes are the same, and this "
                     "server's message names the document and the numbers.",
    "unknown model": "vLLM answers 404 for a model name it does not serve; with one model, this server "
                     "answers with it whatever the name, as llama-box did (404 when several are served).",
    "/invocations": "SageMaker's /invocations (and /ping) are not served: this server is not packaged for "
                    "SageMaker.",
    "truncate_prompt_tokens": "not read: pairs are cut to the model's context (`truncate`, default on), and "
                              "`max_tokens_per_doc` / `max_tokens_per_query` cut each side; a value past the "
                              "context is not a 400 here.",
}

QUERIES = ["What is a panda?", "Where do giant pandas live?"]


def sigmoid(x) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.asarray(x, dtype=np.float64)))


@pytest.fixture(scope="module")
def pairs(reference):
    """Two queries and a document of each, with the reference's logits: vLLM's TEXTS_1 and TEXTS_2."""
    panda, many = case(reference, "panda"), case(reference, "many")
    return ([panda["query"], many["query"]], [panda["documents"][1], many["documents"][3]],
            [panda["scores"][1], many["scores"][3]], panda["scores"][1:3] + [many["scores"][3]])


def ok(response) -> dict:
    assert response.status_code == 200, response.text
    return response.json()


@pytest.mark.parametrize("shape", ["queries_str_1_documents_str_1", "queries_str_1_documents_str_n",
                                   "queries_str_n_documents_str_n", "queries_vs_items", "text_1_vs_text_2",
                                   "data_1_vs_data_2"])
def test_score_api(client, reference, pairs, shape):
    """The six /score tests: the pairing of each shape, and each score against the reference's sigmoid."""
    queries, documents, logits, _ = pairs
    panda = case(reference, "panda")
    body, expected = {
        "queries_str_1_documents_str_1": ({"queries": queries[0], "documents": documents[0]}, [logits[0]]),
        "queries_str_1_documents_str_n": ({"queries": panda["query"], "documents": panda["documents"][:2]},
                                          panda["scores"][:2]),
        "queries_str_n_documents_str_n": ({"queries": queries, "documents": documents}, logits),
        "queries_vs_items": ({"queries": queries, "items": documents}, logits),
        "text_1_vs_text_2": ({"text_1": queries, "text_2": documents}, logits),
        "data_1_vs_data_2": ({"data_1": queries, "data_2": documents}, logits),
    }[shape]
    answer = ok(client.post("/score", json={"model": "xlmr-tiny", **body}))
    assert answer["id"] is not None and len(answer["data"]) == len(expected)
    np.testing.assert_allclose([d["score"] for d in answer["data"]], sigmoid(expected), atol=TOLERANCE)


def test_rerank_api_texts(client, reference):
    """Two documents: an id, both results, best first; with `use_activation` the reference's sigmoids."""
    panda = case(reference, "panda")
    documents, logits = panda["documents"][1:3], panda["scores"][1:3]
    answer = ok(client.post("/rerank", json={"model": "xlmr-tiny", "query": panda["query"], "documents": documents,
                                             "use_activation": True}))
    assert answer["id"] is not None and len(answer["results"]) == 2
    assert [r["index"] for r in answer["results"]] == list(np.argsort(logits)[::-1])
    np.testing.assert_allclose([r["relevance_score"] for r in answer["results"]],
                               sorted(sigmoid(logits), reverse=True), atol=TOLERANCE)


def test_rerank_api_top_n(client, reference):
    panda = case(reference, "panda")
    answer = ok(client.post("/rerank", json={"model": "xlmr-tiny", "query": panda["query"],
                                             "documents": panda["documents"], "top_n": 2}))
    assert answer["id"] is not None and len(answer["results"]) == 2
    assert [r["index"] for r in answer["results"]] == list(np.argsort(panda["scores"])[::-1][:2])
    assert answer["results"][0]["relevance_score"] >= answer["results"][1]["relevance_score"]


def test_rerank_api_max_model_len(client):
    """A query far past the context, without truncation of the query possible: a 400 in the error envelope."""
    r = client.post("/rerank", json={"model": "xlmr-tiny", "query": "What is the capital of France?" * 100,
                                     "documents": ["The capital of Brazil is Brasilia.", "Paris."]})
    assert r.status_code == 400 and "context" in r.json()["error"]["message"]


@pytest.mark.parametrize("extra", [{}, {"truncate_prompt_tokens": 129}])
def test_score_api_max_model_len(client, extra):
    """The query x20 is past the fixture's 128 tokens (theirs: past 100): a 400, with or without
    a truncation size past the context."""
    r = client.post("/score", json={"queries": "What is the capital of France?" * 20,
                                    "documents": ["The capital of Brazil is Brasilia.", "Paris."], **extra})
    assert r.status_code == 400 and r.json()["error"]["code"] == 400


def test_use_activation(client, reference):
    """true and false differ, and the sigmoid of false's scores is true's."""
    panda = case(reference, "panda")

    def scores(**extra) -> list[float]:
        answer = ok(client.post("/rerank", json={"query": panda["query"], "documents": panda["documents"], **extra}))
        return [r["relevance_score"] for r in answer["results"]]

    on, off = scores(use_activation=True), scores(use_activation=False)
    assert not np.allclose(on, off, atol=1e-2)
    np.testing.assert_allclose(sigmoid(off), on, atol=1e-6)
    np.testing.assert_allclose(on, sorted(sigmoid(panda["scores"]), reverse=True), atol=TOLERANCE)


def test_difference_use_activation_unset_is_raw_logits(client, reference):
    panda = case(reference, "panda")
    unset = ok(client.post("/rerank", json={"query": panda["query"], "documents": panda["documents"]}))
    raw = ok(client.post("/rerank", json={"query": panda["query"], "documents": panda["documents"],
                                          "use_activation": False}))
    assert [r["relevance_score"] for r in unset["results"]] == [r["relevance_score"] for r in raw["results"]]
    assert "use_activation unset" in DIFFERENCES


def test_rerank_max_tokens_per_doc(client):
    """A document cut to 10 tokens takes fewer prompt tokens than the whole one."""
    body = {"query": "What is the capital of France?", "documents": ["The capital of France is Paris. " * 10]}
    whole = ok(client.post("/rerank", json=body))
    cut = ok(client.post("/rerank", json={**body, "max_tokens_per_doc": 10}))
    assert cut["usage"]["prompt_tokens"] < whole["usage"]["prompt_tokens"]
    assert cut["results"][0]["document"]["text"] == body["documents"][0], "the document is returned whole"


def test_rerank_max_tokens_per_doc_validation(client):
    r = client.post("/rerank", json={"query": "q", "documents": ["The capital of France is Paris."],
                                     "max_tokens_per_doc": -5})
    assert r.status_code == 400 and "max_tokens_per_doc" in r.json()["error"]["message"]


def test_difference_max_tokens_per_doc_zero_is_a_400(client):
    r = client.post("/rerank", json={"query": "q", "documents": ["d"], "max_tokens_per_doc": 0})
    assert r.status_code == 400 and "max_tokens_per_doc 0" in DIFFERENCES


def test_rerank_max_tokens_per_query(client, engine):
    """vLLM's `max_tokens_per_query`: the query cut to that many tokens in every pair, the documents untouched."""
    body = {"query": "What is the capital of France? " * 5, "documents": ["Paris.", "Berlin."]}
    whole = ok(client.post("/rerank", json=body))
    cut = ok(client.post("/rerank", json={**body, "max_tokens_per_query": 5}))
    dropped = len(engine.tokenize(body["query"])) - 5
    assert whole["usage"]["prompt_tokens"] - cut["usage"]["prompt_tokens"] == dropped * len(body["documents"])
    assert [r["document"]["text"] for r in sorted(cut["results"], key=lambda r: r["index"])] == body["documents"]
    r = client.post("/rerank", json={**body, "max_tokens_per_query": -1})
    assert r.status_code == 400 and "max_tokens_per_query" in r.json()["error"]["message"]


def test_truncation_side_cuts_the_documents_start(client, engine):
    """`truncation_side: left` keeps a cut document's end: its score is the score of that end alone."""
    tail = "The giant panda lives in the mountains of central China."
    document = "Bamboo makes up most of its diet, and it eats for many hours a day. " + tail
    keep = len(engine.tokenize(tail))
    body = {"query": "Where do pandas live?", "documents": [document], "max_tokens_per_doc": keep}
    left = ok(client.post("/rerank", json={**body, "truncation_side": "left"}))
    right = ok(client.post("/rerank", json={**body, "truncation_side": "right"}))
    alone = ok(client.post("/rerank", json={"query": body["query"], "documents": [tail]}))
    assert left["usage"] == right["usage"] == alone["usage"]
    assert left["results"][0]["relevance_score"] == pytest.approx(alone["results"][0]["relevance_score"], abs=1e-5)
    assert right["results"][0]["relevance_score"] != pytest.approx(alone["results"][0]["relevance_score"], abs=1e-3)
    r = client.post("/rerank", json={**body, "truncation_side": "middle"})
    assert r.status_code == 400 and "truncation_side" in r.json()["error"]["message"]


@pytest.mark.parametrize("path", ["/score", "/v1/score", "/rerank", "/v1/rerank", "/v2/rerank"])
def test_every_path_of_the_batch_runner(client, path):
    """test_run_batch's five routes, each with its body: every one answers."""
    query, documents = "What is the capital of France?", ["The capital of Brazil is Brasilia.", "Paris is."]
    body = {"queries": query, "documents": documents} if "score" in path else {"query": query, "documents": documents}
    ok(client.post(path, json={"model": "xlmr-tiny", **body}))


def test_score_and_rerank_agree_on_one_pair(client, reference):
    """scoring/test_qwen3_reranker_online: /score and /rerank count the same tokens and give the same score."""
    panda = case(reference, "panda")
    score = ok(client.post("/score", json={"queries": panda["query"], "documents": panda["documents"][0]}))
    rerank = ok(client.post("/rerank", json={"query": panda["query"], "documents": panda["documents"][:1],
                                             "use_activation": True}))
    assert score["usage"]["prompt_tokens"] == rerank["usage"]["prompt_tokens"]
    assert score["data"][0]["score"] == pytest.approx(rerank["results"][0]["relevance_score"], rel=1e-2)


@pytest.mark.parametrize("body", [{"top_n": -1}, {"documents": []}], ids=["negative top_n", "no documents"])
def test_invalid_rerank_requests(client, body):
    r = client.post("/rerank", json={"query": "q", "documents": ["a", "b"], **body})
    assert r.status_code == 400 and r.json()["error"]["type"] == "invalid_request_error"


def test_score_lengths_must_be_1_1_or_1_n_or_n_n(client):
    for first, second in ((["a", "b"], ["x"]), (["a", "b"], ["x", "y", "z"])):
        r = client.post("/score", json={"queries": first, "documents": second})
        assert r.status_code == 400 and "1:1, 1:N or N:N" in r.json()["error"]["message"]


def test_difference_top_n_zero_is_a_400(client):
    r = client.post("/rerank", json={"query": "q", "documents": ["a", "b"], "top_n": 0})
    assert r.status_code == 400 and "top_n 0" in DIFFERENCES


def test_difference_an_unknown_model_is_served_by_the_only_model(client):
    assert ok(client.post("/rerank", json={"model": "no-such-model", "query": "q", "documents": ["a"]}))
    assert "unknown model" in DIFFERENCES


def test_difference_invocations_is_not_served(client):
    assert client.post("/invocations", json={"query": "q", "documents": ["a"]}).status_code == 404
    assert "/invocations" in DIFFERENCES
