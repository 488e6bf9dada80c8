"""What an attacker or a careless client tried on the service: deep JSON, header spellings, the
metrics page, a stream that cannot connect flooding the sinks."""

from __future__ import annotations

import logging
import socket
import time
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest
from http_raw import exchange
from service import RunningService, free_port, running_service

from swapwatch.events import EventLog, EventType
from swapwatch.server.config import ServiceConfig

TOKEN = "a-test-token-of-enough-length"


@pytest.fixture(scope="module")
def guarded(fake_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningService]:
    outbox = tmp_path_factory.mktemp("hardening") / "events.sqlite"
    config = ServiceConfig(
        analysis={"model": fake_model},
        auth={"token": TOKEN},
        events={"path": outbox},
        ingest={"reconnect_initial_s": 0.1, "reconnect_max_s": 0.2},
    )
    with running_service(config) as service:
        yield service


@pytest.mark.parametrize("depth", [2_000, 60_000])
def test_a_deeply_nested_body_is_a_400_with_a_json_error(
    guarded: RunningService, depth: int
) -> None:
    for path in ("/v1/streams", "/v1/webrtc/offer"):
        reply = guarded.request("POST", path, raw=b"[" * depth, token=TOKEN)
        assert reply.status in (400, 413), reply.body
        assert reply.body["error"]["status"] == reply.status


@pytest.mark.parametrize(
    ("header", "status"),
    [
        (f"Bearer {TOKEN}", 200),
        (f"bearer {TOKEN}", 200),
        (f"BEARER {TOKEN}", 200),
        (f"Bearer   {TOKEN}", 200),
        (f"Basic {TOKEN}", 401),
        (f"Bearer{TOKEN}", 401),
        ("bearer wrong-token-wrong-token", 401),
    ],
)
def test_the_bearer_scheme_is_case_insensitive(
    guarded: RunningService, header: str, status: int
) -> None:
    reply = guarded.request("GET", "/v1/streams", headers={"Authorization": header})
    assert reply.status == status, reply.body


def test_with_a_token_the_metrics_need_it_too(guarded: RunningService) -> None:
    denied = guarded.request("GET", "/metrics")
    assert denied.status == 401 and denied.body["error"]["kind"] == "unauthorized"
    allowed = guarded.request("GET", "/metrics", token=TOKEN)
    assert allowed.status == 200 and "swapwatch_" in allowed.body
    schema = guarded.request("GET", "/openapi.json").body
    assert schema["paths"]["/metrics"]["get"]["security"] == [{"bearer": []}]
    assert guarded.request("GET", "/healthz").status == 200  # probes stay open


def test_metrics_public_opens_only_the_metrics(fake_model: Path, tmp_path: Path) -> None:
    config = ServiceConfig(
        analysis={"model": fake_model},
        auth={"token": TOKEN, "metrics_public": True},
        events={"path": tmp_path / "events.sqlite"},
    )
    with running_service(config) as service:
        assert service.request("GET", "/metrics").status == 200
        assert service.request("GET", "/v1/streams").status == 401


def test_a_stream_that_cannot_connect_reports_one_error_not_one_per_try(
    guarded: RunningService,
) -> None:
    url = f"rtmp://127.0.0.1:{free_port()}/live/x"  # nobody there: refused at once, every try
    reply = guarded.request("POST", "/v1/streams", {"url": url, "id": "gone"}, token=TOKEN)
    assert reply.status == 201, reply.body
    status = guarded.wait_for(lambda s: s["reconnects"] >= 5, "gone", token=TOKEN)
    assert status["state"] in ("reconnecting", "starting") and status["last_error"]
    assert guarded.config.events.path is not None
    with EventLog(guarded.config.events.path) as log:
        events = [stored.event() for stored in log.read_after(0, 10_000)]
    errors = [e for e in events if e.stream == "gone" and e.type is EventType.STREAM_ERROR]
    assert len(errors) == 1 and errors[0].detail is not None
    assert errors[0].detail["final"] is False


