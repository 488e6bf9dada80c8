"""`swapwatch serve` end to end: the HTTP API, pulls, RTMP push, reconnects, metrics, limits."""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
import socket
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from media import Placement, write_video
from prometheus_client.parser import text_string_to_metric_families
from publisher import finished, primed_publisher, push_to, start_publisher
from service import RunningService, free_port, running_service

from swapwatch.engines import create_engine
from swapwatch.server.config import ServiceConfig
from swapwatch.server.config_sources import load_config
from swapwatch.server.manager import StreamManager, StreamSettings, TooManyStreams
from swapwatch.server.metrics import ServiceMetrics
from swapwatch.server.state import SavedStream, StateStore
from swapwatch.server.streams import ServiceStream

TOKEN = "a-test-token-of-enough-length"


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_video(
        tmp_path_factory.mktemp("server") / "face.mp4",
        [Placement(0.5, 0.5, 300)],
        seconds=4.0,
        size=(960, 540),
    )


@pytest.fixture(scope="module")
def service(fake_model: Path) -> Iterator[RunningService]:
    config = ServiceConfig(
        analysis={"model": fake_model, "cusum_h": 4.0},
        ingest={
            "pull": {"allow_file_urls": True},
            "reconnect_initial_s": 0.3,
            "reconnect_max_s": 1.0,
            "read_timeout_s": 3.0,
        },
        limits={"max_streams": 3},
        http={"max_body_bytes": 4096, "cors_origins": ("https://ok.example",)},
    )
    with running_service(config) as running:
        yield running


def test_health_readiness_and_the_schema(service: RunningService) -> None:
    assert service.request("GET", "/healthz").body["status"] == "ok"
    assert service.request("GET", "/readyz").body["status"] == "ready"
    schema = service.request("GET", "/openapi.json").body
    assert schema["openapi"].startswith("3.")
    assert {"/v1/streams", "/v1/streams/{stream_id}", "/v1/webrtc/offer"} <= set(schema["paths"])
    for page in ("/", "/try", "/docs"):
        reply = service.request("GET", page)
        assert reply.status == 200 and "<html" in reply.body


def test_a_file_stream_is_analysed_alarms_and_can_be_removed(
    service: RunningService, clip: Path
) -> None:
    reply = service.request(
        "POST", "/v1/streams", {"url": clip.as_uri(), "id": "clip-1", "policy": "kyc"}
    )
    assert reply.status == 201, reply.body
    assert reply.headers["Location"] == "/v1/streams/clip-1"
    status = service.wait_for(lambda s: s["state"] == "ended", "clip-1")
    assert status["frames_analysed"] > 20 and status["video"]["width"] == 960
    assert status["policy"] == "kyc"
    # the test model says "fake" for every face: the track alarmed and stays alarmed (kyc)
    assert status["alarm"] and status["alarms_raised"] == 1
    assert status["tracks"][0]["verdict"] == "fake"
    listed = service.request("GET", "/v1/streams").body["streams"]
    assert "clip-1" in {s["id"] for s in listed}
    assert service.request("DELETE", "/v1/streams/clip-1").status == 204
    assert service.request("GET", "/v1/streams/clip-1").status == 404


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        ({"url": "ftp://example.com/x"}, 400, "cannot pull"),
        ({"id": "x"}, 400, "'url' is required"),
        ({"url": "rtsp://h/x", "colour": "red"}, 400, "unknown field"),
        ({"url": "rtsp://h/x", "id": "no spaces"}, 400, "stream id"),
        ({"url": "rtsp://h/x", "policy": "strict"}, 400, "'policy' must be one of"),
        ({"ingest": "carrier-pigeon"}, 400, "'ingest' must be"),
        ([1, 2], 400, "JSON object"),
        ({"url": "rtsp://127.0.0.1:99999/x"}, 400, "malformed URL"),
        ({"url": "rtsp://[::1/x"}, 400, "malformed URL"),
        ({"url": "rtsp://h/x", "id": "line\n"}, 400, "stream id"),
    ],
)
def test_bad_requests_get_a_json_4xx(
    service: RunningService, body: object, status: int, message: str
) -> None:
    reply = service.request("POST", "/v1/streams", body)
    assert reply.status == status
    assert message in reply.body["error"]["message"]
    assert service.request("GET", "/v1/streams").status == 200  # nothing half-made listed


