"""Fuzzing the service's HTTP surface: bodies and headers of every endpoint, SDP offers,
nginx-rtmp callback forms and `Last-Event-ID`, against a real service on 127.0.0.1.

Whatever arrives, the answer is a success or a 4xx with a JSON error, never a 500, and nothing
in the service logs a traceback (what `swapwatch serve` would print on stderr)."""

from __future__ import annotations

import json
import urllib.parse
from collections.abc import Iterator
from pathlib import Path

import pytest
from fuzzing import TracebackCatcher, catching_tracebacks, examples
from http_raw import RawReply, exchange
from hypothesis import given, settings
from hypothesis import strategies as st
from service import RunningService, running_service

from swapwatch.server.config import ServiceConfig

pytestmark = pytest.mark.fuzz

TOKEN = "a-fuzzing-token-of-enough-length"
AUTH = [(b"Authorization", f"Bearer {TOKEN}".encode())]


@pytest.fixture(scope="module")
def served(
    fake_model: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[RunningService, TracebackCatcher]]:
    config = ServiceConfig(
        analysis={"model": fake_model},
        auth={"token": TOKEN},
        limits={"max_streams": 4},
        http={"max_body_bytes": 4096, "cors_origins": ("https://ok.example",)},
        ingest={
            "webrtc": {"max_offer_bytes": 8192},
            "read_timeout_s": 1.0,
            "reconnect_initial_s": 0.5,
            "reconnect_max_s": 1.0,
            "nginx_rtmp": {"url": "rtmp://127.0.0.1:1"},
        },
        events={"path": tmp_path_factory.mktemp("fuzz-http") / "events.sqlite"},
    )
    with catching_tracebacks() as catcher, running_service(config) as service:
        yield service, catcher


def handled(reply: RawReply, catcher: TracebackCatcher, what: object) -> None:
    """The property every answer must have."""
    assert 0 < reply.status < 500, (reply.status, reply.body[:500], what)
    if (
        reply.status >= 400
        and reply.body  # none to a HEAD
        and reply.headers.get("content-type", "").startswith("application/json")
    ):
        error = reply.json()["error"]
        assert error["status"] == reply.status and error["message"], error
    assert catcher.take() == [], what


def cleanup(service: RunningService) -> None:
    """Remove what a fuzzed request created, so the next one starts from an empty service."""
    listed = exchange(service.base, "GET", "/v1/streams", headers=AUTH).json()["streams"]
    for stream in listed:
        path = "/v1/streams/" + urllib.parse.quote(stream["id"], safe="")
        assert exchange(service.base, "DELETE", path, headers=AUTH).status == 204


json_scalars = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=30)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=10,
)
schemes = st.sampled_from(
    ["rtsp", "rtmp", "RTMP", "http", "https", "file", "FILE", "srt", "udp", "tcp", "ftp", "data"]
)
hosts = st.sampled_from(["127.0.0.1:1", "[::1]:1", "127.0.0.1:99999", "[::1", "", "h:x"])
urls = st.builds(
    lambda scheme, host, path: f"{scheme}://{host}/{path}",
    schemes,
    hosts,
    st.text(max_size=20),
) | st.text(max_size=40)
stream_bodies = st.fixed_dictionaries(
    {},
    optional={
        "url": urls | json_values,
        "id": st.from_regex(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,70}", fullmatch=True) | json_values,
        "policy": st.sampled_from(["kyc", "monitoring", "KYC", ""]) | json_values,
        "ingest": st.sampled_from(["pull", "rtmp", "push", ""]) | json_values,
        "sdp": st.text(max_size=50),
        "type": st.sampled_from(["offer", "answer"]) | json_values,
    },
)
content_types = st.sampled_from(
    [
        b"application/json",
        b"application/json; charset=latin-1",
        b"application/x-www-form-urlencoded",
        b"multipart/form-data; boundary=xyz",
        b"multipart/form-data",
        b"text/plain",
        b"",
    ]
)
bodies = (
    stream_bodies.map(lambda d: json.dumps(d).encode())
    | json_values.map(lambda v: json.dumps(v).encode())
    | st.binary(max_size=300)
    | st.sampled_from([b"[" * 5000, b'{"a":' * 3000, b"\xef\xbb\xbf{}", b"\x00", b"{}" * 3000])
)
POSTS = [
    "/v1/streams",
    "/v1/webrtc/offer",
    "/v1/hooks/nginx-rtmp/publish",
    "/v1/hooks/nginx-rtmp/publish_done",
]


@settings(max_examples=examples(60, 2000))
@given(path=st.sampled_from(POSTS), body=bodies, content_type=content_types)
def test_any_body_to_any_post_endpoint_is_handled(
    served: tuple[RunningService, TracebackCatcher],
    path: str,
    body: bytes,
    content_type: bytes,
) -> None:
    service, catcher = served
    reply = exchange(service.base, "POST", path, body, [*AUTH, (b"Content-Type", content_type)])
    handled(reply, catcher, (path, body[:200], content_type))
    if reply.status in (200, 201):
        cleanup(service)


