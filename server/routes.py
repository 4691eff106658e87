"""HTTP endpoints: decode and validate the request, call the rerank service, shape the answer.

Nothing here knows llama.cpp or Ray; the rerank service on `app.state` (server/service.py) holds the
models, in this process or in Ray Serve replicas.
"""

from __future__ import annotations

import asyncio
import importlib.metadata
import time
import uuid
from typing import Any, TypeVar

import msgspec
from prometheus_client import CONTENT_TYPE_LATEST
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from .docs import DOCS_PUBLIC_PATHS, DOCS_ROUTES
from .errors import ApiError
from .jobs import RerankJob, RerankOutcome
from .limits import Limits
from .openapi import openapi_document
from .schemas import (
    ClusterAuth,
    CohereApiVersion,
    CohereBilledUnits,
    CohereMeta,
    CohereRerankRequest,
    CohereRerankResponse,
    CohereResult,
    CohereTokens,
    Health,
    InfinityRerankRequest,
    InfinityRerankResponse,
    InfinityResult,
    ModelCard,
    ModelDescription,
    ModelList,
    ModelMeta,
    RerankRequest,
    RerankResponse,
    RerankResult,
    ResultDocument,
    TEIClassifier,
    TEIInfo,
    TEIModelType,
    TEIRank,
    TEIRerankRequest,
    Usage,
)
from .service import ModelInfo, RerankService

T = TypeVar("T")

# Cohere's documented default for `max_tokens_per_doc`.
COHERE_MAX_TOKENS_PER_DOC = 4096
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


def decode_body(body: bytes, schema: type[T]) -> T:
    return to_request(decode_json(body), schema)


def service(request: Request) -> RerankService:
    return request.app.state.service


async def run_rerank(request: Request, job: RerankJob, model_name: str | None) -> tuple[str, RerankOutcome]:
    """Score a job under the server's limits; a timeout or a client that hangs up drops the
    request's pairs that are not scored yet."""
    limits: Limits = request.app.state.limits
    limits.check(job)
    work = asyncio.ensure_future(service(request).rerank(model_name, job))
    hang_up = asyncio.ensure_future(_client_gone(request))
    try:
        done, _ = await asyncio.wait({work, hang_up}, timeout=limits.request_timeout,
                                     return_when=asyncio.FIRST_COMPLETED)
    finally:
        hang_up.cancel()
    if work not in done:
        work.cancel()
        if hang_up in done:
            raise ApiError(499, "the client closed the connection; its remaining work was dropped")
        raise ApiError(504, f"the request took longer than {limits.request_timeout:g} s; "
                            f"its remaining work was dropped")
    served_name, outcome = work.result()  # a fault of the layers below is answered by errors.py
    request.app.state.metrics.observe_rerank(served_name, len(job.documents), outcome.prompt_tokens)
    return served_name, outcome


async def _client_gone(request: Request) -> None:
    """Returns when the client disconnects (the body has been read, so only that can arrive)."""
    while (await request.receive())["type"] != "http.disconnect":
        pass


async def rerank_endpoint(request: Request) -> Response:
    """`POST /v1/rerank`: the Jina / llama-box dialect (and TEI's on `/rerank`)."""
    data = decode_json(await request.body())
    if request.url.path == "/rerank" and isinstance(data, dict):
        # The bare path is shared: TEI sends `texts`, Infinity's clients send `raw_scores`.
        if "texts" in data:
            return await tei_rerank(request, to_request(data, TEIRerankRequest))
        if "raw_scores" in data:
            return await infinity_rerank(request, to_request(data, InfinityRerankRequest))
    req = to_request(data, RerankRequest)
    texts = req.document_texts()
    job = RerankJob(query=req.query, documents=texts, top_n=req.top_n, normalize=req.normalize,
                    truncate=req.truncate, instruction=req.instruction, long_documents=req.long_documents)
    served_name, outcome = await run_rerank(request, job, req.model)
    results = [
        RerankResult(
            index=r.index,
            document=ResultDocument(texts[r.index]) if req.return_documents else None,
            relevance_score=r.score,
        )
        for r in outcome.ranked
    ]
    usage = Usage(prompt_tokens=outcome.prompt_tokens, total_tokens=outcome.prompt_tokens)
    return MsgspecResponse(RerankResponse(model=req.model or served_name, object="list",
                                          results=results, usage=usage))


