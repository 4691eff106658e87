"""Requests generated from the service's own OpenAPI document: never a 5xx, always a well-formed error."""

from __future__ import annotations

import hypothesis
import pytest
import schemathesis

from .conftest import RunningServer

OPERATIONS = [("POST", "/v1/rerank"), ("POST", "/rerank"), ("POST", "/v2/rerank"), ("GET", "/v1/models"),
              ("GET", "/health")]


def check(response) -> None:
    assert response.status_code < 500, response.text
    if response.status_code >= 400:
        error = response.json()["error"]
        assert error["code"] == response.status_code
        assert isinstance(error["message"], str) and error["message"]
        assert isinstance(error["type"], str)


@pytest.mark.parametrize("method,path", OPERATIONS)
def test_no_server_errors(server: RunningServer, method: str, path: str):
    schema = schemathesis.openapi.from_url(f"{server.url}/openapi.json")
    operation = schema[path][method]

    # Valid requests, then (where there is a body to break) requests that break the schema on purpose.
    modes = [schemathesis.GenerationMode.POSITIVE]
    if method == "POST":
        modes.append(schemathesis.GenerationMode.NEGATIVE)
    for strategy in (operation.as_strategy(generation_mode=mode) for mode in modes):
        @hypothesis.given(case=strategy)
        @hypothesis.settings(max_examples=40, deadline=None, derandomize=True, database=None,
                             suppress_health_check=list(hypothesis.HealthCheck))
        def run(case) -> None:
            check(case.call(base_url=server.url))

        run()
