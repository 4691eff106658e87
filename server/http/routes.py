"""HTTP endpoints and the route table: decode a body, validate it as its dialect's request
(server/dialects/), run the job under the server's limits, and answer in the same dialect.

Nothing here knows llama.cpp or Ray; the rerank service on `app.state` (server/service.py) holds the
models, in this process or in Ray Serve replicas.
"""

from __future__ import annotations

import asyncio
import importlib.metadata
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, NamedTuple, TypeVar

import msgspec
from prometheus_client import CONTENT_TYPE_LATEST
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from ..dialects import Dialect, vllm
from ..dialects.cohere import COHERE
from ..dialects.infinity import INFINITY
from ..dialects.jina import JINA
from ..dialects.tei import TEI, TEIClassifier, TEIInfo, TEIModelType
from ..jobs import RerankJob, RerankOutcome
from ..limits import Limits
from ..service import ModelInfo, RerankService
from .docs import DOCS_PUBLIC_PATHS, DOCS_ROUTES
from .errors import ApiError
from .openapi import openapi_document
from .schemas import ClusterAuth, Health, ModelCard, ModelDescription, ModelList, ModelMeta

T = TypeVar("T")
Endpoint = Callable[[Request], Awaitable[Response]]

# TEI names weight types as torch does.
TEI_DTYPES = {"F32": "float32", "F16": "float16", "BF16": "bfloat16"}
SERVER_VERSION = importlib.metadata.version("rerank-server")


class MsgspecResponse(Response):
    media_type = "application/json"

    def render(self, content: object) -> bytes:
        return msgspec.json.encode(content)


def decode_json(body: bytes) -> Any:
    """The body's JSON, or a 400 that says what is wrong with it.

    UTF-8 is checked here, before msgspec, whose own report of it changed between releases
    (UnicodeDecodeError earlier, a DecodeError without the byte's offset in 0.23).
    """
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ApiError(400, f"the body is not valid UTF-8 (byte {exc.start})") from None
    try:
        return msgspec.json.decode(text)
    except msgspec.DecodeError as exc:
        raise ApiError(400, f"malformed JSON: {exc}") from None
    except RecursionError:
        raise ApiError(400, "malformed JSON: nested too deeply") from None


# What a browser page may send cross-site without asking first (a CORS "simple request"): scoring
# such a body would let any page make a keyless server work, so it is refused, as TEI does.
NOT_JSON = frozenset({"application/x-www-form-urlencoded", "multipart/form-data", "text/plain"})


async def json_body(request: Request) -> Any:
    """The body's JSON; a form or plain-text body is a 415 (curl's -d sends a form without -H)."""
    body = await request.body()
    media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media_type in NOT_JSON:
        raise ApiError(415, f"the body was sent as {media_type}; send it as JSON with "
                            f"Content-Type: application/json (curl: -H 'Content-Type: application/json')")
    return decode_json(body)


def to_request(data: Any, schema: type[T]) -> T:
    """The request as its Struct, or a 400 whose message names the field at fault.

    Clients send harmless variations that a strict schema would refuse: `null` for a field they
    leave unset (Haystack, Dify, langchain-cohere), booleans as strings (RAGFlow's
    `"return_documents": "true"`). A top-level `null` counts as absent, and strings convert to the
    field's type where they spell one (`"true"`, `"3"`); everything else is validated as declared.
    """
    if isinstance(data, dict):
        data = {key: value for key, value in data.items() if value is not None}
    try:
        return msgspec.convert(data, schema, strict=False)
    except msgspec.ValidationError as exc:
        raise ApiError(400, f"invalid request: {exc}") from None


def service(request: Request) -> RerankService:
    return request.app.state.service


async def run_rerank(request: Request, job: RerankJob, model_name: str | None) -> tuple[str, RerankOutcome]:
    served_name, (outcome,) = await run_jobs(request, [job], model_name)
    return served_name, outcome


