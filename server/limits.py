"""Request limits for a public endpoint: one place decides sizes, counts and time.

The body limit is checked from the headers and again while the body streams in, so a client can
never make the server buffer more than the limit. Document counts and text lengths are checked
after decoding and before any tokenisation work.
"""

from __future__ import annotations

from typing import Annotated

import msgspec
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .errors import ApiError, error_response
from .jobs import RerankJob

Positive = Annotated[int, msgspec.Meta(gt=0)]


class Limits(msgspec.Struct, frozen=True, kw_only=True):
    max_body_bytes: Positive = 16 * 1024 * 1024
    max_documents: Positive = 1000
    """Cohere's advice is at most 1,000 documents per request; llama-server hangs on 200,000."""
    max_text_chars: Positive = 200_000
    """Per query or document: about 50,000 tokens, far past any reranker's context."""
    max_queue_pairs: Positive = 16_384
    """Pairs waiting per model before new requests get 503 + Retry-After."""
    request_timeout: Annotated[float, msgspec.Meta(gt=0)] = 120.0

    def check(self, job: RerankJob) -> None:
        if len(job.documents) > self.max_documents:
            raise ApiError(413, f"{len(job.documents)} documents is more than the limit of "
                                f"{self.max_documents} per request")
        if len(job.query) > self.max_text_chars:
            raise ApiError(413, f"the query is {len(job.query)} characters, more than the limit of "
                                f"{self.max_text_chars}")
        for index, document in enumerate(job.documents):
            if len(document) > self.max_text_chars:
                raise ApiError(413, f"document {index} is {len(document)} characters, more than the "
                                    f"limit of {self.max_text_chars}")


class BodyLimit:
    """413 before reading a body whose Content-Length is too large, or as soon as a streamed body
    (chunked, or lying about its length) passes the limit."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.max_bytes):
            response = error_response(413, self._message(), headers={"Connection": "close"})
            await response(scope, receive, send)
            return
        received = 0

        async def counted_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise ApiError(413, self._message())
            return message

        await self.app(scope, counted_receive, send)

    def _message(self) -> str:
        return f"the request body is larger than the limit of {self.max_bytes} bytes"
