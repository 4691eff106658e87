"""The service on a real local Ray cluster (a head and a second node, Ray's own cluster utilities),
driven through Ray Serve's HTTP proxy and compared with the single-process server."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import httpx
import pytest
import ray
from ray import serve
from ray.cluster_utils import Cluster

from server.config import ServerConfig
from server.ray.app import RayAppConfig, build_app
from server.ray.replica import ReplicaStatus
from tests.conftest import QWEN3, XLMR, RunningServer, case, free_port, wait_healthy

KEY = "sk-ray"
AUTH = {"Authorization": f"Bearer {KEY}"}
MODELS = ["xlmr-tiny", "qwen3-tiny"]
APP = "rerank"
# Both fixtures are f32/f16 models scored by the same engine code with different thread counts.
SAME_SCORE = 1e-5


def served_config(**overrides: object) -> ServerConfig:
    return ServerConfig(models=[str(XLMR), str(QWEN3)], aliases=MODELS, api_keys=[KEY], threads=1, **overrides)


@pytest.fixture(scope="module")
def single() -> Iterator[RunningServer]:
    """The same two models in one process: what every answer through Ray is compared with."""
    srv = RunningServer("--model", str(XLMR), "--alias", MODELS[0], "--model", str(QWEN3), "--alias", MODELS[1],
                        "--api-key", KEY)
    srv.wait_ready()
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    """A head and a second node on this machine; shut down even when a test fails."""
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 2, "include_dashboard": False})
    try:
        cluster.add_node(num_cpus=2)
        ray.init(address=cluster.address)
        yield cluster
    finally:
        serve.shutdown()
        ray.shutdown()
        cluster.shutdown()


@pytest.fixture(scope="module")
def proxy(cluster: Cluster, single: RunningServer) -> Iterator[str]:
    """xlmr-tiny on two replicas and qwen3-tiny on one, per-model deployments."""
    port = free_port()
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    serve.run(build_app(RayAppConfig(server=served_config(), replicas=2)), name=APP, route_prefix="/")
    url = f"http://127.0.0.1:{port}"
    wait_healthy(url, timeout=120)
    yield url


def post(url: str, path: str, body: dict, headers: dict = AUTH) -> httpx.Response:
    return httpx.post(f"{url}{path}", json=body, headers=headers, timeout=60)


def scores(response: httpx.Response) -> list[tuple[int, float]]:
    data = response.json()
    results = data if isinstance(data, list) else data["results"]
    return [(r["index"], r.get("relevance_score", r.get("score"))) for r in results]


def assert_same(ray_answer: httpx.Response, single_answer: httpx.Response) -> None:
    assert ray_answer.status_code == single_answer.status_code == 200, ray_answer.text
    ours, theirs = scores(ray_answer), scores(single_answer)
    assert [i for i, _ in ours] == [i for i, _ in theirs]
    assert [s for _, s in ours] == pytest.approx([s for _, s in theirs], abs=SAME_SCORE)


def test_dialects_score_as_one_process(proxy: str, single: RunningServer, reference: dict) -> None:
    many = case(reference, "many")
    requests = [
        ("/v1/rerank", {"model": "xlmr-tiny", "query": many["query"], "documents": many["documents"], "top_n": 5}),
        ("/rerank", {"query": many["query"], "texts": many["documents"]}),  # TEI
        ("/v2/rerank", {"model": "xlmr-tiny", "query": many["query"], "documents": many["documents"]}),  # Cohere
    ]
    for path, body in requests:
        ray_answer, single_answer = post(proxy, path, body), post(single.url, path, body)
        assert_same(ray_answer, single_answer)
        if path != "/rerank":
            usage = ray_answer.json().get("usage") or ray_answer.json()["meta"]["tokens"]
            expected = single_answer.json().get("usage") or single_answer.json()["meta"]["tokens"]
            assert usage == expected
    # The jina answer is the same document for document, usage included.
    first = post(proxy, *requests[0]).json()
    assert first["model"] == "xlmr-tiny" and first["usage"]["prompt_tokens"] > 0


def test_second_model_reaches_its_deployment(proxy: str, single: RunningServer) -> None:
    body = {"model": "qwen3-tiny", "query": "What is the capital of China?",
            "documents": ["The capital of China is Beijing.", "Gravity makes things fall.", "Beijing is in China."]}
    ray_answer = post(proxy, "/v1/rerank", body)
    assert_same(ray_answer, post(single.url, "/v1/rerank", body))
    assert ray_answer.json()["model"] == "qwen3-tiny"
    assert [card["id"] for card in cards(proxy)] == MODELS
    assert cards(proxy) == cards(single.url)


def test_keys_and_errors_as_one_process(proxy: str, single: RunningServer) -> None:
    body = {"model": "xlmr-tiny", "query": "q", "documents": ["d"]}
    cases = [
        ("/v1/rerank", body, {}),  # no key
        ("/v1/rerank", body, {"Authorization": "Bearer wrong"}),
        ("/v1/rerank", {**body, "model": "nope"}, AUTH),  # unknown model among two
        ("/v1/rerank", {**body, "documents": []}, AUTH),
        ("/v1/rerank", {**body, "documents": ["word " * 500], "truncate": False}, AUTH),  # engine's InputError
        ("/v2/rerank", {"query": "q"}, AUTH),
    ]
    for path, request, headers in cases:
        ray_answer, single_answer = post(proxy, path, request, headers), post(single.url, path, request, headers)
        assert ray_answer.status_code == single_answer.status_code, (request, ray_answer.text)
        assert ray_answer.status_code in (400, 401, 404)
        assert ray_answer.json() == single_answer.json()
    malformed = httpx.post(f"{proxy}/v1/rerank", content=b"{", headers=AUTH, timeout=10)
    assert malformed.status_code == 400 and "malformed JSON" in malformed.json()["error"]["message"]
    assert httpx.get(f"{proxy}/health", timeout=10).status_code == 200  # public, as in one process


def replica_statuses(deployment: str, replicas: int, attempts: int = 200) -> dict[str, ReplicaStatus]:
    """Each live replica's status, asked through the deployment's handle until all `replicas`
    have answered (Serve routes each call to one of them)."""
    handle = serve.get_deployment_handle(deployment, app_name=APP)
    seen: dict[str, ReplicaStatus] = {}
    for _ in range(attempts):
        status = handle.status.remote().result(timeout_s=30)
        seen[status.replica] = status
        if len(seen) == replicas:
            return seen
    raise AssertionError(f"only {len(seen)} of {replicas} replicas answered")


def test_both_replicas_serve(proxy: str, reference: dict) -> None:
    before = {r: s.requests for r, s in replica_statuses("xlmr-tiny", 2).items()}
    many = case(reference, "many")
    body = {"model": "xlmr-tiny", "query": many["query"], "documents": many["documents"]}
    threads = [threading.Thread(target=post, args=(proxy, "/v1/rerank", body)) for _ in range(24)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    after = replica_statuses("xlmr-tiny", 2)
    served = {replica: after[replica].requests - before.get(replica, 0) for replica in after}
    assert sum(served.values()) == 24
    assert all(n > 0 for n in served.values()), served


def live_replicas(deployment: str) -> list[str]:
    prefix = f"SERVE_REPLICA::{APP}#{deployment}#"
    return [a["name"] for a in ray.util.list_named_actors(all_namespaces=True) if a["name"].startswith(prefix)]


def test_killed_replica_is_replaced(proxy: str, reference: dict) -> None:
    panda = case(reference, "panda")
    body = {"model": "xlmr-tiny", "query": panda["query"], "documents": panda["documents"]}
    statuses: list[int] = []
    stop = threading.Event()

    def stream() -> None:
        while not stop.is_set():
            statuses.append(post(proxy, "/v1/rerank", body).status_code)

    victims = live_replicas("xlmr-tiny")
    assert len(victims) == 2
    streamer = threading.Thread(target=stream)
    streamer.start()
    try:
        time.sleep(1)
        ray.kill(ray.get_actor(victims[0], namespace="serve"), no_restart=True)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            replicas = live_replicas("xlmr-tiny")
            if len(replicas) == 2 and victims[0] not in replicas:
                break
            time.sleep(0.5)
        else:
            raise AssertionError("the killed replica was not replaced")
        time.sleep(2)
    finally:
        stop.set()
        streamer.join()
    # A request on the killed replica may fail as a 503 that says to retry; nothing else fails.
    assert set(statuses) <= {200, 503}, statuses
    assert statuses.count(200) > len(statuses) // 2
    assert all(post(proxy, "/v1/rerank", body).status_code == 200 for _ in range(6))
    assert len(replica_statuses("xlmr-tiny", 2)) == 2


def test_multiplexed_replica_swaps_models(proxy: str, single: RunningServer) -> None:
    """One replica holding at most one of the two models: each request still reaches its model."""
    serve.run(build_app(RayAppConfig(server=served_config(), models_per_replica=1)), name=APP, route_prefix="/")
    wait_healthy(proxy, timeout=120)
    bodies = [
        {"model": "xlmr-tiny", "query": "what is panda?", "documents": ["hi", "The giant panda is a bear."]},
        {"model": "qwen3-tiny", "query": "capital of China?", "documents": ["Beijing.", "Gravity."]},
    ]
    expected = [post(single.url, "/v1/rerank", body) for body in bodies]
    for turn in range(4):
        body = bodies[turn % 2]
        assert_same(post(proxy, "/v1/rerank", body), expected[turn % 2])
        # The bound holds: the other model was evicted to make room.
        assert [s.loaded for s in replica_statuses("models", 1).values()] == [[body["model"]]]
    assert len(live_replicas("models")) == 1
    # The cards describe each engine as loaded (context, score kind), as in one process.
    assert cards(proxy) == cards(single.url)


def test_a_request_given_up_on_is_dropped_in_the_replica(proxy: str) -> None:
    """A request that times out at the gateway leaves no pairs queued in the replica: about 30,000
    windows of work are dropped at once instead of being scored for nothing."""
    serve.run(build_app(RayAppConfig(server=ServerConfig(models=[str(XLMR)], aliases=["xlmr-tiny"], threads=1,
                                                         request_timeout=0.5))), name=APP, route_prefix="/")
    wait_healthy(proxy, timeout=120)
    documents = [" ".join(f"word{i} panda bamboo forest" for i in range(j, j + 300)) for j in range(1000)]
    answer = httpx.post(f"{proxy}/v1/rerank", timeout=60,
                        json={"query": "panda", "documents": documents, "long_documents": "windows"})
    assert answer.status_code == 504, answer.text

    def queued() -> int:
        return sum(s.queued_pairs for s in replica_statuses("xlmr-tiny", 1).values())

    # Empty within a second, and still empty three seconds on, when the replica would long have
    # finished tokenising and queued its windows had the call not been cancelled there.
    deadline = time.monotonic() + 1
    while queued() and time.monotonic() < deadline:
        time.sleep(0.1)
    samples = []
    for _ in range(15):
        samples.append(queued())
        time.sleep(0.2)
    assert samples == [0] * 15
    # The replica is free for the next request at once.
    assert post(proxy, "/v1/rerank", {"query": "q", "documents": ["d"]}, {}).status_code == 200


def cards(url: str) -> list[dict]:
    data = httpx.get(f"{url}/v1/models", headers=AUTH, timeout=10).json()["data"]
    return [{k: v for k, v in card.items() if k != "created"} for card in data]
