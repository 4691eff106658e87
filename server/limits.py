"""Request limits for a public endpoint: one place decides sizes, counts and time.

Document counts and text lengths are checked after decoding and before any tokenisation work; the
body's size and time are checked by the HTTP layer while it streams in (server/http/body_limit.py),
and the request head's by the connection (server/http/connection.py).
"""

from __future__ import annotations

from typing import Annotated

import msgspec

from .faults import TooLarge
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
    """From the body's arrival to the answer."""
    header_timeout: Annotated[float, msgspec.Meta(gt=0)] = 30.0
    """A request's line and headers arrive within this, or 408 (nginx waits 60 s)."""
    body_timeout: Annotated[float, msgspec.Meta(gt=0)] = 60.0
    """The whole body arrives within this after the head, or 408: the largest body then needs
    about 280 KB/s. nginx's 60 s is between two reads, which a byte every few seconds resets."""
    max_header_bytes: Positive = 64 * 1024
    """The request line and headers together; more is a 431 (nginx refuses past 4 x 8 KB)."""

    def check(self, job: RerankJob) -> None:
        if len(job.documents) > self.max_documents:
            raise TooLarge(f"{len(job.documents)} documents is more than the limit of "
                           f"{self.max_documents} per request")
        if len(job.query) > self.max_text_chars:
            raise TooLarge(f"the query is {len(job.query)} characters, more than the limit of "
                           f"{self.max_text_chars}")
        for index, document in enumerate(job.documents):
            if len(document) > self.max_text_chars:
                raise TooLarge(f"document {index} is {len(document)} characters, more than the "
                               f"limit of {self.max_text_chars}")