VIDEO_SDP = (
    "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n"
    "m=video 9 UDP/TLS/RTP/SAVPF 96\r\nc=IN IP4 0.0.0.0\r\na={direction}\r\n"
    "a=rtpmap:96 VP8/90000\r\n"
)


@pytest.mark.parametrize(
    ("sdp", "message"),
    [
        ("garbage", "the offer has no video"),
        # Found by fuzzing: aiortc's parser raised these as KeyError, StopIteration and
        # AssertionError, each a 500.
        ("a=setup:bogus\r\n", "the offer is not valid SDP"),
        ("m=video 9 RTP/AVP 96\r\na=fmtp:97 x=1\r\n", "the offer is not valid SDP"),
        ("m=video x\r\n", "the offer is not valid SDP"),
        (VIDEO_SDP.format(direction="recvonly"), "recvonly is not enough"),
        (VIDEO_SDP.format(direction="sendrecv"), "the offer is not usable"),  # no ICE, no DTLS
    ],
)
def test_a_bad_webrtc_offer_gets_a_json_400(
    service: RunningService, sdp: str, message: str
) -> None:
    reply = service.request("POST", "/v1/webrtc/offer", {"sdp": sdp, "type": "offer"})
    assert reply.status == 400, reply.body
    assert message in reply.body["error"]["message"]


def test_a_body_that_arrives_in_pieces_is_read_whole(service: RunningService) -> None:
    body = b'{"url": "rtsp://h/x", "colour": "red"}'
    host, port = service.base.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as connection:
        connection.sendall(
            b"POST /v1/streams HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            + f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
            + body[:10]
        )
        time.sleep(0.3)  # as a slow network or a proxy delivers it
        connection.sendall(body[10:])
        answer = b"".join(iter(lambda: connection.recv(65536), b""))
    head, _, payload = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400")
    assert "unknown field(s): colour" in json.loads(payload)["error"]["message"]


def test_file_urls_stay_off_whatever_the_case_of_the_scheme(fake_model: Path, clip: Path) -> None:
    with running_service(ServiceConfig(analysis={"model": fake_model})) as service:
        for url in (clip.as_uri(), "FILE://" + clip.as_uri().removeprefix("file://")):
            reply = service.request("POST", "/v1/streams", {"url": url})
            assert reply.status == 400, (url, reply.body)
            assert "file:// URLs are disabled" in reply.body["error"]["message"]
        assert service.request("GET", "/v1/streams").body["streams"] == []


def test_malformed_and_oversized_bodies_are_refused(service: RunningService) -> None:
    assert service.request("POST", "/v1/streams", raw=b"{not json").status == 400
    huge = service.request("POST", "/v1/streams", raw=b'{"url": "' + b"x" * 10000 + b'"}')
    assert huge.status == 413 and huge.body["error"]["status"] == 413
    assert service.request("GET", "/v1/streams/nope").status == 404


def test_duplicate_ids_and_the_stream_limit(service: RunningService) -> None:
    ids = []
    try:
        for i in range(3):  # the limit; unreachable RTMP servers keep them reconnecting
            reply = service.request(
                "POST",
                "/v1/streams",
                {"url": f"rtmp://127.0.0.1:{free_port()}/live/x", "id": f"d{i}"},
            )
            assert reply.status == 201, reply.body
            ids.append(f"d{i}")
        again = service.request("POST", "/v1/streams", {"url": "rtmp://127.0.0.1:1/a", "id": "d0"})
        assert again.status == 409
        over = service.request("POST", "/v1/streams", {"url": "rtmp://127.0.0.1:1/a"})
        assert over.status == 429 and "maximum of 3" in over.body["error"]["message"]
        status = service.wait_for(lambda s: s["reconnects"] >= 1, "d0")
        assert status["state"] in ("reconnecting", "starting") and status["last_error"]
    finally:
        for sid in ids:
            service.request("DELETE", f"/v1/streams/{sid}")