async def run_jobs(request: Request, jobs: Sequence[RerankJob],
                   model_name: str | None) -> tuple[str, list[RerankOutcome]]:
    """Score a request's jobs (one; a score request has one per distinct query) under the server's
    limits; a timeout or a client that hangs up drops the pairs that are not scored yet. Each job
    takes the request's time limit (admission keeps to it) and, where the request left `normalize`
    unset, the server's default."""
    limits: Limits = request.app.state.limits
    limits.check(RerankJob(query=max((j.query for j in jobs), key=len),
                           documents=[d for j in jobs for d in j.documents]))
    normalize: bool = request.app.state.normalize
    jobs = [msgspec.structs.replace(job, timeout=limits.request_timeout,
                                    normalize=normalize if job.normalize is None else job.normalize) for job in jobs]
    work = asyncio.ensure_future(_score_all(service(request), jobs, model_name))
    hang_up = asyncio.ensure_future(_client_gone(request))
    try:
        done, _ = await asyncio.wait({work, hang_up}, timeout=limits.request_timeout,
                                     return_when=asyncio.FIRST_COMPLETED)
    finally:
        # Also when this request is cancelled (a shutdown past its grace): nobody awaits `work` then.
        hang_up.cancel()
        work.cancel()
    if work not in done:
        if hang_up in done:
            raise ApiError(499, "the client closed the connection; its remaining work was dropped")
        raise ApiError(504, f"the request took longer than {limits.request_timeout:g} s; "
                            f"its remaining work was dropped")
    served_name, outcomes = work.result()  # a fault of the layers below is answered by errors.py
    request.app.state.metrics.observe_rerank(served_name, sum(len(j.documents) for j in jobs),
                                             sum(o.prompt_tokens for o in outcomes))
    return served_name, outcomes


async def _score_all(rerank: RerankService, jobs: Sequence[RerankJob],
                     model_name: str | None) -> tuple[str, list[RerankOutcome]]:
    """Every job's outcome; the first fault cancels the jobs still running (their pairs are dropped)."""
    tasks = [asyncio.ensure_future(rerank.rerank(model_name, job)) for job in jobs]
    try:
        answers = await asyncio.gather(*tasks)
    except BaseException:
        for task in tasks:
            task.cancel()
        raise
    return answers[0][0], [outcome for _, outcome in answers]


async def _client_gone(request: Request) -> None:
    """Returns when the client disconnects (the body has been read, so only that can arrive)."""
    while (await request.receive())["type"] != "http.disconnect":
        pass


def rerank_endpoint(default: Dialect, *others: Dialect) -> Endpoint:
    """A path's handler: the body in `default`'s dialect, or in one of `others`, told apart by the
    field only it sends (TEI sends `texts`, Infinity's clients send `raw_scores`)."""

    async def endpoint(request: Request) -> Response:
        data = await json_body(request)
        dialect = next((d for d in others if isinstance(data, dict) and d.marker in data), default)
        return await answer(request, dialect, data)

    return endpoint


async def answer(request: Request, dialect: Dialect, data: Any) -> Response:
    req = to_request(data, dialect.request)
    served_name, outcome = await run_rerank(request, dialect.to_job(req), dialect.model(req))
    return MsgspecResponse(dialect.to_response(req, served_name, outcome))


async def score(request: Request) -> Response:
    """vLLM's score API: one score per pair, in input order; a distinct query is one job."""
    req = to_request(await json_body(request), vllm.ScoreRequest)
    jobs, owners = vllm.to_jobs(req.pairs())
    served_name, outcomes = await run_jobs(request, jobs, req.model)
    return MsgspecResponse(vllm.to_response(req, served_name, owners, outcomes))


def model_card(info: ModelInfo) -> ModelCard:
    """A model as OpenAI lists it, the service's description under `meta`."""
    meta = ModelMeta(**{field: getattr(info, field) for field in ModelMeta.__struct_fields__})
    return ModelCard(id=info.name, object="model", created=info.loaded_at, owned_by="rerank-server", meta=meta)


async def list_models(request: Request) -> Response:
    """OpenAI-style model list; GPUStack treats a 200 here as ready."""
    return MsgspecResponse(ModelList(object="list", data=[model_card(m) for m in service(request).models()]))


async def describe_model(request: Request) -> Response:
    """`GET /v1/models/{model}`: one model, as OpenAI and Xinference (`model_type`) describe it."""
    card = model_card(service(request).model(request.path_params["model"]))
    return MsgspecResponse(ModelDescription(**msgspec.structs.asdict(card)))


async def cluster_auth(request: Request) -> Response:
    """Xinference's probe, public as there: Dify's Xinference provider asks it without a key."""
    return MsgspecResponse(ClusterAuth(auth=request.app.state.auth_required))


