"""Every error the HTTP API answers is JSON, a bug's included, and a bug's details stay in the
service's log."""

from __future__ import annotations

import asyncio
import logging

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from swapwatch.errors import ConfigError
from swapwatch.server.app import errors_as_json


async def a_bug(request: web.Request) -> web.Response:
    raise AttributeError("'NoneType' object has no attribute 'stop'")


async def bad_input(request: web.Request) -> web.Response:
    raise ConfigError("the body must be a JSON object")


def test_a_bug_is_answered_as_json_and_logged_without_reaching_the_client(
    caplog: pytest.LogCaptureFixture,
) -> None:
    app = web.Application(middlewares=[errors_as_json])
    app.router.add_delete("/v1/streams/x", a_bug)
    app.router.add_post("/v1/streams", bad_input)

    async def main() -> tuple[int, object, int, object]:
        async with TestClient(TestServer(app)) as client:
            bug = await client.delete("/v1/streams/x")
            invalid = await client.post("/v1/streams")
            return bug.status, await bug.json(), invalid.status, await invalid.json()

    with caplog.at_level(logging.ERROR, logger="swapwatch.server.app"):
        bug_status, bug_body, invalid_status, invalid_body = asyncio.run(main())
    assert bug_status == 500
    assert bug_body == {
        "error": {
            "status": 500,
            "kind": "internal",
            "message": "internal error (see the service log)",
        }
    }
    assert "NoneType" not in str(bug_body)  # a bug's details are for the operator
    (record,) = [r for r in caplog.records if r.name == "swapwatch.server.app"]
    assert "DELETE /v1/streams/x failed" in record.getMessage() and record.exc_info is not None
    assert invalid_status == 400 and invalid_body["error"]["kind"] == "invalid"