GETS = [
    "/",
    "/try",
    "/docs",
    "/healthz",
    "/readyz",
    "/metrics",
    "/openapi.json",
    "/v1/config",
    "/v1/streams",
    "/v1/events/status",
    "/v1/streams/{}",
]
path_parts = st.text(max_size=80).map(lambda t: urllib.parse.quote(t, safe="")) | st.text(
    st.characters(min_codepoint=0x21, max_codepoint=0x7E, exclude_characters="?#"), max_size=30
)


@settings(max_examples=examples(60, 2000))
@given(
    method=st.sampled_from(["GET", "DELETE", "OPTIONS", "PUT", "PATCH", "HEAD", "POST"]),
    path=st.sampled_from(GETS),
    part=path_parts,
    query=st.text(max_size=30).map(lambda t: urllib.parse.quote(t, safe="=&")),
)
def test_any_method_path_and_query_is_handled(
    served: tuple[RunningService, TracebackCatcher],
    method: str,
    path: str,
    part: str,
    query: str,
) -> None:
    service, catcher = served
    target = path.format(part) + (f"?{query}" if query else "")
    reply = exchange(service.base, method, target, headers=AUTH)
    handled(reply, catcher, (method, target))


header_names = st.sampled_from(
    [
        b"Authorization",
        b"Origin",
        b"Access-Control-Request-Method",
        b"Content-Type",
        b"Content-Length",
        b"Transfer-Encoding",
        b"Content-Encoding",
        b"Last-Event-ID",
        b"Accept",
        b"Host",
        b"Expect",
        b"Cookie",
    ]
) | st.binary(min_size=1, max_size=20)
header_values = st.sampled_from(
    [
        f"Bearer {TOKEN}".encode(),
        b"bearer",
        b"Bearer ",
        b"Basic Zm9vOmJhcg==",
        b"https://ok.example",
        b"null",
        b"POST",
        b"-1",
        b"99999999999999999999",
        b"chunked",
        b"gzip",
        b"100-continue",
        b"application/json",
        b"multipart/form-data; boundary=",
    ]
) | st.binary(max_size=40)


@settings(max_examples=examples(60, 2000))
@given(
    method=st.sampled_from(["GET", "POST", "DELETE", "OPTIONS"]),
    path=st.sampled_from(POSTS + GETS[:-1] + ["/v1/streams/x"]),
    headers=st.lists(st.tuples(header_names, header_values), max_size=5),
    body=st.sampled_from([b"", b"{}", b'{"url": "rtsp://127.0.0.1:1/x"}', b"name=k&app=live"]),
)
def test_any_headers_are_handled(
    served: tuple[RunningService, TracebackCatcher],
    method: str,
    path: str,
    headers: list[tuple[bytes, bytes]],
    body: bytes,
) -> None:
    service, catcher = served
    # A header split over lines is another request; HTTP parsers refuse bare CR/LF anyway.
    headers = [(n.replace(b"\r", b"").replace(b"\n", b""), v) for n, v in headers]
    headers = [(n, v.replace(b"\r", b"").replace(b"\n", b"")) for n, v in headers if n]
    stream_for = 0.3 if path == "/v1/events" else None
    reply = exchange(service.base, method, path, body, headers, timeout=20, stream_for=stream_for)
    if reply.status == 0:
        return  # refused at the protocol level (aiohttp closes on a request it cannot parse)
    handled(reply, catcher, (method, path, headers, body))
    if reply.status in (200, 201) and method == "POST":
        cleanup(service)


SDP_LINES = st.sampled_from(
    [
        "v=0",
        "o=- 1 1 IN IP4 127.0.0.1",
        "s=-",
        "t=0 0",
        "m=video 9 UDP/TLS/RTP/SAVPF 96",
        "m=audio 9 UDP/TLS/RTP/SAVPF 111",
        "m=application 9 UDP/DTLS/SCTP webrtc-datachannel",
        "m=video 9 RTP/AVP 96 97",
        "m=video x",
        "m=",
        "c=IN IP4 0.0.0.0",
        "c=IN IP6 ::",
        "a=sendrecv",
        "a=sendonly",
        "a=recvonly",
        "a=inactive",
        "a=mid:0",
        "a=group:BUNDLE 0 1",
        "a=rtpmap:96 VP8/90000",
        "a=rtpmap:97 H264/90000",
        "a=rtpmap:96 VP8",
        "a=rtpmap:x y",
        "a=fmtp:97 packetization-mode=1;profile-level-id=42e01f",
        "a=fmtp:96",
        "a=rtcp-fb:96 nack pli",
        "a=rtcp-mux",
        "a=ice-ufrag:abcd",
        "a=ice-pwd:abcdefghijklmnopqrstuvwx",
        "a=fingerprint:sha-256 " + ":".join(["AB"] * 32),
        "a=fingerprint:sha-256 zz",
        "a=setup:actpass",
        "a=setup:bogus",
        "a=candidate:1 1 udp 2130706431 127.0.0.1 9 typ host",
        "a=candidate:1",
        "a=ssrc:1 cname:x",
        "a=ssrc-group:FID 1 2",
        "a=ssrc-group:FID x",
        "a=extmap:1 urn:ietf:params:rtp-hdrext:sdes:mid",
        "a=extmap:x",
        "a=sctp-port:5000",
        "a=sctp-port:x",
        "a=msid:a b",
        "a=end-of-candidates",
    ]
)
sdp_texts = st.builds(
    lambda lines, sep, extra: sep.join(lines + extra) + sep,
    st.lists(SDP_LINES, max_size=25),
    st.sampled_from(["\r\n", "\n"]),
    st.lists(st.text(max_size=30), max_size=2),
)