def test_cors_only_for_configured_origins(service: RunningService) -> None:
    preflight = {"Access-Control-Request-Method": "POST"}
    ok = service.request(
        "OPTIONS", "/v1/streams", headers={"Origin": "https://ok.example", **preflight}
    )
    assert ok.status == 204 and ok.headers["Access-Control-Allow-Origin"] == "https://ok.example"
    bad = service.request(
        "OPTIONS", "/v1/streams", headers={"Origin": "https://evil.example", **preflight}
    )
    assert bad.status == 403 and "Access-Control-Allow-Origin" not in bad.headers


def test_metrics_are_prometheus_text_with_our_names(service: RunningService, clip: Path) -> None:
    service.request("POST", "/v1/streams", {"url": clip.as_uri(), "id": "m1"})
    service.wait_for(lambda s: s["state"] == "ended", "m1")
    with urllib.request.urlopen(service.base + "/metrics", timeout=10) as response:
        text = response.read().decode()
    families = {f.name: f for f in text_string_to_metric_families(text)}
    assert all(
        name.startswith("swapwatch_")
        for name in families
        if not name.startswith(("python_", "process_"))
    )
    analysed = {
        s.labels["stream"]: s.value
        for s in families["swapwatch_frames_analysed"].samples
        if s.name.endswith("_total")
    }
    assert analysed["m1"] > 20
    latency = [
        s for s in families["swapwatch_frame_latency_seconds"].samples if s.name.endswith("_count")
    ]
    assert latency[0].value > 20
    stages = {
        s.labels["stage"]
        for s in families["swapwatch_stage_seconds"].samples
        if "stage" in s.labels
    }
    assert {"detection", "landmarks", "engine"} <= stages
    assert any(
        s.value > 0
        for s in families["swapwatch_engine_batch_size"].samples
        if s.name.endswith("_count")
    )
    # The event loop's lag is measured all along (the soak benchmark reads it every minute).
    lag = {s.name: s.value for s in families["swapwatch_event_loop_lag_seconds"].samples}
    assert lag["swapwatch_event_loop_lag_seconds_count"] > 0
    assert lag["swapwatch_event_loop_lag_seconds_sum"] >= 0
    service.request("DELETE", "/v1/streams/m1")


def test_rtmp_push_ingest_takes_only_the_streams_own_key(fake_model: Path) -> None:
    low = free_port()
    config = ServiceConfig(
        analysis={"model": fake_model}, ingest={"rtmp": {"host": "127.0.0.1", "ports": (low, low)}}
    )
    with running_service(config) as service:
        reply = service.request("POST", "/v1/streams", {"ingest": "rtmp", "id": "studio"})
        assert reply.status == 201, reply.body
        second = service.request("POST", "/v1/streams", {"ingest": "rtmp"})
        assert second.status == 429  # one port per pushed stream, and the range has one
        # Neither a made-up key nor the stream's id may publish, and nothing of theirs is
        # decoded: no frame counted, no stream.started recorded.
        for wrong in ("WRONGKEY", "studio"):
            pusher = start_publisher(f"rtmp://127.0.0.1:{low}/live/{wrong}", 2.0)
            pusher.communicate(timeout=60)
            assert pusher.returncode != 0, f"a publish to /live/{wrong} was taken"
        status = service.request("GET", "/v1/streams/studio").body
        assert status["state"] == "starting" and status["video"] is None
        assert status["frames_in"] == 0 and status["alarms_raised"] == 0
        assert service.request("GET", "/v1/events/status").body["outbox"]["recorded"] == 0
        metrics = service.request("GET", "/metrics").body
        assert 'swapwatch_rtmp_publishes_refused_total{reason="key"} 2.0' in metrics
        # The key: unguessable, not the id, in the answer to the POST only.
        key = reply.body["stream_key"]
        assert len(key) >= 32 and "studio" not in key
        assert reply.body["ingest_url"] == f"rtmp://127.0.0.1:{low}/live/{key}"
        for later in ("/v1/streams/studio", "/v1/streams"):
            shown = json.dumps(service.request("GET", later).body)
            assert key not in shown and f"rtmp://127.0.0.1:{low}/live/***" in shown
        pusher = start_publisher(reply.body["ingest_url"], 4.0)
        status = service.wait_for(lambda s: s["frames_analysed"] > 10 and s["faces"] == 1, "studio")
        assert status["state"] == "running" and status["kind"] == "rtmp"
        assert int(finished(pusher)) == 60