async def tei_info(request: Request) -> Response:
    """TEI's `GET /info` for the first served model (TEI serves one); Dify's TEI provider reads it."""
    model = service(request).model(None)
    limits: Limits = request.app.state.limits
    return MsgspecResponse(TEIInfo(
        model_id=model.repository or model.name, model_sha=None,
        model_dtype=TEI_DTYPES.get(model.quantization or "", (model.quantization or "unknown").lower()),
        served_model_name=model.name,
        model_type=TEIModelType(reranker=TEIClassifier(id2label={"0": "LABEL_0"}, label2id={"LABEL_0": 0})),
        # The queue is bounded in pairs, and every request has at least one.
        max_concurrent_requests=limits.max_queue_pairs, max_input_length=model.context_length,
        max_batch_tokens=model.batch_tokens, max_batch_requests=None,
        max_client_batch_size=limits.max_documents, auto_truncate=True, tokenization_workers=1,
        version=SERVER_VERSION, sha=None, docker_label=None,
    ))


async def health(request: Request) -> Response:
    service(request).check_ready()
    return MsgspecResponse(Health(status="ok"))


async def metrics(request: Request) -> Response:
    return Response(request.app.state.metrics.exposition(), media_type=CONTENT_TYPE_LATEST)


async def openapi(request: Request) -> Response:
    return MsgspecResponse(OPENAPI[request.app.state.auth_required])


class Operation(NamedTuple):
    """A documented endpoint: its route, and the types /openapi.json describes it with."""

    method: str
    path: str
    summary: str
    endpoint: Endpoint
    requests: tuple[Any, ...] = ()
    """Several types mean any one of them."""
    responses: tuple[Any, ...] = ()


def rerank_operation(path: str, summary: str, *dialects: Dialect) -> Operation:
    return Operation("post", path, summary, rerank_endpoint(*dialects),
                     tuple(d.request for d in dialects), tuple(d.response for d in dialects))


# The four paths llama-server answers take Jina's body with `documents` and TEI's with `texts`, as
# there; the bare `/rerank`, Infinity's path, also takes its body with `raw_scores` (elsewhere a
# Jina client's stray `raw_scores` stays harmless).
OPERATIONS = [
    rerank_operation("/v1/rerank", "Rerank documents (Jina / llama-box body with `documents`, or TEI body with "
                     "`texts`)", JINA, TEI),
    rerank_operation("/v1/reranking", "Rerank documents (alias of /v1/rerank)", JINA, TEI),
    rerank_operation("/reranking", "Rerank documents (alias of /v1/rerank)", JINA, TEI),
    rerank_operation("/rerank", "Rerank documents (Jina body with `documents`, TEI body with `texts`, or "
                     "Infinity body with `raw_scores`)", JINA, TEI, INFINITY),
    rerank_operation("/v2/rerank", "Rerank documents (Cohere v2)", COHERE),
    Operation("post", "/v1/score", "Score query-document pairs (vLLM's score API)", score,
              (vllm.ScoreRequest,), (vllm.ScoreResponse,)),
    Operation("post", "/score", "Score query-document pairs (alias of /v1/score)", score,
              (vllm.ScoreRequest,), (vllm.ScoreResponse,)),
    Operation("get", "/v1/models", "List the served models", list_models, (), (ModelList,)),
    Operation("get", "/models", "List the served models (Infinity's and llama-server's path)", list_models, (),
              (ModelList,)),
    Operation("get", "/v1/models/{model:path}", "Describe one model (OpenAI, with Xinference's model_type)",
              describe_model, (), (ModelDescription,)),
    Operation("get", "/info", "The first model, as TEI describes itself", tei_info, (), (TEIInfo,)),
    Operation("get", "/v1/cluster/auth", "Whether requests need an API key (Xinference's probe)", cluster_auth,
              (), (ClusterAuth,)),
    Operation("get", "/health", "Readiness", health, (), (Health,)),
]

ROUTES: list[BaseRoute] = [
    *(Route(op.path, op.endpoint, methods=[op.method.upper()]) for op in OPERATIONS),
    Route("/metrics", metrics, methods=["GET"]),
    Route("/openapi.json", openapi, methods=["GET"]),
    *DOCS_ROUTES,
]

# Answered without an API key, as the real servers answer them: orchestrators probe /health,
# Xinference clients ask /v1/cluster/auth before they know whether to send a key, and the API page
# (/docs, its files and /openapi.json) describes an API that is not secret; calls made from the
# page still need the key.
PUBLIC_PATHS = ("/health", "/v1/cluster/auth", *DOCS_PUBLIC_PATHS)
# With API keys and without: a bearer scheme is declared only where keys are required.
OPENAPI = {keys: openapi_document(OPERATIONS, public=PUBLIC_PATHS, keys=keys) for keys in (True, False)}
