"""Answers that arrive: a response sent before the request body was read (a 413 for a large
body, a 401 for a bad key) waits until the client has finished sending.

Closing a socket that still holds unread data makes the kernel answer with a reset, and a client
that sends its whole body before reading (Python's urllib, curl on a slow link, most HTTP/1.1
libraries) then sees "connection reset" instead of the 413. nginx's lingering close solves it the
same way: read and discard what the client still sends, bounded in bytes and seconds, then close.
"""

from __future__ import annotations

import asyncio

from starlette.types import ASGIApp, Message, Receive, Scope, Send

LINGER_BYTES = 256 * 1024 * 1024
"""At most this much of an unwanted body is read and discarded; a larger one is reset."""
LINGER_SECONDS = 10.0
"""Nor for longer than this: a client that stalls does not hold the connection."""


class LingeringClose:
    def __init__(self, app: ASGIApp, max_bytes: int = LINGER_BYTES, max_seconds: float = LINGER_SECONDS) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.max_seconds = max_seconds

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = dict(scope.get("headers", [])) if scope["type"] == "http" else {}
        if not (headers.get(b"content-length", b"0") != b"0" or b"transfer-encoding" in headers):
            await self.app(scope, receive, send)
            return
        body_read = False

        async def tracked_receive() -> Message:
            nonlocal body_read
            message = await receive()
            body_read = message["type"] != "http.request" or not message.get("more_body", False)
            return message

        async def lingering_send(message: Message) -> None:
            if message["type"] == "http.response.body" and not message.get("more_body") and not body_read:
                # Hold the response open (its bytes are sent) while the rest of the body is read.
                await send({**message, "more_body": True})
                await self._discard_body(receive)
                message = {"type": "http.response.body", "body": b"", "more_body": False}
            await send(message)

        await self.app(scope, tracked_receive, lingering_send)

    async def _discard_body(self, receive: Receive) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.max_seconds
        discarded = 0
        while discarded <= self.max_bytes and (left := deadline - loop.time()) > 0:
            try:
                message = await asyncio.wait_for(receive(), left)
            except asyncio.TimeoutError:  # TimeoutError itself from Python 3.11
                return
            if message["type"] != "http.request":
                return
            discarded += len(message.get("body", b""))
            if not message.get("more_body", False):
                return
