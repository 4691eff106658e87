"""http/errors.py: every fault of the layers below answers with one status, type and headers."""

from __future__ import annotations

import msgspec
import pytest
from starlette.applications import Starlette
from starlette.routing import Route
from starlette.testclient import TestClient

from server import faults
from server.http.errors import EXCEPTION_HANDLERS, fault_answer


@pytest.mark.parametrize("fault,status,kind,retry", [
    (faults.InputError("x"), 400, "invalid_request_error", False),
    (faults.InputTooLongError("x"), 400, "invalid_request_error", False),
    (faults.TooLarge("x"), 413, "request_too_large_error", False),
    (faults.TooManyWindows("x"), 413, "request_too_large_error", False),
    (faults.ModelNotFound("x"), 404, "model_not_found", False),
    (faults.ModelNotReady("x"), 503, "unavailable_error", False),
    (faults.SchedulerClosed("x"), 503, "unavailable_error", False),
    (faults.Busy("x"), 503, "unavailable_error", True),
    (faults.QueueFull("x"), 503, "unavailable_error", True),
], ids=lambda v: type(v).__name__ if isinstance(v, Exception) else None)
def test_each_fault_is_answered_by_the_table(fault, status, kind, retry):
    async def raising(request):
        raise fault

    app = Starlette(routes=[Route("/", raising)], exception_handlers=EXCEPTION_HANDLERS)
    r = TestClient(app).get("/")
    assert r.status_code == status
    assert r.json() == {"error": {"code": status, "message": fault_answer(fault).message.format(fault),
                                  "type": kind}}
    assert (r.headers.get("retry-after") == "1") is retry


def test_an_overloaded_model_says_when_to_retry():
    """Admission's refusal carries its own retry time, across a pickle too (a Ray replica's fault)."""
    import pickle

    async def raising(request):
        raise pickle.loads(pickle.dumps(faults.Overloaded("3 requests hold 9000 tokens", 7)))

    app = Starlette(routes=[Route("/", raising)], exception_handlers=EXCEPTION_HANDLERS)
    r = TestClient(app).get("/")
    assert r.status_code == 503 and r.headers["retry-after"] == "7"
    assert r.json()["error"]["message"] == "3 requests hold 9000 tokens"


def test_a_full_queue_says_the_server_is_busy():
    assert fault_answer(faults.QueueFull("12 pairs are waiting")).message.format(
        faults.QueueFull("12 pairs are waiting")) == "the server is busy (12 pairs are waiting); retry shortly"


def test_every_fault_class_has_an_answer():
    def subclasses(cls):
        for sub in cls.__subclasses__():
            yield sub
            yield from subclasses(sub)

    for cls in subclasses(faults.Fault):
        assert fault_answer(cls("x")).status in (400, 404, 413, 503), cls


def test_the_envelope_is_the_same_for_every_error():
    from server.http.schemas import ErrorBody

    async def raising(request):
        raise faults.ModelNotFound("model 'x' is not served here")

    app = Starlette(routes=[Route("/", raising)], exception_handlers=EXCEPTION_HANDLERS)
    body = TestClient(app).get("/").content
    assert msgspec.json.decode(body, type=ErrorBody).error.code == 404
