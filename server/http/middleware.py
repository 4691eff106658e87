"""ASGI middleware: request ids and access logs, the answer at shutdown, and API keys.

Pure ASGI (not BaseHTTPMiddleware) so a streaming body and a client that hangs up pass through
untouched.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import re
import time
import uuid
from collections.abc import Sequence

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .errors import error_response
from .metrics import Metrics

access_log = logging.getLogger("server.access")

REQUEST_ID = "x-request-id"
_SAFE_REQUEST_ID = re.compile(r"^[\w.:-]{1,128}$")


class RequestContext:
    """Gives every request an id (the client's `X-Request-ID` if it is sane), returns it in the
    response, logs one JSON line per request and counts it in the metrics."""

    def __init__(self, app: ASGIApp, metrics: Metrics, routes: Sequence[str]) -> None:
        self.app = app
        self.metrics = metrics
        self.routes = frozenset(routes)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        sent = dict(scope["headers"]).get(REQUEST_ID.encode(), b"").decode("latin-1")
        request_id = sent if _SAFE_REQUEST_ID.match(sent) else uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = request_id
        started = time.perf_counter()
        status = 500

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", []), (REQUEST_ID.encode(), request_id.encode())]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            elapsed = time.perf_counter() - started
            route = scope["path"] if scope["path"] in self.routes else "other"
            self.metrics.requests.labels(route, scope["method"], str(status)).inc()
            self.metrics.latency.labels(route).observe(elapsed)
            access_log.info(json.dumps({
                "request_id": request_id, "method": scope["method"], "path": scope["path"],
                "status": status, "ms": round(elapsed * 1000, 2),
                "client": scope["client"][0] if scope.get("client") else None,
            }))


class ShutdownAnswer:
    """A request still running when the shutdown grace ends is cancelled by uvicorn, which would
    answer a plain-text 500; it gets the 503 envelope instead, on a connection that then closes."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracked_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, tracked_send)
        except asyncio.CancelledError:
            if started:
                raise
            # The cancellation ends this request's work; answering is all that is left of it.
            response = error_response(503, "the server shut down before this request finished; send it again",
                                      headers={"Retry-After": "1", "Connection": "close"})
            await response(scope, receive, send)


class ApiKeys:
    """`Authorization: Bearer KEY` on every path but the public ones; keys compared in constant time.

    A bare `Authorization: KEY` is accepted too: LlamaIndex's TEI postprocessor sends its token so.
    With no keys configured nothing is checked, so `Bearer None` or an empty bearer pass."""

    def __init__(self, app: ASGIApp, keys: Sequence[str], public: Sequence[str] = ()) -> None:
        self.app = app
        self.keys = [key.encode() for key in keys]
        self.public = frozenset(public)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not self.keys or scope["path"] in self.public:
            await self.app(scope, receive, send)
            return
        header = dict(scope["headers"]).get(b"authorization", b"").strip()
        scheme, _, token = header.partition(b" ")
        token = token.strip() if scheme.lower() == b"bearer" else header
        # Compare against every key, so the time taken does not tell which one came close.
        if any([hmac.compare_digest(token, key) for key in self.keys]):
            await self.app(scope, receive, send)
            return
        message = "missing API key: send `Authorization: Bearer <key>`" if not header else "invalid API key"
        response = error_response(401, message, headers={"WWW-Authenticate": "Bearer"})
        await response(scope, receive, send)
