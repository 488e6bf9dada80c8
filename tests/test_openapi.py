"""`/openapi.json` is generated from the routes the service serves and the models its handlers
read and answer with: it validates as OpenAPI 3.1, lists every route, and what its schemas
refuse is what the service refuses."""

from __future__ import annotations

import importlib.util
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator
from openapi_spec_validator import validate
from service import RunningService, running_service

from swapwatch.engines import create_engine
from swapwatch.events.model import schema as event_schema
from swapwatch.server.app import Service, build_app
from swapwatch.server.config import ServiceConfig
from swapwatch.server.metrics import ServiceMetrics

TOKEN = "an-openapi-token-of-enough-length"
FORM = "application/x-www-form-urlencoded"


@pytest.fixture(scope="module")
def guarded(fake_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningService]:
    config = ServiceConfig(
        analysis={"model": fake_model},
        auth={"token": TOKEN},
        ingest={"read_timeout_s": 1.0, "reconnect_initial_s": 0.5, "reconnect_max_s": 1.0},
        events={"path": tmp_path_factory.mktemp("openapi") / "events.sqlite"},
    )
    with running_service(config) as service:
        yield service


@pytest.fixture(scope="module")
def document(guarded: RunningService) -> dict[str, Any]:
    reply = guarded.request("GET", "/openapi.json")
    assert reply.status == 200
    return dict(reply.body)


def schema_of(document: dict[str, Any], schema: dict[str, Any]) -> Draft202012Validator:
    """A validator of `schema`, its `#/components/...` references resolved in `document`."""
    return Draft202012Validator({**schema, "components": document["components"]})


def test_the_document_is_valid_openapi_3_1(document: dict[str, Any]) -> None:
    assert document["openapi"] == "3.1.0"
    validate(document)  # raises on any departure from the OpenAPI 3.1 schema


def test_every_route_the_app_serves_is_documented(fake_model: Path, tmp_path: Path) -> None:
    config = ServiceConfig(analysis={"model": fake_model}, events={"path": tmp_path / "e.sqlite"})
    engine = create_engine("onnxruntime", fake_model)
    app = build_app(Service(config, engine, ServiceMetrics()))
    served = {
        (route.method, route.resource.canonical)
        for route in app.router.routes()
        if route.resource is not None
        # HEAD comes with each GET; OPTIONS are CORS preflights; "*" is the catch-all 404/405
        and route.method not in ("HEAD", "OPTIONS", "*")
    }
    with running_service(config) as service:
        document = service.request("GET", "/openapi.json").body
    documented = {
        (method.upper(), path)
        for path, item in document["paths"].items()
        for method in item
        if method in ("get", "post", "put", "patch", "delete")
    }
    assert served == documented
    assert len(served) >= 17


def test_the_security_documented_is_what_the_service_enforces(
    guarded: RunningService, document: dict[str, Any]
) -> None:
    for path, item in document["paths"].items():
        url = path.format(stream_id="nobody", session_id="nobody")
        for method, operation in item.items():
            if method == "parameters":
                continue
            secured = operation["security"] == [{"bearer": []}]
            if not secured:
                assert operation["security"] == [], (method, path)
                if method != "get":
                    continue  # only reads are tried without a token
            reply = guarded.request(method.upper(), url, raw=b"")
            assert (reply.status == 401) == secured, (method, path, reply.status)
            assert ("401" in operation["responses"]) == secured, (method, path)


def test_without_a_token_nothing_is_documented_as_secured(fake_model: Path) -> None:
    with running_service(ServiceConfig(analysis={"model": fake_model})) as service:
        document = service.request("GET", "/openapi.json").body
    operations = [op for item in document["paths"].values() for op in item.values()]
    assert all(op["security"] == [] for op in operations if isinstance(op, dict))


def request_schema(document: dict[str, Any], path: str, media_type: str) -> Draft202012Validator:
    body = document["paths"][path]["post"]["requestBody"]["content"][media_type]
    return schema_of(document, body["schema"])


def names(validator: Draft202012Validator, body: object, field: str) -> bool:
    """Whether the schema refuses `body` and says that `field` is why."""
    errors = list(validator.iter_errors(body))
    return bool(errors) and any(field in e.message or field in e.absolute_path for e in errors)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"url": "rtsp://127.0.0.1:1/x", "colour": "red"}, "colour"),
        ({"url": "rtsp://127.0.0.1:1/x", "policy": "strict"}, "policy"),
        ({"url": "rtsp://127.0.0.1:1/x", "id": "no spaces"}, "id"),
        ({"url": "rtsp://127.0.0.1:1/x", "id": "x" * 65}, "id"),
        ({"ingest": "carrier-pigeon", "url": "rtsp://127.0.0.1:1/x"}, "ingest"),
        ({"id": "x"}, "url"),
        ({"url": None}, "url"),
        ({"url": ""}, "url"),
        ({"url": 5}, "url"),
        ({"ingest": "rtmp", "url": "rtsp://127.0.0.1:1/x"}, "url"),
    ],
)
def test_a_new_stream_the_schema_refuses_is_refused_naming_the_field(
    guarded: RunningService, document: dict[str, Any], body: dict[str, Any], field: str
) -> None:
    assert names(request_schema(document, "/v1/streams", "application/json"), body, field)
    reply = guarded.request("POST", "/v1/streams", body, token=TOKEN)
    assert reply.status == 400, reply.body
    assert reply.body["error"]["kind"] == "invalid"
    assert f"'{field}'" in reply.body["error"]["message"] or field in reply.body["error"][
        "message"
    ].removeprefix("unknown field(s): ")


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"type": "offer"}, "sdp"),
        ({"sdp": "", "type": "offer"}, "sdp"),
        ({"sdp": ["v=0"], "type": "offer"}, "sdp"),
        ({"sdp": "v=0", "type": "answer"}, "type"),
        ({"sdp": "v=0", "type": "offer", "policy": "strict"}, "policy"),
        ({"sdp": "v=0", "type": "offer", "id": "a/b"}, "id"),
    ],
)
def test_an_offer_the_schema_refuses_is_refused_naming_the_field(
    guarded: RunningService, document: dict[str, Any], body: dict[str, Any], field: str
) -> None:
    assert names(request_schema(document, "/v1/webrtc/offer", "application/json"), body, field)
    reply = guarded.request("POST", "/v1/webrtc/offer", body, token=TOKEN)
    assert reply.status == 400, reply.body
    assert f"'{field}'" in reply.body["error"]["message"]