@settings(max_examples=examples(40, 1000))
@given(sdp=sdp_texts, kind=st.sampled_from(["offer", "answer", "pranswer"]))
def test_any_sdp_offer_is_handled(
    served: tuple[RunningService, TracebackCatcher], sdp: str, kind: str
) -> None:
    service, catcher = served
    body = json.dumps({"sdp": sdp, "type": kind}).encode()
    reply = exchange(service.base, "POST", "/v1/webrtc/offer", body, AUTH, timeout=30)
    handled(reply, catcher, sdp)
    if reply.status == 200:
        cleanup(service)


FORM_FIELDS = ["call", "app", "name", "addr", "clientid", "flashver", "tcurl", "type", "x"]
form_values = {
    "call": st.sampled_from(["publish", "publish_done", "play", ""]),
    "app": st.sampled_from(["live", "", "a/b", "..", "l" * 70]),
    "name": st.sampled_from(["key-1", "", "../x", "k" * 70, "k\0", "a b"]),
    "clientid": st.sampled_from(["1", "2", ""]),
}


@st.composite
def nginx_forms(draw: st.DrawFn) -> bytes:
    fields = draw(st.lists(st.sampled_from(FORM_FIELDS), max_size=7))
    pairs = [(f, draw(form_values.get(f, st.nothing()) | st.text(max_size=20))) for f in fields]
    encoded = urllib.parse.urlencode(pairs).encode()
    return draw(st.sampled_from([encoded, encoded + b"&%zz", encoded.replace(b"=", b"", 1)]))


@settings(max_examples=examples(30, 1000))
@given(forms=st.lists(st.tuples(st.sampled_from(POSTS[2:]), nginx_forms()), min_size=1, max_size=3))
def test_any_nginx_rtmp_callback_forms_are_handled(
    served: tuple[RunningService, TracebackCatcher], forms: list[tuple[str, bytes]]
) -> None:
    service, catcher = served
    form_type = [(b"Content-Type", b"application/x-www-form-urlencoded")]
    created = False
    for path, form in forms:
        reply = exchange(service.base, "POST", path, form, AUTH + form_type)
        handled(reply, catcher, (path, form))
        created |= reply.status == 200 and path.endswith("/publish")
    if created:
        cleanup(service)


@pytest.fixture(scope="module")
def with_history(served: tuple[RunningService, TracebackCatcher]) -> RunningService:
    """A service whose outbox holds a few events to replay."""
    service, _ = served
    body = json.dumps({"url": "rtsp://127.0.0.1:1/x", "id": "history"}).encode()
    assert exchange(service.base, "POST", "/v1/streams", body, AUTH).status == 201
    cleanup(service)
    return service


last_event_ids = (
    st.integers(min_value=-(10**20), max_value=10**20).map(str)
    | st.text(st.characters(min_codepoint=0x20, max_codepoint=0xFF), max_size=30)
    | st.text(st.characters(min_codepoint=0x100), max_size=5).map(
        lambda t: t.encode().decode("latin-1")
    )
    | st.sampled_from(
        ["", "0", "1", "\u00b2", "\u0661", "1.5", "0x10", " 1", "1 ", "9" * 18, "9" * 19]
    )
)


@settings(max_examples=examples(20, 500))
@given(last=last_event_ids)
def test_any_last_event_id_gets_the_feed(
    served: tuple[RunningService, TracebackCatcher], with_history: RunningService, last: str
) -> None:
    service, catcher = served
    headers = [*AUTH, (b"Last-Event-ID", last.encode())]
    reply = exchange(service.base, "GET", "/v1/events", b"", headers, stream_for=0.2)
    handled(reply, catcher, last)
    if reply.status == 400:  # the HTTP parser refuses control characters in a header
        assert any(ord(c) < 0x20 or ord(c) == 0x7F for c in last), last
        return
    assert reply.status == 200 and reply.headers["content-type"] == "text/event-stream"
    text = reply.body.decode()
    replayed = [int(line[4:]) for line in text.splitlines() if line.startswith("id: ")]
    assert replayed == sorted(set(replayed)), text  # each event once, in order
