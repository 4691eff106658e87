"""The one error envelope: `{"error": {"code": N, "message": "...", "type": "..."}}` with status N.

Every failure a client can see goes through here, so the shape never varies: validation errors,
unknown paths and methods, overload, and unexpected faults (a 500 that keeps the server up).
"""

from __future__ import annotations

import logging

import msgspec
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response

from ..faults import Busy, Fault, InputError, ModelNotFound, QueueFull, TooLarge, Unavailable
from .schemas import ErrorBody, ErrorDetail

log = logging.getLogger(__name__)

ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    404: "not_found_error",
    405: "method_not_allowed_error",
    408: "request_timeout_error",
    413: "request_too_large_error",
    415: "unsupported_media_type_error",
    431: "request_too_large_error",
    499: "client_closed_request",
    500: "server_error",
    503: "unavailable_error",
    504: "timeout_error",
}


class ApiError(Exception):
    """An error answered to the client as it is."""

    def __init__(self, status: int, message: str, type: str | None = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type or ERROR_TYPES.get(status, "error")
        self.headers = headers


class FaultAnswer(msgspec.Struct, frozen=True):
    status: int
    type: str | None = None
    message: str = "{}"
    """The fault's message placed in the client's words."""
    retry_after: bool = False


# The one table from a fault of the layers below HTTP to its answer; a fault takes the entry of
# its nearest class.
FAULT_ANSWERS: dict[type[Fault], FaultAnswer] = {
    InputError: FaultAnswer(400),
    TooLarge: FaultAnswer(413),
    ModelNotFound: FaultAnswer(404, "model_not_found"),
    Unavailable: FaultAnswer(503),
    Busy: FaultAnswer(503, retry_after=True),
    QueueFull: FaultAnswer(503, message="the server is busy ({}); retry shortly", retry_after=True),
}


def fault_answer(fault: Fault) -> FaultAnswer:
    return next(FAULT_ANSWERS[cls] for cls in type(fault).__mro__ if cls in FAULT_ANSWERS)


def error_body(status: int, message: str, type: str | None = None) -> bytes:
    return msgspec.json.encode(ErrorBody(ErrorDetail(code=status, message=message,
                                                     type=type or ERROR_TYPES.get(status, "error"))))


def error_response(status: int, message: str, type: str | None = None,
                   headers: dict[str, str] | None = None) -> Response:
    return Response(error_body(status, message, type), status_code=status, media_type="application/json",
                    headers=headers)


async def api_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    return error_response(exc.status, exc.message, exc.type, exc.headers)


async def fault_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, Fault)
    answer = fault_answer(exc)
    retry_after = exc.retry_after if isinstance(exc, Busy) else 1
    return error_response(answer.status, answer.message.format(exc), answer.type,
                          {"Retry-After": str(retry_after)} if answer.retry_after else None)


async def http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    message = {404: f"no route for {request.url.path}",
               405: f"{request.method} is not allowed on {request.url.path}"}.get(exc.status_code, exc.detail)
    return error_response(exc.status_code, message, headers=exc.headers)


async def client_gone(request: Request, exc: Exception) -> Response:
    """The client left before its body arrived: nobody will read an answer, and it is no fault."""
    log.info("client left during the request body of %s %s", request.method, request.url.path)
    return error_response(499, "the client closed the connection")


async def server_error(request: Request, exc: Exception) -> Response:
    request_id = request.scope.get("state", {}).get("request_id", "-")
    log.error("unexpected error on %s %s (request %s)", request.method, request.url.path, request_id, exc_info=exc)
    return error_response(500, f"internal error ({type(exc).__name__}) in request {request_id}; "
                               f"the server keeps serving")


EXCEPTION_HANDLERS = {ApiError: api_error, Fault: fault_error, HTTPException: http_error,
                      ClientDisconnect: client_gone, Exception: server_error}