@pytest.mark.parametrize(
    ("form", "field"),
    [
        ({"call": "publish", "app": "live"}, "name"),
        ({"call": "publish", "app": "../x", "name": "studio"}, "app"),
        ({"call": "publish", "app": "live", "name": "bad key"}, "name"),
        ({"call": "publish_done", "app": "live", "name": "studio"}, "call"),
    ],
)
def test_a_publish_callback_the_schema_refuses_is_refused_naming_the_field(
    guarded: RunningService, document: dict[str, Any], form: dict[str, str], field: str
) -> None:
    path = "/v1/hooks/nginx-rtmp/publish"
    assert names(request_schema(document, path, FORM), form, field)
    raw = urllib.parse.urlencode(form).encode()
    reply = guarded.request("POST", path, raw=raw, token=TOKEN, headers={"Content-Type": FORM})
    assert reply.status == 400, reply.body
    assert f"'{field}'" in reply.body["error"]["message"]


def test_what_the_schemas_accept_the_service_takes(
    guarded: RunningService, document: dict[str, Any]
) -> None:
    body = {"url": "rtsp://127.0.0.1:1/x", "id": "documented", "policy": "kyc"}
    assert request_schema(document, "/v1/streams", "application/json").is_valid(body)
    for example in document["paths"]["/v1/streams"]["post"]["requestBody"]["content"][
        "application/json"
    ]["examples"].values():
        assert request_schema(document, "/v1/streams", "application/json").is_valid(
            example["value"]
        )
    created = guarded.request("POST", "/v1/streams", body, token=TOKEN)
    try:
        assert created.status == 201, created.body
        answers = [
            ("/v1/streams", "post", "201", created.body),
            ("/v1/streams", "get", "200", guarded.request("GET", "/v1/streams", token=TOKEN)),
            (
                "/v1/streams/{stream_id}",
                "get",
                "200",
                guarded.request("GET", "/v1/streams/documented", token=TOKEN),
            ),
            (
                "/v1/events/status",
                "get",
                "200",
                guarded.request("GET", "/v1/events/status", token=TOKEN),
            ),
            # The running configuration, secrets hidden, is the documented ServiceConfig.
            ("/v1/config", "get", "200", guarded.request("GET", "/v1/config", token=TOKEN)),
            ("/healthz", "get", "200", guarded.request("GET", "/healthz")),
            ("/readyz", "get", "200", guarded.request("GET", "/readyz")),
            (
                "/v1/streams/{stream_id}",
                "get",
                "404",
                guarded.request("GET", "/v1/streams/no", token=TOKEN),
            ),
        ]
        for path, method, status, reply in answers:
            payload = reply if isinstance(reply, dict) else reply.body
            schema = document["paths"][path][method]["responses"][status]["content"]
            validator = schema_of(document, schema["application/json"]["schema"])
            errors = [e.message for e in validator.iter_errors(payload)]
            assert errors == [], (path, method, status, payload)
    finally:
        guarded.request("DELETE", "/v1/streams/documented", token=TOKEN)


def test_event_payloads_refer_to_the_published_event_schema(document: dict[str, Any]) -> None:
    assert document["components"]["schemas"]["Event"] == event_schema()
    feed = document["paths"]["/v1/events"]["get"]["responses"]["200"]["content"]
    assert feed["text/event-stream"]["schema"]["contentSchema"] == {
        "$ref": "#/components/schemas/Event"
    }
    webhook = document["webhooks"]["event"]["post"]["requestBody"]["content"]
    assert webhook["application/json"]["schema"] == {"$ref": "#/components/schemas/Event"}


def test_the_recent_query_is_documented_as_the_feed_checks_it(
    guarded: RunningService, document: dict[str, Any]
) -> None:
    (recent,) = document["paths"]["/v1/events"]["get"]["parameters"]
    assert recent["in"] == "query" and recent["name"] == "recent"
    assert (recent["schema"]["minimum"], recent["schema"]["maximum"]) == (0, 1000)
    reply = guarded.request("GET", "/v1/events?recent=1001", token=TOKEN)
    assert reply.status == 400 and "'recent'" in reply.body["error"]["message"]


def test_the_hand_written_document_is_gone() -> None:
    assert importlib.util.find_spec("swapwatch.server.openapi") is None
