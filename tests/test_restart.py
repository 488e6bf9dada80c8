"""A service killed with SIGKILL and started again on the same state: the streams added through
the API come back with new runs, the runs the crash cut are closed with a `stream.ended` of
reason `crashed` that reaches the sinks, deleted streams stay deleted (a DELETE is answered once
the stream's end is committed, so a crash after it closes nothing), and a push ingest takes
its old key again (and only that key), taking a publisher that reconnects while it starts."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import stat
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import av
import jsonschema
import pytest
from aiohttp.test_utils import TestClient, TestServer
from media import Placement, render_frame
from publisher import primed_publisher, push_to, start_publisher
from receivers import Receiver
from service import RunningService, free_port, running_service, serve_process, wait_until_ready

from swapwatch.engines import create_engine
from swapwatch.errors import ModelError
from swapwatch.events import EventLog, StreamEvents
from swapwatch.events.model import Event, EventType, schema
from swapwatch.server import app as service_app
from swapwatch.server import streams as streams_module
from swapwatch.server.config import ServiceConfig
from swapwatch.server.metrics import ServiceMetrics
from swapwatch.server.state import StateStore, state_path


@pytest.fixture(scope="module")
def long_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """400 s of one picture with a face: cheap to make, and still being analysed when the
    service is killed."""
    path = tmp_path_factory.mktemp("restart") / "long.mp4"
    picture = render_frame(256, 144, [Placement(0.5, 0.5, 100)], 0.0)
    with av.open(str(path), mode="w") as out:
        stream = out.add_stream("libx264", rate=10)
        stream.width, stream.height, stream.pix_fmt = 256, 144, "yuv420p"
        stream.options = {"preset": "ultrafast", "tune": "zerolatency"}
        for i in range(4000):
            frame = av.VideoFrame.from_ndarray(picture, format="rgb24")
            frame.pts = i
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path


@dataclass
class Service:
    """One `swapwatch serve` process at a time on the same config and state."""

    config_file: Path
    log: Path
    port: int
    process: subprocess.Popen[bytes] | None = None
    api: RunningService = field(init=False)

    def __post_init__(self) -> None:
        self.api = RunningService(
            ServiceConfig(http={"port": self.port}), f"http://127.0.0.1:{self.port}"
        )

    def start(self, wait: bool = True) -> None:
        self.process = serve_process(self.config_file, self.log)
        if wait:
            self.wait_until_ready()

    def wait_until_ready(self) -> None:
        assert self.process is not None
        wait_until_ready(self.api.base, self.process)

    def kill(self) -> None:
        assert self.process is not None and self.process.poll() is None
        os.kill(self.process.pid, signal.SIGKILL)
        assert self.process.wait(timeout=10) == -signal.SIGKILL

    def stop(self, kill: bool = False) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL if kill else signal.SIGTERM)
            self.process.wait(timeout=60)


def make_service(tmp_path: Path, receiver: Receiver, model: Path, **settings: Any) -> Service:
    port = free_port()
    lines = [
        f"http.port = {port}",
        f'analysis.model = "{model}"',
        f'events.path = "{tmp_path / "state" / "events.sqlite"}"',
        f'events.sinks = ["webhook:{receiver.url};backoff=0.2;max_backoff=0.5"]',
        *(f"{key} = {json.dumps(value)}" for key, value in settings.items()),
    ]
    config_file = tmp_path / "swapwatch.toml"
    config_file.write_text("\n".join(lines) + "\n")
    return Service(config_file, tmp_path / "serve.log", port)


def delivered(receiver: Receiver) -> list[dict[str, Any]]:
    return [json.loads(d.body) for d in receiver.deliveries]


def wait_for_event(
    receiver: Receiver, run: str, kind: str, timeout: float = 30.0
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for event in delivered(receiver):
            if event["run"] == run and event["type"] == kind:
                return event
        time.sleep(0.05)
    raise AssertionError(f"no {kind} of run {run} delivered; got {delivered(receiver)}")


def stream_ids(service: Service) -> list[str]:
    reply = service.api.request("GET", "/v1/streams")
    assert reply.status == 200, reply.body
    return [s["id"] for s in reply.body["streams"]]


def test_a_crash_closes_the_runs_it_cut_and_the_saved_streams_come_back(
    tmp_path: Path, fake_model: Path, long_clip: Path, receiver: Receiver
) -> None:
    service = make_service(tmp_path, receiver, fake_model, **{"ingest.pull.allow_file_urls": True})
    try:
        service.start()
        for name in ("cam", "gone"):
            reply = service.api.request(
                "POST", "/v1/streams", {"url": long_clip.as_uri(), "id": name}
            )
            assert reply.status == 201, reply.body
        assert service.api.request("DELETE", "/v1/streams/gone").status == 204
        before = service.api.wait_for(lambda s: s["state"] == "running", "cam")
        old_run = before["run"]
        wait_for_event(receiver, old_run, "stream.started")  # committed, then delivered
        service.kill()

        service.start()
        assert stream_ids(service) == ["cam"]  # the deleted one stays deleted
        after = service.api.wait_for(lambda s: s["run"] not in (None, old_run), "cam")
        assert after["kind"] == "pull"
        crashed = wait_for_event(receiver, old_run, "stream.ended")
        assert crashed["stream"] == "cam" and crashed["detail"] == {"reason": "crashed"}
        jsonschema.Draft202012Validator(schema()).validate(crashed)
        new_start = wait_for_event(receiver, after["run"], "stream.started")
        first_arrivals = list(dict.fromkeys(e["id"] for e in delivered(receiver)))
        assert first_arrivals.index(crashed["id"]) < first_arrivals.index(new_start["id"])

        # Deleted, then another crash: it does not come back, and its run is not "crashed".
        assert service.api.request("DELETE", "/v1/streams/cam").status == 204
        wait_for_event(receiver, after["run"], "stream.ended")
        service.kill()
        service.start()
        assert stream_ids(service) == []
    finally:
        service.stop()
    with EventLog(tmp_path / "state" / "events.sqlite") as outbox:
        ended = [e.event() for e in outbox.read_after(0, 10_000) if e.type == "stream.ended"]
    reasons = {(e.stream, e.run): (e.detail or {}).get("reason") for e in ended}
    assert reasons[("cam", old_run)] == "crashed"
    assert reasons[("cam", after["run"])] == "removed"
    assert [key for key, reason in reasons.items() if reason == "crashed"] == [("cam", old_run)]
    assert len([e for e in ended if e.run == old_run]) == 1  # closed once


def test_a_delete_is_answered_once_the_streams_end_is_in_the_outbox(
    tmp_path: Path, fake_model: Path, long_clip: Path
) -> None:
    # Else a crash just after the 204 would close the removed stream's run as "crashed".
    async def main() -> None:
        config = ServiceConfig(
            analysis={"model": fake_model},
            events={"path": tmp_path / "events.sqlite"},
            ingest={"pull": {"allow_file_urls": True}},
        )
        service = service_app.Service(
            config, create_engine("onnxruntime", fake_model), ServiceMetrics()
        )
        await service.start()
        assert service.events.outbox is not None
        outbox = service.events.outbox
        committing = threading.Event()
        commit_ended = threading.Event()
        append = outbox.append

        def slow_append(event: Event) -> Any:
            if event.type is EventType.STREAM_ENDED:
                committing.set()
                commit_ended.wait(10)
            return append(event)

        outbox.append = slow_append  # type: ignore[method-assign]
        try:
            async with TestClient(TestServer(service_app.build_app(service))) as client:
                reply = await client.post(
                    "/v1/streams", json={"url": long_clip.as_uri(), "id": "cam"}
                )
                assert reply.status == 201, await reply.text()
                for _ in range(600):
                    status = await (await client.get("/v1/streams/cam")).json()
                    if status["state"] == "running":
                        break
                    await asyncio.sleep(0.05)
                assert status["state"] == "running", status
                run = status["run"]
                delete = asyncio.create_task(client.delete("/v1/streams/cam"))
                assert await asyncio.to_thread(committing.wait, 10)
                await asyncio.sleep(0.3)
                assert not delete.done()  # the stream has stopped, its end is not yet committed
                commit_ended.set()
                assert (await asyncio.wait_for(delete, 10)).status == 204
                stored = outbox.stream_events_since("cam", ("stream.ended",), 0.0)
                assert [
                    (e.event().run, (e.event().detail or {}).get("reason")) for e in stored
                ] == [(run, "removed")]
                assert await asyncio.to_thread(service.state.open_runs) == []
        finally:
            commit_ended.set()
            await service.close()

    asyncio.run(main())


@pytest.mark.network
def test_a_push_ingest_comes_back_after_a_crash_with_its_key(
    tmp_path: Path, fake_model: Path, receiver: Receiver
) -> None:
    low = free_port()
    service = make_service(
        tmp_path,
        receiver,
        fake_model,
        **{"ingest.rtmp.host": "127.0.0.1", "ingest.rtmp.ports": [low, low]},
    )
    pusher = primed_publisher(60.0)
    try:
        service.start()
        reply = service.api.request("POST", "/v1/streams", {"ingest": "rtmp", "id": "studio"})
        assert reply.status == 201, reply.body
        key, ingest_url = reply.body["stream_key"], reply.body["ingest_url"]
        push_to(pusher, ingest_url)  # at once, and once: taken while the stream starts
        before = service.api.wait_for(lambda s: s["frames_analysed"] > 0, "studio")
        wait_for_event(receiver, before["run"], "stream.started")
        service.kill()
        pusher.kill()
        pusher.communicate(timeout=10)

        # The key is in no file the service keeps and in none of its logs.
        kept_files = [p for p in (tmp_path / "state").rglob("*") if p.is_file()]
        assert kept_files
        for kept in kept_files:
            assert key.encode() not in kept.read_bytes(), kept
        assert key not in service.log.read_text()
        state_file = tmp_path / "state" / "events-streams.sqlite"
        assert stat.S_IMODE(state_file.stat().st_mode) == 0o600  # it holds pulled URLs

        # The encoder reconnects while the service starts again: refused by the system until
        # the ingest's port listens, then held there until the resumed stream's decoder listens.
        service.start(wait=False)
        pusher = start_publisher(ingest_url, 60.0, connect_timeout=60.0)
        service.wait_until_ready()
        status = service.api.request("GET", "/v1/streams/studio").body
        assert status["kind"] == "rtmp"
        assert status["ingest_url"] == f"rtmp://127.0.0.1:{low}/live/***"  # the same port
        crashed = wait_for_event(receiver, before["run"], "stream.ended")
        assert crashed["detail"] == {"reason": "crashed"}
        after = service.api.wait_for(lambda s: s["frames_analysed"] > 10, "studio")
        assert after["state"] == "running" and after["run"] not in (None, before["run"])
        assert pusher.poll() is None, pusher.communicate(timeout=10)[1][-2000:]

        wrong = start_publisher(f"rtmp://127.0.0.1:{low}/live/WRONGKEY", 2.0)
        wrong.communicate(timeout=60)
        assert wrong.returncode != 0, "a publish with another key was taken"
        metrics = service.api.request("GET", "/metrics").body
        assert 'swapwatch_rtmp_publishes_refused_total{reason="key"} 1.0' in metrics
        assert 'reason="not_ready"' not in metrics
    finally:
        pusher.kill()
        pusher.communicate(timeout=10)
        service.stop(kill=True)  # SIGTERM waits for the idle ingest (issue 19, item 6)


def files_config(tmp_path: Path, model: Path, **settings: Any) -> ServiceConfig:
    """A service that may pull files, with its outbox and state file in `tmp_path`."""
    return ServiceConfig(
        analysis={"model": model},
        ingest={"pull": {"allow_file_urls": True}},
        events={"path": tmp_path / "events.sqlite"},
        **settings,
    )


def test_an_unreadable_state_file_stops_the_service_with_one_line(
    tmp_path: Path, fake_model: Path, receiver: Receiver
) -> None:
    service = make_service(tmp_path, receiver, fake_model)
    (tmp_path / "state").mkdir()
    (tmp_path / "state" / "events-streams.sqlite").write_bytes(b"not a database" * 100)
    command = [sys.executable, "-m", "swapwatch", "serve", "--config", str(service.config_file)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert done.returncode == 5, done.stderr
    assert "events-streams.sqlite" in done.stderr and "Traceback" not in done.stderr


def test_a_graceful_restart_resumes_live_streams_but_not_one_that_ended_by_itself(
    tmp_path: Path, fake_model: Path, one_face_video: Path, slow_model_close: None
) -> None:
    config = files_config(tmp_path, fake_model)
    camera = f"rtmp://127.0.0.1:{free_port()}/live/x"  # nobody there yet: it keeps reconnecting
    with running_service(config) as service:
        for body in (
            {"url": camera, "id": "camera"},
            {"url": one_face_video.as_uri(), "id": "clip"},
        ):
            assert service.request("POST", "/v1/streams", body).status == 201
        service.wait_for(lambda s: s["state"] == "ended", "clip", timeout=60)
    with running_service(config) as service:
        listed = service.request("GET", "/v1/streams").body["streams"]
        assert [(s["id"], s["kind"]) for s in listed] == [("camera", "pull")]


def test_a_stream_whose_analysis_could_not_start_stays_saved_and_comes_back(
    tmp_path: Path, fake_model: Path, one_face_video: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The fault is the service's (its face models or a signal plugin would not load), not the
    # stream's: once it is mended and the service started again, the stream must come back.
    config = files_config(tmp_path, fake_model)

    def models_that_will_not_load(*args: Any, **kwargs: Any) -> Any:
        raise ModelError("the face models could not be loaded")

    with monkeypatch.context() as broken:
        broken.setattr(streams_module, "build_analyzer", models_that_will_not_load)
        with running_service(config) as service:
            body = {"url": one_face_video.as_uri(), "id": "clip"}
            assert service.request("POST", "/v1/streams", body).status == 201
            failed = service.wait_for(lambda s: s["state"] == "failed", "clip", timeout=30)
            assert "could not be loaded" in failed["last_error"]
    with running_service(config) as service:
        listed = service.request("GET", "/v1/streams").body["streams"]
        assert [s["id"] for s in listed] == ["clip"]
        ended = service.wait_for(lambda s: s["state"] == "ended", "clip", timeout=60)
        assert ended["frames_analysed"] > 0 and ended["tracks"]  # analysed this time


def test_the_stream_limit_never_drops_a_saved_stream_at_a_restart(
    tmp_path: Path, fake_model: Path, one_face_video: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A stream the service failed keeps its row but no longer counts against the limit, so
    # the rows can outnumber it (as when the limit is lowered): all were accepted with a 201.
    config = files_config(tmp_path, fake_model, limits={"max_streams": 1})
    build = streams_module.build_analyzer
    builds: list[int] = []

    def the_first_build_fails(*args: Any, **kwargs: Any) -> Any:
        builds.append(1)
        if len(builds) == 1:
            raise ModelError("the face models could not be loaded")
        return build(*args, **kwargs)

    camera = f"rtmp://127.0.0.1:{free_port()}/live/x"  # nobody there yet: it keeps reconnecting
    with monkeypatch.context() as broken:
        broken.setattr(streams_module, "build_analyzer", the_first_build_fails)
        with running_service(config) as service:
            clip = {"url": one_face_video.as_uri(), "id": "clip"}
            assert service.request("POST", "/v1/streams", clip).status == 201
            service.wait_for(lambda s: s["state"] == "failed", "clip", timeout=30)
            cam = {"url": camera, "id": "camera"}
            assert service.request("POST", "/v1/streams", cam).status == 201
    with running_service(config) as service:
        listed = service.request("GET", "/v1/streams").body["streams"]
        assert sorted(s["id"] for s in listed) == ["camera", "clip"]
        assert all(s["state"] != "failed" for s in listed), listed


def test_a_run_whose_end_is_in_the_outbox_is_not_closed_again_as_crashed(
    tmp_path: Path, fake_model: Path
) -> None:
    # The process died after committing a run's stream.ended but before marking the run
    # closed (a window between two files), and under another run that had not ended.
    outbox_path = tmp_path / "events.sqlite"
    state = StateStore(state_path(outbox_path))
    state.open()
    state.run_opened("ended", "run-ended")
    state.run_opened("cut", "run-cut")
    state.close()
    with EventLog(outbox_path) as outbox:
        StreamEvents(outbox, "ended", "run-ended").ended({"reason": "removed"})
        StreamEvents(outbox, "cut", "run-cut").started({"width": 640})
    config = ServiceConfig(analysis={"model": fake_model}, events={"path": outbox_path})
    with running_service(config) as service:
        deadline = time.monotonic() + 10
        while service.request("GET", "/v1/events/status").body["outbox"]["recorded"] < 1:
            assert time.monotonic() < deadline, "the cut run was not closed"
            time.sleep(0.05)
    with EventLog(outbox_path) as outbox:
        ended = [e.event() for e in outbox.read_after(0) if e.type == "stream.ended"]
    assert [(e.run, (e.detail or {}).get("reason")) for e in ended] == [
        ("run-ended", "removed"),
        ("run-cut", "crashed"),
    ]
    state.open()
    assert state.open_runs() == []
    state.close()