def test_the_package_metadata_builds_without_deprecation_warnings(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from setuptools.config.pyprojecttoml import apply_configuration
    from setuptools.dist import Distribution

    monkeypatch.chdir(Path(__file__).parents[1])  # the readme and packages are found from here
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        dist = apply_configuration(Distribution(), "pyproject.toml")
    assert dist.metadata.license_expression == "Apache-2.0"


def test_a_malformed_request_is_one_warning_line_without_its_bytes(
    guarded: RunningService, caplog: pytest.LogCaptureFixture
) -> None:
    # Found by fuzzing: aiohttp logged every request it could not parse as an error with a
    # traceback whose message quoted the bad header, here the API token.
    with caplog.at_level(logging.WARNING):
        reply = exchange(guarded.base, "GET", "/v1/streams", headers=[(b"\x00", TOKEN.encode())])
        assert reply.status == 400
        assert guarded.request("GET", "/healthz").status == 200
    logged = [r for r in caplog.records if r.name.startswith(("aiohttp", "swapwatch"))]
    assert [r.exc_info for r in logged] == [None]
    assert logged[0].getMessage() == (
        "Error handling request from 127.0.0.1: Invalid header token (HTTP 400)"
    )
    assert TOKEN not in caplog.text


@pytest.mark.parametrize("hook", ["publish", "publish_done"])
def test_an_nginx_callback_that_is_not_a_readable_form_is_a_json_400(
    guarded: RunningService, hook: str
) -> None:
    # Found by fuzzing: a multipart body without its boundary raised ValueError, a 500.
    reply = exchange(
        guarded.base,
        "POST",
        f"/v1/hooks/nginx-rtmp/{hook}?token={TOKEN}",
        b"call=publish&app=live&name=key",
        [(b"Content-Type", b"multipart/form-data; boundary=xyz")],
    )
    assert reply.status == 400, reply.body
    assert "not a readable form" in reply.json()["error"]["message"]


def test_a_body_that_does_not_decode_as_declared_is_one_warning_line(
    guarded: RunningService, caplog: pytest.LogCaptureFixture
) -> None:
    # Found by fuzzing: an unread body declared gzip that is not logged a traceback.
    with caplog.at_level(logging.WARNING):
        headers = [(b"Authorization", f"Bearer {TOKEN}".encode()), (b"Content-Encoding", b"gzip")]
        reply = exchange(guarded.base, "GET", "/v1/streams", b"{}", headers)
        assert reply.status == 200
        assert guarded.request("GET", "/healthz").status == 200
    logged = [r for r in caplog.records if r.name.startswith(("aiohttp", "swapwatch"))]
    assert [(r.getMessage(), r.exc_info) for r in logged] == [
        ("Unhandled exception: the request body is unreadable", None)
    ]


@pytest.mark.parametrize("path", ["/try", "/healthz", "/v1/streams", "/v1/events", "/nowhere"])
@pytest.mark.parametrize("expect", [b"\x80", b"\xff\xfe", b"202-accepted", b"caf\xc3\xa9"])
def test_an_unknown_expect_is_a_json_417_that_does_not_echo_it(
    guarded: RunningService, caplog: pytest.LogCaptureFixture, path: str, expect: bytes
) -> None:
    # Found by fuzzing: aiohttp's own Expect check ran before our middleware, echoed the value
    # into its answer, and a non-ASCII one ended in a 500 with a traceback.
    headers = [(b"Authorization", f"Bearer {TOKEN}".encode()), (b"Expect", expect)]
    with caplog.at_level(logging.WARNING):
        reply = exchange(guarded.base, "GET", path, headers=headers)
    assert reply.status == 417, reply.body
    assert reply.headers["content-type"].startswith("application/json")
    error = reply.json()["error"]
    assert error["status"] == 417 and "100-continue" in error["message"]
    assert expect.decode("latin-1") not in reply.body.decode("latin-1")
    assert [r.exc_info for r in caplog.records if r.exc_info] == []


def test_expect_100_continue_still_gets_the_body_read(guarded: RunningService) -> None:
    body = b'{"url": "tcp://127.0.0.1:1", "id": "continued"}'
    headers = [
        (b"Authorization", f"Bearer {TOKEN}".encode()),
        (b"Content-Type", b"application/json"),
        (b"Expect", b"100-Continue"),
    ]
    reply = exchange(guarded.base, "POST", "/v1/streams", body, headers)
    # The interim answer, then the stream created from the body sent after it.
    assert reply.status == 100, reply
    assert reply.body.startswith(b"HTTP/1.1 201 Created"), reply.body
    assert guarded.request("DELETE", "/v1/streams/continued", token=TOKEN).status == 204


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [("GET", "/nowhere", 404), ("PUT", "/v1/streams", 405), ("POST", "/healthz", 405)],
)
def test_what_no_route_takes_is_still_a_json_404_or_405(
    guarded: RunningService, method: str, path: str, status: int
) -> None:
    reply = guarded.request(method, path, token=TOKEN)
    assert reply.status == status
    assert reply.body["error"]["status"] == status


def accepts_connections(port: int, within: float) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return True
        except OSError:
            time.sleep(0.1)
    return False


def udp_port_taken(port: int, within: float) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            try:
                probe.bind(("0.0.0.0", port))
            except OSError:
                return True
        time.sleep(0.1)
    return False


@pytest.mark.parametrize(
    ("template", "named"),
    [("tcp://0.0.0.0:{}?listen=1", "'listen'"), ("udp://0.0.0.0:{}", "loopback")],
)
def test_a_pull_url_cannot_make_the_service_listen(
    guarded: RunningService, template: str, named: str
) -> None:
    # Found by fuzzing: FFmpeg reads options from the URL's query, so this pull opened a port
    # on every interface that anyone could push video into, without a key.
    port = free_port()
    url = template.format(port)
    reply = guarded.request("POST", "/v1/streams", {"url": url, "id": "listener"}, token=TOKEN)
    try:
        listening = (
            accepts_connections(port, 3.0) if url.startswith("tcp") else udp_port_taken(port, 3.0)
        )
    finally:
        guarded.request("DELETE", "/v1/streams/listener", token=TOKEN)
    assert not listening
    assert reply.status == 400, reply.body
    assert named in reply.body["error"]["message"]
