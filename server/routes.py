"""HTTP endpoints: decode and validate the request, call the rerank service, shape the answer.

Nothing here knows llama.cpp; the registry on `app.state` hands out the served model.
"""

from __future__ import annotations

from typing import TypeVar

import msgspec
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from .engine import InputTooLongError
from .errors import ApiError
from .registry import LoadState, ModelRegistry
from .rerank import RerankJob, RerankOutcome, rerank
from .schemas import Health, RerankRequest, RerankResponse, RerankResult, ResultDocument, Usage

T = TypeVar("T")


class MsgspecResponse(Response):
    media_type = "application/json"

    def render(self, content: object) -> bytes:
        return msgspec.json.encode(content)


def decode_body(body: bytes, schema: type[T]) -> T:
    """The request as its Struct, or a 400 whose message names the field at fault."""
    try:
        return msgspec.json.decode(body, type=schema)
    except msgspec.ValidationError as exc:
        raise ApiError(400, f"invalid request: {exc}") from None
    except msgspec.DecodeError as exc:
        raise ApiError(400, f"malformed JSON: {exc}") from None


def registry(request: Request) -> ModelRegistry:
    return request.app.state.registry


async def run_rerank(request: Request, job: RerankJob, model_name: str | None) -> tuple[str, RerankOutcome]:
    model = registry(request).get(model_name)
    try:
        return model.name, await rerank(model, job)
    except InputTooLongError as exc:
        raise ApiError(400, str(exc)) from None


async def rerank_endpoint(request: Request) -> Response:
    """`POST /v1/rerank`: the Jina / llama-box dialect."""
    req = decode_body(await request.body(), RerankRequest)
    texts = req.document_texts()
    job = RerankJob(query=req.query, documents=texts, top_n=req.top_n,
                    normalize=req.normalize, truncate=req.truncate)
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


async def health(request: Request) -> Response:
    reg = registry(request)
    if reg.state is not LoadState.READY:
        reg.get(None)  # raises the 503 that says why
    return MsgspecResponse(Health(status="ok"))


ROUTES = [
    Route("/v1/rerank", rerank_endpoint, methods=["POST"]),
    Route("/health", health, methods=["GET"]),
]
