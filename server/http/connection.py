"""What a connection may cost before its request reaches the application: the request head must
arrive in time and stay small, as nginx's `client_header_timeout` and `large_client_header_buffers`
decide for it. Without them a client that opens connections and sends nothing, or a header line
every few seconds, or a header of many megabytes, holds memory and descriptors for as long as it
likes. (The body's size and time are the application's: server/http/body_limit.py.)

uvicorn's httptools protocol reads the head; this subclass of it adds the two limits.
"""

from __future__ import annotations

import asyncio

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from .errors import error_body

REASONS = {408: b"Request Timeout", 431: b"Request Header Fields Too Large"}
LINGER_SECONDS = 2.0
"""After a refusal, what the client still sends is read and dropped this long before the close, so
its kernel does not meet a reset before it has read the answer (server/http/lingering.py says why)."""


class GuardedHttpTools(HttpToolsProtocol):
    """uvicorn's protocol, with a deadline and a size limit on each request head.

    The deadline runs from the connection's opening for its first request, and from the first
    bytes of each later one (between requests, uvicorn's keep-alive timeout closes an idle
    connection). A connection that sent nothing is closed silently; a partial head gets a 408."""

    head_timeout: float = 30.0
    max_head_bytes: int = 64 * 1024

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)  # type: ignore[arg-type]
        self._head_bytes: int | None = 0
        """Bytes read of a head not yet complete; None while a request's body and answer are under way."""
        self._head_size = 0
        """The parsed head's URL and headers, for a head that arrives whole in one read."""
        self._head_timer: asyncio.TimerHandle | None = None
        self._refused = False
        self._completed = False
        """A request ended in the chunk being read: the bytes after it begin a new head."""
        self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._refused:
            return
        reading_head = self._head_bytes is not None
        if reading_head:
            self._arm()
        self._completed = False
        super().data_received(data)
        # A chunk that began in a head and did not finish it, nor a whole request, is all head.
        # Counting after the parser has seen it bounds what the parser holds by the limit plus one read.
        if (reading_head and self._head_bytes is not None and not self._completed and not self._refused
                and not self.transport.is_closing()):
            self._head_bytes += len(data)
            if self._head_bytes > self.max_head_bytes:
                self._refuse_too_large()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._head_size = 0

    def on_url(self, url: bytes) -> None:
        super().on_url(url)
        self._head_size += len(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        super().on_header(name, value)
        self._head_size += len(name) + len(value) + 4

    def on_headers_complete(self) -> None:
        self._head_bytes = None
        self._disarm()
        if self._refused:
            return
        if self._head_size > self.max_head_bytes:  # a head that arrived whole, with its request, in one read
            self._refuse_too_large()
            return
        super().on_headers_complete()

    def on_body(self, body: bytes) -> None:
        if not self._refused:
            super().on_body(body)

    def on_message_complete(self) -> None:
        if self._refused:
            return
        super().on_message_complete()
        self._head_bytes = 0
        self._completed = True

    def _arm(self) -> None:
        if self._head_timer is None:
            self._head_timer = self.loop.call_later(self.head_timeout, self._head_timed_out)

    def _disarm(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if self._refused or self.transport.is_closing() or self._head_bytes is None:
            return
        if self.cycle is not None and not self.cycle.response_complete:
            self._arm()  # a pipelined head waits while the request before it is answered
        elif self._head_bytes == 0:
            self.transport.close()
        else:
            self._refuse(408, f"the request head did not arrive within {self.head_timeout:g} s")

    def _refuse_too_large(self) -> None:
        self._refuse(431, f"the request head (line and headers) is larger than the limit of "
                          f"{self.max_head_bytes} bytes")

    def _refuse(self, status: int, message: str) -> None:
        """Answer in the error envelope and close: the head is not read, so the connection is lost."""
        self._refused = True
        body = error_body(status, message)
        head = [b"HTTP/1.1 %d %s\r\n" % (status, REASONS[status])]
        head += [name + b": " + value + b"\r\n" for name, value in self.server_state.default_headers]
        head += [b"content-type: application/json\r\n", b"content-length: %d\r\n" % len(body),
                 b"connection: close\r\n\r\n"]
        self.transport.write(b"".join(head) + body)
        if self.transport.can_write_eof():
            self.transport.write_eof()
            self.loop.call_later(LINGER_SECONDS, self.transport.close)
        else:
            self.transport.close()


def guarded_protocol(head_timeout: float, max_head_bytes: int) -> type[GuardedHttpTools]:
    """The protocol class uvicorn is given (it instantiates it per connection)."""
    return type("GuardedHttpTools", (GuardedHttpTools,),
                {"head_timeout": head_timeout, "max_head_bytes": max_head_bytes})