def test_one_shot_publishers_are_taken_whenever_they_come(fake_model: Path) -> None:
    # The stream's decoder listens only once its worker has loaded the face models, and again
    # only after its reconnect delay once a publisher has gone. A one-shot publisher (ffmpeg -re
    # ... -f flv URL) connects as soon as it is started and never again.
    low = free_port()
    config = ServiceConfig(
        analysis={"model": fake_model},
        ingest={"rtmp": {"host": "127.0.0.1", "ports": (low, low)}, "reconnect_initial_s": 2.0},
    )
    first, second = primed_publisher(3.0), primed_publisher(2.0)
    try:
        with running_service(config) as service:
            reply = service.request("POST", "/v1/streams", {"ingest": "rtmp", "id": "studio"})
            assert reply.status == 201, reply.body
            push_to(first, reply.body["ingest_url"])  # right after the 201
            assert int(finished(first)) == 45
            run = service.request("GET", "/v1/streams/studio").body["run"]
            push_to(second, reply.body["ingest_url"])  # right after the first one left
            assert int(finished(second)) == 30
            status = service.wait_for(lambda s: s["run"] not in (None, run), "studio")
            assert status["video"]["width"] == 640 and status["frames_analysed"] > 20
            metrics = service.request("GET", "/metrics").body
            assert "swapwatch_rtmp_publishes_refused_total{" not in metrics
    finally:
        for pusher in (first, second):
            pusher.kill()
            pusher.communicate(timeout=10)


