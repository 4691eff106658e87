"""The client libraries people use, set up as their own docs say for a self-hosted reranker, against
a real server that requires an API key: each must hand its caller the ranking of a direct
`POST /v1/rerank` and the scores its dialect promises.

What each dialect promises, and so what each client's scores are compared with:

- Jina / llama-box (`/v1/rerank`, and `/rerank` with `documents`, as litellm's `hosted_vllm/` sends
  it): the model's raw logits, the direct `/v1/rerank` answer.
- Cohere v2 (`/v2/rerank`), TEI (`/rerank` with `texts`, no `raw_scores`) and Infinity (`/rerank` with
  `raw_scores: false`, infinity_client): probabilities, the sigmoid of those logits.

litellm's `infinity/` provider is not here: it sends the very request `hosted_vllm/` sends and wants
`document` as a string where `hosted_vllm/` (and Dify's LocalAI plugin) want the object llama-box
answers. The server keeps llama-box's answer; the README's Clients section gives `infinity/` users
the provider that works (`hosted_vllm/` or `jina_ai/`).

The libraries are imported inside the functions that call them, so a broken one fails its own test
only; the environment below keeps litellm and Haystack from reaching the internet on import or use.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from typing import NamedTuple

import httpx
import numpy as np
import pytest

from .conftest import API_KEY, RunningServer, case

os.environ["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"  # litellm fetches its price list from GitHub otherwise
os.environ["HAYSTACK_TELEMETRY_ENABLED"] = "False"

KEY = API_KEY
ALIAS = "xlmr-tiny"
TOP_N = 5
# The same server computes both sides of each comparison with the same batches; only the float32
# to JSON round trip and the sigmoid's float64 arithmetic can differ.
SCORE_TOLERANCE = 1e-6

Ranked = list[tuple[int, float]]
"""What a client handed its caller: (index of the document in the request, score), best first."""


@pytest.fixture(scope="module")
def http(keyed: RunningServer) -> Iterator[httpx.Client]:
    headers = {"Authorization": f"Bearer {KEY}"}
    with httpx.Client(base_url=keyed.url, headers=headers, timeout=30) as c:
        yield c


# What the server itself answers: per document, in request order.

def direct_scores(http: httpx.Client, path: str, body: dict) -> np.ndarray:
    """The scores of a direct Jina-form request, indexed by document."""
    response = http.post(path, json=body)
    assert response.status_code == 200, response.text
    results = response.json()["results"]
    scores = np.full(len(body["documents"]), np.nan)
    for r in results:
        scores[r["index"]] = r["relevance_score"]
    return scores


def logits(http: httpx.Client, query: str, documents: list[str]) -> np.ndarray:
    return direct_scores(http, "/v1/rerank", {"model": ALIAS, "query": query, "documents": documents})


def probabilities(http: httpx.Client, query: str, documents: list[str]) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-logits(http, query, documents)))


# Each client, called as its documentation shows for a self-hosted server.

def litellm_rerank(provider: str, url: str, query: str, documents: list[str]) -> Ranked:
    import litellm

    response = litellm.rerank(model=f"{provider}/{ALIAS}", query=query, documents=documents, top_n=TOP_N,
                              api_base=url, api_key=KEY)
    return [(r["index"], r["relevance_score"]) for r in response.results]


def langchain_infinity(url: str, query: str, documents: list[str]) -> Ranked:
    """InfinityRerank takes the server as an infinity_client `Client` (not its AuthenticatedClient,
    which the field's type refuses), so the key goes in as a header."""
    from infinity_client import Client
    from langchain_community.document_compressors.infinity_rerank import InfinityRerank

    client = Client(base_url=url, headers={"Authorization": f"Bearer {KEY}"})
    reranker = InfinityRerank(client=client, model=ALIAS, top_n=TOP_N)
    return [(r["index"], r["relevance_score"]) for r in reranker.rerank(documents, query)]


def langchain_cohere(url: str, query: str, documents: list[str]) -> Ranked:
    from langchain_cohere import CohereRerank

    reranker = CohereRerank(base_url=url, cohere_api_key=KEY, model=ALIAS, top_n=TOP_N)
    return [(r["index"], r["relevance_score"]) for r in reranker.rerank(documents, query)]


def llamaindex_ranked(postprocessor, query: str, documents: list[str]) -> Ranked:
    from llama_index.core.schema import NodeWithScore, QueryBundle, TextNode

    nodes = [NodeWithScore(node=TextNode(text=d)) for d in documents]
    ranked = postprocessor.postprocess_nodes(nodes, query_bundle=QueryBundle(query))
    return [(documents.index(n.node.get_content()), n.score) for n in ranked]


def llamaindex_jina(url: str, query: str, documents: list[str]) -> Ranked:
    """`base_url` is Jina's API root (`https://api.jina.ai/v1` by default); `/rerank` is appended."""
    from llama_index.postprocessor.jinaai_rerank import JinaRerank

    return llamaindex_ranked(JinaRerank(base_url=f"{url}/v1", api_key=KEY, model=ALIAS, top_n=TOP_N),
                             query, documents)


def llamaindex_cohere(url: str, query: str, documents: list[str]) -> Ranked:
    from llama_index.postprocessor.cohere_rerank import CohereRerank

    return llamaindex_ranked(CohereRerank(base_url=url, api_key=KEY, model=ALIAS, top_n=TOP_N),
                             query, documents)


def llamaindex_tei(url: str, query: str, documents: list[str]) -> Ranked:
    """`auth_token` is sent as the whole Authorization header, without a `Bearer ` scheme."""
    from llama_index.postprocessor.tei_rerank import TextEmbeddingInference

    return llamaindex_ranked(TextEmbeddingInference(base_url=url, auth_token=KEY, top_n=TOP_N),
                             query, documents)


def haystack_ranked(ranker, query: str, documents: list[str]) -> Ranked:
    from haystack import Document

    result = ranker.run(query=query, documents=[Document(content=d) for d in documents])
    return [(documents.index(d.content), d.score) for d in result["documents"]]


def haystack_jina(url: str, query: str, documents: list[str]) -> Ranked:
    """`base_url` is the full endpoint (`https://api.jina.ai/v1/rerank` by default)."""
    from haystack.utils import Secret
    from haystack_integrations.components.rankers.jina import JinaRanker

    ranker = JinaRanker(base_url=f"{url}/v1/rerank", api_key=Secret.from_token(KEY), model=ALIAS, top_k=TOP_N)
    return haystack_ranked(ranker, query, documents)


def haystack_cohere(url: str, query: str, documents: list[str]) -> Ranked:
    from haystack.utils import Secret
    from haystack_integrations.components.rankers.cohere import CohereRanker

    ranker = CohereRanker(api_base_url=url, api_key=Secret.from_token(KEY), model=ALIAS, top_k=TOP_N)
    return haystack_ranked(ranker, query, documents)


def haystack_tei(url: str, query: str, documents: list[str]) -> Ranked:
    """The token is explicit: by default the ranker would send `HF_TOKEN` from the environment."""
    from haystack.utils import Secret
    from haystack_integrations.components.rankers.huggingface_api import HuggingFaceTEIRanker

    ranker = HuggingFaceTEIRanker(url=url, token=Secret.from_token(KEY), top_k=TOP_N)
    return haystack_ranked(ranker, query, documents)


class ClientCase(NamedTuple):
    call: Callable[[str, str, list[str]], Ranked]
    """(server URL, query, documents) -> what the library hands its caller."""
    expected: Callable[[httpx.Client, str, list[str]], np.ndarray]
    """The scores the library should hand back, per document."""


def litellm_case(provider: str, expected) -> ClientCase:
    return ClientCase(lambda url, query, documents: litellm_rerank(provider, url, query, documents), expected)


CLIENTS = {
    # -> /v1/rerank whatever the path of api_base; sends return_documents: true.
    "litellm jina_ai/": litellm_case("jina_ai", logits),
    # -> /v2/rerank; validates the whole Cohere body (id, meta).
    "litellm cohere/": litellm_case("cohere", probabilities),
    # -> {api_base}/rerank with `documents`; needs `document` to be an object or absent.
    "litellm hosted_vllm/": litellm_case("hosted_vllm", logits),
    # -> {api_base}/rerank with TEI's `texts`, `raw_scores: false` and `top_n`, which it expects honoured.
    "litellm huggingface/": litellm_case("huggingface", probabilities),
    # -> /rerank with `raw_scores: false, return_documents: false`; needs `object` "rerank" or absent.
    "langchain InfinityRerank": ClientCase(langchain_infinity, probabilities),
    "langchain-cohere CohereRerank": ClientCase(langchain_cohere, probabilities),
    "llama-index JinaRerank": ClientCase(llamaindex_jina, logits),
    "llama-index CohereRerank": ClientCase(llamaindex_cohere, probabilities),
    # -> /rerank with `texts` only; needs one result per text and sorts them itself.
    "llama-index TextEmbeddingInference": ClientCase(llamaindex_tei, probabilities),
    "haystack JinaRanker": ClientCase(haystack_jina, logits),
    "haystack CohereRanker": ClientCase(haystack_cohere, probabilities),
    "haystack HuggingFaceTEIRanker": ClientCase(haystack_tei, probabilities),
}


@pytest.mark.parametrize("name", list(CLIENTS))
def test_client_hands_back_the_servers_ranking_and_scores(name, keyed, http, reference):
    """The order is that of `/v1/rerank` (a sigmoid keeps it), cut to the `TOP_N` asked for; the
    scores are those the client's dialect promises (see the module's docstring)."""
    c = case(reference, "many")  # 20 distinct documents: a ranking with room to go wrong
    query, documents = c["query"], c["documents"]
    client = CLIENTS[name]

    ranked = client.call(keyed.url, query, documents)

    best = np.argsort(-logits(http, query, documents), kind="stable")[:TOP_N].tolist()
    assert [index for index, _ in ranked] == best
    expected = client.expected(http, query, documents)
    np.testing.assert_allclose([score for _, score in ranked], expected[best], rtol=0, atol=SCORE_TOLERANCE)
