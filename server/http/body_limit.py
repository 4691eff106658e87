"""The request body's limits, on size and on time, checked while the body streams in: a client can
never make the server buffer more than the size limit, nor hold a connection open by sending its
body a byte at a time (nginx's `client_max_body_size` and `client_body_timeout`)."""

from __future__ import annotations

import asyncio

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .errors import ApiError, error_response


class BodyLimit:
    """413 before reading a body whose Content-Length is too large, or as soon as a streamed body
    (chunked, or lying about its length) passes the limit; 408 when the whole body has not arrived
    within `timeout` seconds of the request head."""

    def __init__(self, app: ASGIApp, max_bytes: int, timeout: float) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.timeout = timeout

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.max_bytes):
            response = error_response(413, self._message(), headers={"Connection": "close"})
            await response(scope, receive, send)
            return
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.timeout
        received = 0
        complete = False

        async def counted_receive() -> Message:
            nonlocal received, complete
            if complete:  # past the body, receive() waits for a disconnect: no deadline for that
                return await receive()
            try:
                message = await asyncio.wait_for(receive(), max(deadline - loop.time(), 0))
            except asyncio.TimeoutError:  # TimeoutError itself from Python 3.11
                raise ApiError(408, f"the request body did not arrive within {self.timeout:g} s",
                               headers={"Connection": "close"}) from None
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise ApiError(413, self._message())
                complete = not message.get("more_body", False)
            return message

        await self.app(scope, counted_receive, send)

    def _message(self) -> str:
        return f"the request body is larger than the limit of {self.max_bytes} bytes"
