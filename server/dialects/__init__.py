"""The clients' dialects of reranking: each module holds one dialect's request and response
Structs and the two functions between them and the service's job and outcome.

A new dialect is one module and one line in the route table (server/http/routes.py); nothing below
the routes knows which dialect a job came from.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from ..jobs import RerankJob, RerankOutcome

Req = TypeVar("Req")


@dataclass(frozen=True)
class Dialect(Generic[Req]):
    name: str
    request: type[Req]
    response: Any
    """The answer's type, for the OpenAPI document."""
    to_job: Callable[[Req], RerankJob]
    to_response: Callable[[Req, str, RerankOutcome], object]
    """From the request, the served model's name and the outcome to the answer's Struct."""
    marker: str | None = None
    """A top-level field only this dialect sends, which tells it apart on a shared path."""

    def model(self, request: Req) -> str | None:
        """The model the request names, if its dialect has the field (TEI's has none)."""
        return getattr(request, "model", None)