def listening_addresses(port: int) -> set[str]:
    """The addresses a TCP socket of this machine listens on at `port` (Linux)."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError):
            for line in Path(table).read_text().splitlines()[1:]:
                local, state = line.split()[1], line.split()[3]
                address, hex_port = local.split(":")
                if state == "0A" and int(hex_port, 16) == port:  # 0A: LISTEN
                    raw = bytes.fromhex(address)  # 32-bit words in host order
                    words = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))
                    found.add(str(ipaddress.ip_address(words)))
    return found


@pytest.mark.skipif(not Path("/proc/net/tcp").exists(), reason="reads Linux's socket table")
def test_the_rtmp_ingest_listens_where_the_api_listens(fake_model: Path) -> None:
    # The API is on loopback without a token: the ingest must not be open to the network.
    low = free_port()
    config = ServiceConfig(analysis={"model": fake_model}, ingest={"rtmp": {"ports": (low, low)}})
    with running_service(config) as service:
        reply = service.request("POST", "/v1/streams", {"ingest": "rtmp", "id": "studio"})
        assert reply.status == 201, reply.body
        deadline = time.monotonic() + 10
        while not listening_addresses(low) and time.monotonic() < deadline:
            time.sleep(0.05)
        addresses = listening_addresses(low)
        assert addresses, "nothing listens on the ingest port"
        assert all(ipaddress.ip_address(a).is_loopback for a in addresses), addresses


@pytest.mark.parametrize(
    ("public_host", "expected"), [(None, "127.0.0.1"), ("ingest.example.org", "ingest.example.org")]
)
def test_the_ingest_url_names_the_configured_host_not_the_request_host(
    fake_model: Path, public_host: str | None, expected: str
) -> None:
    # A client's Host header must not choose where publishers are sent (a poisoned cache or a
    # proxy would hand out an attacker's ingest): the configured host, else where it listens.
    low = free_port()
    rtmp = {"host": "127.0.0.1", "ports": (low, low), "public_host": public_host}
    config = ServiceConfig(analysis={"model": fake_model}, ingest={"rtmp": rtmp})
    with running_service(config) as service:
        reply = service.request(
            "POST",
            "/v1/streams",
            {"ingest": "rtmp", "id": "studio"},
            headers={"Host": "attacker.example:8080"},
        )
        assert reply.status == 201, reply.body
        assert "attacker" not in json.dumps(reply.body)
        assert reply.body["ingest_url"].startswith(f"rtmp://{expected}:{low}/live/")


def test_a_pulled_stream_that_dies_reconnects(fake_model: Path) -> None:
    port = free_port()
    url = f"tcp://127.0.0.1:{port}"
    camera = f"{url}?listen=1"
    config = ServiceConfig(
        analysis={"model": fake_model},
        ingest={"reconnect_initial_s": 0.3, "reconnect_max_s": 1.0, "read_timeout_s": 3.0},
    )
    with running_service(config) as service:
        first = start_publisher(camera, 3.0, "mpegts")
        time.sleep(0.5)
        assert service.request("POST", "/v1/streams", {"url": url, "id": "cam"}).status == 201
        service.wait_for(lambda s: s["state"] == "running" and s["frames_analysed"] > 5, "cam")
        finished(first)  # the camera goes away
        service.wait_for(lambda s: s["reconnects"] >= 1, "cam")
        second = start_publisher(camera, 4.0, "mpegts")
        before = service.request("GET", "/v1/streams/cam").body["frames_analysed"]
        status = service.wait_for(
            lambda s: s["state"] == "running" and s["frames_analysed"] > before + 5, "cam"
        )
        assert status["reconnects"] >= 1
        finished(second)


def test_the_api_needs_the_token_when_one_is_set(fake_model: Path) -> None:
    config = ServiceConfig(analysis={"model": fake_model}, auth={"token": TOKEN})
    with running_service(config) as service:
        denied = service.request("GET", "/v1/streams")
        assert denied.status == 401 and denied.headers["WWW-Authenticate"].startswith("Bearer")
        assert service.request("GET", "/v1/streams", token="wrong-token-wrong-token").status == 401
        assert service.request("GET", "/v1/streams", token=TOKEN).status == 200
        assert (
            service.request("POST", "/v1/webrtc/offer", {"sdp": "x", "type": "offer"}).status == 401
        )
        assert service.request("GET", "/healthz").status == 200  # probes stay open


def test_the_quality_gate_settings_reach_every_stream(fake_model: Path, clip: Path) -> None:
    # The clip's face is frontal, bright and sharp: only the configured gate can skip it.
    config = load_config(
        environ={"SWAPWATCH_ANALYSIS_QUALITY_MAX_TURN": "0.001"},
        overrides={"analysis.model": fake_model, "ingest.pull.allow_file_urls": True},
    )
    with running_service(config) as service:
        reply = service.request("POST", "/v1/streams", {"url": clip.as_uri(), "id": "turned"})
        assert reply.status == 201, reply.body
        status = service.wait_for(lambda s: s["state"] == "ended", "turned")
    assert status["faces"] == 1 and status["frames_analysed"] > 20
    # the test model calls every scored face fake: a face scored at all would have alarmed
    assert not status["alarm"] and status["alarms_raised"] == 0
    assert status["tracks"][0]["skip_reason"] == "extreme_pose"


def test_a_stream_removed_while_its_id_is_taken_again_leaves_the_new_one(
    fake_model: Path,
) -> None:
    # DELETE waits for the old worker to stop; a POST of the same id can land meanwhile.
    async def main() -> None:
        config = ServiceConfig(
            analysis={"model": fake_model},
            ingest={"reconnect_initial_s": 0.3, "read_timeout_s": 3.0},
        )
        engine = create_engine("onnxruntime", fake_model)
        manager = StreamManager(StreamSettings.of(config), engine, ServiceMetrics())
        url = f"rtmp://127.0.0.1:{free_port()}/live/x"  # nobody there: it keeps reconnecting
        old = await manager.add_pull(url, "cam")
        new: list[ServiceStream] = []
        stop = old.stop

        async def stop_then_reuse_the_id(*args: Any, **kwargs: Any) -> None:
            await stop(*args, **kwargs)
            new.append(await manager.add_pull(url, "cam"))

        old.stop = stop_then_reuse_the_id  # type: ignore[method-assign]
        try:
            await manager.remove("cam")
            assert manager.get("cam") is new[0] and not new[0].done
        finally:
            await manager.close()

    asyncio.run(main())


def test_a_stream_that_ends_by_itself_releases_its_face_models(
    fake_model: Path, clip: Path
) -> None:
    async def main() -> None:
        config = ServiceConfig(
            analysis={"model": fake_model}, ingest={"pull": {"allow_file_urls": True}}
        )
        engine = create_engine("onnxruntime", fake_model)
        manager = StreamManager(StreamSettings.of(config), engine, ServiceMetrics())
        worker = await manager.add_pull(clip.as_uri(), "vod")
        try:
            for _ in range(600):
                if worker.done and worker.worker._analyzer is None:
                    break
                await asyncio.sleep(0.05)
            assert worker.state.value == "ended"
            assert worker.worker._analyzer is None  # closed without waiting for a DELETE
        finally:
            await manager.close()

    asyncio.run(main())


def slow_saves(state: StateStore, saving: threading.Event) -> None:
    """Each save takes 0.5 s, as on a slow disk; `saving` is set when one has begun."""
    save = state.save_stream

    def slowly(stream: SavedStream) -> None:
        saving.set()
        time.sleep(0.5)
        save(stream)

    state.save_stream = slowly  # type: ignore[method-assign]


def test_a_delete_during_the_re_add_of_its_id_leaves_the_state_file_and_the_service_agreeing(
    fake_model: Path, clip: Path, tmp_path: Path
) -> None:
    # The stream "vod" ended; a client adds it again and, while its row is being saved,
    # deletes it. Either order is a valid answer, but a stream running without its row would
    # be lost at the next restart, and a row without its stream would come back unasked.
    async def main() -> None:
        config = ServiceConfig(
            analysis={"model": fake_model}, ingest={"pull": {"allow_file_urls": True}}
        )
        state = StateStore(tmp_path / "streams.sqlite")
        state.open()
        engine = create_engine("onnxruntime", fake_model)
        manager = StreamManager(StreamSettings.of(config), engine, ServiceMetrics(), state)
        try:
            first = await manager.add_pull(clip.as_uri(), "vod")
            while not first.done:
                await asyncio.sleep(0.05)
            saving = threading.Event()
            slow_saves(state, saving)
            again = asyncio.create_task(manager.add_pull(clip.as_uri(), "vod"))
            await asyncio.to_thread(saving.wait, 10)
            await manager.remove("vod")
            await again
            await asyncio.sleep(0.1)
            saved = [s.stream_id for s in await asyncio.to_thread(state.streams)]
            assert ("vod" in manager.workers) == ("vod" in saved), (manager.workers, saved)
        finally:
            await manager.close()
            state.close()

    asyncio.run(main())


def test_a_shutdown_during_an_add_either_refuses_it_unsaved_or_saves_what_it_took(
    fake_model: Path, tmp_path: Path
) -> None:
    # An add that was answered 201 is resumed at the next start; one refused (429) is not.
    async def main() -> None:
        config = ServiceConfig(analysis={"model": fake_model})
        state = StateStore(tmp_path / "streams.sqlite")
        state.open()
        engine = create_engine("onnxruntime", fake_model)
        manager = StreamManager(StreamSettings.of(config), engine, ServiceMetrics(), state)
        saving = threading.Event()
        slow_saves(state, saving)
        url = f"rtmp://127.0.0.1:{free_port()}/live/x"  # nobody there: it keeps reconnecting
        add = asyncio.create_task(manager.add_pull(url, "cam"))
        await asyncio.to_thread(saving.wait, 10)
        await manager.close()
        refused = False
        try:
            await add
        except TooManyStreams:
            refused = True
        saved = [s.stream_id for s in await asyncio.to_thread(state.streams)]
        state.close()
        assert saved == ([] if refused else ["cam"])

    asyncio.run(main())
