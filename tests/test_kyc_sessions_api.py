"""The sessions API: creating and reading sessions, refusing bad ones by field, and auth."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from service import RunningService, running_service

from swapwatch.server.config import ServiceConfig

TOKEN = "s3cret-token-for-tests"


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningService]:
    from media import write_linear_model

    model = write_linear_model(tmp_path_factory.mktemp("model") / "model.onnx")
    config = ServiceConfig(analysis={"model": model}, auth={"token": TOKEN})
    with running_service(config) as running:
        yield running


def create(service: RunningService, body: Any, token: str | None = TOKEN) -> Any:
    return service.request("POST", "/v1/sessions", body, token=token)


def test_a_session_is_created_waiting_for_its_connection(service: RunningService) -> None:
    reply = create(service, {"count": 2, "kinds": ["turn_left", "turn_right"]})
    assert reply.status == 201, reply.body
    session = reply.body
    assert session["state"] == "waiting" and session["verdict"] is None
    assert session["challenges"] == 2  # how many, not which: those are told one by one
    assert session["offer"] == {"url": "/v1/webrtc/offer", "session": session["id"]}
    assert reply.headers["Location"] == f"/v1/sessions/{session['id']}"
    again = service.request("GET", f"/v1/sessions/{session['id']}", token=TOKEN)
    assert again.status == 200 and again.body == session


def test_session_ids_are_unpredictable(service: RunningService) -> None:
    ids = {create(service, {}).body["id"] for _ in range(5)}
    assert len(ids) == 5
    assert all(len(i) >= 20 for i in ids)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"count": 0}, "count"),
        ({"count": "three"}, "count"),
        ({"kinds": ["turn_left", "cartwheel"]}, "kinds"),
        ({"kinds": []}, "kinds"),
        ({"count": 2, "kinds": ["turn_left"]}, "at least two kinds"),
        ({"window_s": 0.1}, "window_s"),
        ({"turn_deg": 90}, "turn_deg"),
        ({"max_duration_s": 5, "count": 3}, "max_duration_s"),
        ({"allowed_camera_labels": [""]}, "allowed_camera_labels"),
        ({"allowed_camera_labels": "OBS"}, "allowed_camera_labels"),
        ({"colour": "blue"}, "colour"),
    ],
)
def test_bad_sessions_are_refused_naming_the_field(
    service: RunningService, body: dict[str, Any], field: str
) -> None:
    reply = create(service, body)
    assert reply.status == 400, reply.body
    assert reply.body["error"]["kind"] == "invalid"
    assert field in reply.body["error"]["message"]


def test_a_body_that_is_not_json_is_refused(service: RunningService) -> None:
    reply = service.request("POST", "/v1/sessions", raw=b"{count: 2", token=TOKEN)
    assert reply.status == 400 and "JSON" in reply.body["error"]["message"]


def test_an_unknown_session_is_a_404(service: RunningService) -> None:
    reply = service.request("GET", "/v1/sessions/kyc-nothing", token=TOKEN)
    assert reply.status == 404 and reply.body["error"]["kind"] == "not_found"


def test_an_offer_for_an_unknown_session_is_a_404(service: RunningService) -> None:
    offer = {"type": "offer", "sdp": "v=0\r\n", "session": "kyc-nothing"}
    reply = service.request("POST", "/v1/webrtc/offer", offer, token=TOKEN)
    assert reply.status == 404, reply.body


def test_an_offer_for_a_session_takes_no_stream_id(service: RunningService) -> None:
    session = create(service, {}).body["id"]
    offer = {"type": "offer", "sdp": "v=0\r\n", "session": session, "id": "mine"}
    reply = service.request("POST", "/v1/webrtc/offer", offer, token=TOKEN)
    assert reply.status == 400 and "'id'" in reply.body["error"]["message"]


@pytest.mark.parametrize("token", [None, "wrong"])
def test_sessions_need_the_token_as_the_other_routes(
    service: RunningService, token: str | None
) -> None:
    assert create(service, {}, token=token).status == 401
    assert service.request("GET", "/v1/sessions/kyc-x", token=token).status == 401


def test_the_openapi_document_describes_the_session_routes(service: RunningService) -> None:
    paths = service.request("GET", "/openapi.json").body["paths"]
    assert "post" in paths["/v1/sessions"] and "get" in paths["/v1/sessions/{session_id}"]


def test_the_client_script_is_public(service: RunningService, tmp_path: Path) -> None:
    reply = service.request("GET", "/kyc.js")
    assert reply.status == 200 and "SwapwatchKyc" in reply.body
    assert reply.headers["Access-Control-Allow-Origin"] == "*"