async def tei_rerank(request: Request, req: TEIRerankRequest) -> Response:
    """TEI's answer is a bare array; scores are sigmoids unless `raw_scores`."""
    job = RerankJob(query=req.query, documents=req.texts, top_n=req.top_n, probabilities=not req.raw_scores,
                    truncate=req.truncate, long_documents=req.long_documents)
    _, outcome = await run_rerank(request, job, None)
    ranks = [TEIRank(index=r.index, score=r.score, text=req.texts[r.index] if req.return_text else None)
             for r in outcome.ranked]
    return MsgspecResponse(ranks)


async def infinity_rerank(request: Request, req: InfinityRerankRequest) -> Response:
    """Infinity's answer: `object` "rerank", documents as strings, sigmoid scores unless `raw_scores`."""
    job = RerankJob(query=req.query, documents=req.documents, top_n=req.top_n, probabilities=not req.raw_scores)
    served_name, outcome = await run_rerank(request, job, req.model)
    results = [InfinityResult(relevance_score=r.score, index=r.index,
                              document=req.documents[r.index] if req.return_documents else None)
               for r in outcome.ranked]
    usage = Usage(prompt_tokens=outcome.prompt_tokens, total_tokens=outcome.prompt_tokens)
    return MsgspecResponse(InfinityRerankResponse(results=results, model=req.model or served_name, usage=usage,
                                                  id=str(uuid.uuid4()), created=int(time.time())))


async def cohere_rerank(request: Request) -> Response:
    """`POST /v2/rerank`: Cohere's v2 API, scores in [0, 1]."""
    req = decode_body(await request.body(), CohereRerankRequest)
    # Cohere's long documents: cut to max_tokens_per_doc, then scored in non-overlapping chunks.
    job = RerankJob(query=req.query, documents=req.document_texts(), top_n=req.top_n, probabilities=True,
                    max_doc_tokens=req.max_tokens_per_doc or COHERE_MAX_TOKENS_PER_DOC, long_documents="chunks")
    _, outcome = await run_rerank(request, job, req.model)
    meta = CohereMeta(
        api_version=CohereApiVersion(version="2"),
        billed_units=CohereBilledUnits(search_units=1),
        tokens=CohereTokens(input_tokens=outcome.prompt_tokens, output_tokens=0),
    )
    results = [CohereResult(index=r.index, relevance_score=r.score) for r in outcome.ranked]
    return MsgspecResponse(CohereRerankResponse(id=str(uuid.uuid4()), results=results, meta=meta))


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
    return MsgspecResponse(OPENAPI)


RERANK_PATHS = ("/v1/rerank", "/rerank", "/v1/reranking", "/reranking")

ROUTES = [
    *(Route(path, rerank_endpoint, methods=["POST"]) for path in RERANK_PATHS),
    Route("/v2/rerank", cohere_rerank, methods=["POST"]),
    Route("/v1/models", list_models, methods=["GET"]),
    Route("/v1/models/{model:path}", describe_model, methods=["GET"]),
    Route("/info", tei_info, methods=["GET"]),
    Route("/v1/cluster/auth", cluster_auth, methods=["GET"]),
    Route("/health", health, methods=["GET"]),
    Route("/metrics", metrics, methods=["GET"]),
    Route("/openapi.json", openapi, methods=["GET"]),
    *DOCS_ROUTES,
]

# Answered without an API key, as the real servers answer them: orchestrators probe /health,
# Xinference clients ask /v1/cluster/auth before they know whether to send a key, and the API page
# (/docs, its files and /openapi.json) describes an API that is not secret; calls made from the
# page still need the key.
PUBLIC_PATHS = ("/health", "/v1/cluster/auth", *DOCS_PUBLIC_PATHS)
OPENAPI = openapi_document(public=PUBLIC_PATHS)
