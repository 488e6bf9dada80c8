"""Faults, each against a real service: a source killed or frozen, a sink down for longer than
its retry budget, the disk full under the outbox, the outbox file damaged, SIGKILL while
delivering and while a publisher pushes. Each test shows that nothing committed is lost and that
the fault is visible in the API, the metrics or the log."""

from __future__ import annotations

import contextlib
import json
import os
import resource
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pytest
from media import Placement, write_video
from prometheus_client.parser import text_string_to_metric_families
from publisher import start_publisher
from receivers import Receiver
from service import RunningService, free_port, running_service

from swapwatch.events import Event, EventLog, EventType
from swapwatch.events.model import derived_id, utc_now
from swapwatch.server.config import ServiceConfig


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_video(
        tmp_path_factory.mktemp("faults") / "face.mp4",
        [Placement(0.5, 0.5, 300)],
        seconds=3.0,
        size=(640, 360),
    )


def outbox_events(path: Path) -> list[Event]:
    with EventLog(path) as log:
        return [stored.event() for stored in log.read_after(0, 10_000)]


def metric(service: RunningService, name: str, **labels: str) -> float | None:
    text = service.request("GET", "/metrics").body
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and sample.labels == labels:
                return float(sample.value)
    return None


def sink_status(service: RunningService, name: str) -> dict[str, object]:
    sinks = service.request("GET", "/v1/events/status").body["sinks"]
    return dict(next(s for s in sinks if s["name"] == name))


def wait_until(condition: object, timeout: float, what: str) -> None:
    assert callable(condition)
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def test_a_sink_down_past_its_retry_budget_gets_every_event_in_order_when_back(
    tmp_path: Path, fake_model: Path, clip: Path
) -> None:
    # The retry clock compressed through the sink's own options: 5 tries at most 0.05 s apart.
    # Down for 3 s is some 60 failed tries, as a receiver down for an hour is at the defaults.
    receiver = Receiver()  # down: nothing listens on its port yet
    outbox = tmp_path / "events.sqlite"
    config = ServiceConfig(
        analysis={"model": fake_model, "cusum_h": 4.0},
        ingest={"pull": {"allow_file_urls": True}},
        events={
            "path": outbox,
            "sinks": (
                f"webhook:{receiver.url};name=hook;backoff=0.02;max_backoff=0.05;max_attempts=5",
            ),
        },
    )
    try:
        with running_service(config) as service:
            for stream in ("a", "b"):
                body = {"url": clip.as_uri(), "id": stream}
                assert service.request("POST", "/v1/streams", body).status == 201
            for stream in ("a", "b"):
                service.wait_for(lambda s: s["state"] == "ended", stream, timeout=90)
            # started, raised, ended of each; a stream's state reads `ended` as its last event
            # goes to the outbox's writer, so the commit may follow a moment later.
            wait_until(lambda: len(outbox_events(outbox)) >= 6, 10, "six events in the outbox")
            recorded = outbox_events(outbox)
            time.sleep(3.0)
            down = sink_status(service, "hook")
            assert down["delivered"] == 0 and down["dead_lettered"] == 0, down
            assert int(str(down["failed_attempts"])) > 20 and down["last_error"]
            assert down["backlog"] == len(recorded)
            assert metric(service, "swapwatch_sink_backlog", sink="hook") == len(recorded)
            assert metric(service, "swapwatch_sink_dead_letters_total", sink="hook") == 0

            receiver.start()
            assert receiver.wait_for({e.id for e in recorded}, timeout=20)
            wait_until(lambda: sink_status(service, "hook")["backlog"] == 0, 10, "no backlog")
            assert receiver.ids() == [e.id for e in recorded]  # once each, in outbox order
            assert metric(service, "swapwatch_sink_backlog", sink="hook") == 0
            assert [json.loads(d.body)["id"] for d in receiver.deliveries] == receiver.ids()
    finally:
        receiver.stop()


class ServeProcess:
    """`swapwatch serve` in a process of its own (so it can be killed or limited), its output
    collected through a pipe: a pipe is not a file, so a file-size limit does not touch it."""

    def __init__(self, config: dict[str, object], directory: Path) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        lines = [f"http.port = {self.port}"] + [f"{k} = {toml_value(v)}" for k, v in config.items()]
        self.config_file = directory / "swapwatch.toml"
        self.config_file.write_text("\n".join(lines) + "\n")
        command = [sys.executable, "-m", "swapwatch", "serve", "--config", str(self.config_file)]
        self.output: list[str] = []
        self.process = subprocess.Popen(
            command,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self.api = RunningService(ServiceConfig(http={"port": self.port}), self.base)

    def _read(self) -> None:
        assert self.process.stdout is not None
        with self.process.stdout:
            for line in self.process.stdout:
                self.output.append(line)

    def log(self) -> str:
        return "".join(self.output)

    def wait_ready(self, timeout: float = 90) -> RunningService:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.process.poll() is None, f"the service exited:\n{self.log()[-3000:]}"
            with (
                contextlib.suppress(OSError),
                urllib.request.urlopen(self.base + "/readyz", timeout=2) as reply,
            ):
                if reply.status == 200:
                    return self.api
            time.sleep(0.2)
        raise AssertionError(f"the service never became ready:\n{self.log()[-3000:]}")

    def kill(self) -> None:
        self.process.kill()
        assert self.process.wait(timeout=10) == -signal.SIGKILL
        self._reader.join(5)

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            code = self.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.process.kill()
            code = self.process.wait()
        self._reader.join(5)
        return code


def toml_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    return json.dumps(str(value))


def add_file_stream(api: RunningService, clip: Path, stream: str) -> dict[str, object]:
    reply = api.request("POST", "/v1/streams", {"url": clip.as_uri(), "id": stream})
    assert reply.status == 201, reply.body
    return api.wait_for(lambda s: s["state"] == "ended", stream, timeout=90)


def file_size_limit(pid: int, limit: int | None) -> None:
    """Files the process writes may not grow past `limit` bytes (None: no limit). The kernel
    then fails its writes as a full disk does (EFBIG where a full disk says ENOSPC): a full disk
    with no root, loop device or tmpfs needed, that can be filled and emptied at will."""
    soft = resource.RLIM_INFINITY if limit is None else limit
    resource.prlimit(pid, resource.RLIMIT_FSIZE, (soft, resource.RLIM_INFINITY))


def test_a_full_disk_under_the_outbox_is_reported_loses_nothing_committed_and_recovers(
    tmp_path: Path, fake_model: Path, clip: Path
) -> None:
    receiver = Receiver().start()
    outbox = tmp_path / "events.sqlite"
    config = {
        "analysis.model": fake_model,
        "ingest.pull.allow_file_urls": True,
        "analysis.cusum_h": 4.0,
        "events.path": outbox,
        "events.sinks": [
            f"webhook:{receiver.url};name=hook;backoff=0.05;max_backoff=0.2;max_attempts=1000"
        ],
    }
    service = ServeProcess(config, tmp_path)
    try:
        api = service.wait_ready()
        add_file_stream(api, clip, "before")
        wait_until(lambda: len(receiver.ids()) == 3, 20, "the first stream's events")
        receiver.status = 503  # the receiver fails for a while
        add_file_stream(api, clip, "queued")  # committed, waiting for the receiver
        wait_until(lambda: sink_status(api, "hook")["backlog"] == 3, 10, "a backlog")

        # The disk fills: the outbox's write-ahead log (every commit grows it) can grow no more.
        file_size_limit(service.process.pid, Path(f"{outbox}-wal").stat().st_size)
        final = add_file_stream(api, clip, "full")
        assert final["alarms_raised"] >= 1  # analysis goes on
        state = api.request("GET", "/v1/events/status").body["outbox"]
        assert not state["ok"] and state["lost"] == 3, state
        assert str(outbox) in state["error"], state["error"]
        assert "disk is full" in state["error"].replace(str(outbox), ""), state["error"]
        assert api.request("GET", "/readyz").body["events"] == "degraded"
        assert metric(api, "swapwatch_outbox_up") == 0
        assert metric(api, "swapwatch_events_lost_total") == 3
        assert sink_status(api, "hook")["backlog"] == 3

        # The receiver is back while the disk is still full: an event delivered cannot be
        # recorded as delivered; it waits for the outbox, it is not sent again and again.
        receiver.status = 200
        wait_until(lambda: receiver.ids(), 10, "a delivery")
        time.sleep(2.0)
        assert len(receiver.ids()) == 4, receiver.ids()

        # Space comes back: what waited is delivered, and new events are recorded again.
        file_size_limit(service.process.pid, None)
        add_file_stream(api, clip, "after")
        wait_until(
            lambda: api.request("GET", "/v1/events/status").body["outbox"]["ok"], 10, "recovery"
        )
        assert metric(api, "swapwatch_outbox_up") == 1
        wait_until(lambda: sink_status(api, "hook")["backlog"] == 0, 20, "delivery")
    finally:
        code = service.stop()
        receiver.stop()
    assert code == 0, service.log()[-3000:]
    recorded = outbox_events(outbox)
    assert [e.stream for e in recorded] == ["before"] * 3 + ["queued"] * 3 + ["after"] * 3
    assert receiver.ids() == [e.id for e in recorded]  # each once, in order
    log = service.log()
    assert "Traceback" not in log, log[-3000:]
    assert log.count("events are not being recorded") == 1, log[-3000:]
    assert log.count("cannot record a delivery") == 1, log[-3000:]
    assert "recorded in the outbox again" in log


def damage(path: Path, how: str) -> None:
    data = path.read_bytes()
    if how == "overwritten":  # table pages overwritten, the header kept
        page = 4096
        path.write_bytes(data[: 2 * page] + b"\xa5" * (4 * page) + data[6 * page :])
    else:  # cut in the middle, as a copy interrupted or a disk full while it grew
        path.write_bytes(data[: len(data) // 2])


@pytest.mark.parametrize("how", ["overwritten", "truncated"])
def test_a_damaged_outbox_is_named_at_start_with_what_to_do_and_left_as_it_is(
    tmp_path: Path, fake_model: Path, clip: Path, how: str
) -> None:
    outbox = tmp_path / "events.sqlite"
    with EventLog(outbox) as log:
        for n in range(300):
            log.append(_filler_event(n))
    damage(outbox, how)
    damaged = outbox.read_bytes()
    config = {
        "analysis.model": fake_model,
        "ingest.pull.allow_file_urls": True,
        "analysis.cusum_h": 4.0,
        "events.path": outbox,
    }
    service = ServeProcess(config, tmp_path)
    try:
        api = service.wait_ready()
        assert api.request("GET", "/readyz").body["events"] == "degraded"
        state = api.request("GET", "/v1/events/status").body["outbox"]
        assert not state["ok"] and str(outbox) in state["error"]
        final = add_file_stream(api, clip, "cam")  # analysis goes on; its events are counted
        assert final["alarms_raised"] >= 1
        assert metric(api, "swapwatch_events_lost_total") == 3
    finally:
        code = service.stop()
    assert code == 0
    log = service.log()
    errors = [line for line in log.splitlines() if " ERROR " in line]
    assert len(errors) == 1 and str(outbox) in errors[0], log[-3000:]
    assert "move" in errors[0] and ".dump" in errors[0], errors[0]
    assert "Traceback" not in log, log[-3000:]
    assert outbox.read_bytes() == damaged  # left for salvage, not replaced or "repaired"

    # What the line says to do works: the file moved aside, the service records events again.
    outbox.rename(tmp_path / "events.damaged.sqlite")
    service = ServeProcess(config, tmp_path)
    try:
        api = service.wait_ready()
        assert api.request("GET", "/v1/events/status").body["outbox"]["ok"]
    finally:
        assert service.stop() == 0


def _filler_event(number: int) -> Event:
    return Event(
        id=derived_id("filler", number),
        type=EventType.STREAM_ERROR,
        time=utc_now(),
        stream="filler",
        run="filler",
        detail={"error": "x" * 400},
    )


def stream_events(outbox: Path, stream: str) -> list[Event]:
    return [e for e in outbox_events(outbox) if e.stream == stream]


def test_a_pulled_source_frozen_then_killed_is_reported_and_picked_up_again(
    tmp_path: Path, fake_model: Path
) -> None:
    # The camera serves MPEG-TS over TCP and the service pulls it. Frozen (SIGSTOP): it keeps
    # the connection open and sends nothing. Killed (SIGKILL): its connection drops mid-stream.
    receiver = Receiver().start()
    port = free_port()
    url = f"tcp://127.0.0.1:{port}"
    outbox = tmp_path / "events.sqlite"
    config = ServiceConfig(
        analysis={"model": fake_model, "cusum_h": 4.0},
        ingest={
            "reconnect_initial_s": 0.3,
            "reconnect_max_s": 1.0,
            "read_timeout_s": 2.0,
        },
        events={
            "path": outbox,
            "sinks": (f"webhook:{receiver.url};name=hook;backoff=0.05;max_backoff=0.2",),
        },
    )
    cameras: list[subprocess.Popen[str]] = []

    def camera() -> None:
        cameras.append(start_publisher(f"{url}?listen=1", 60.0, "mpegts"))

    def analysing(more_than: int) -> dict[str, object]:
        return service.wait_for(
            lambda s: s["state"] == "running" and s["frames_analysed"] > more_than, "cam", 60
        )

    try:
        with running_service(config) as service:
            camera()
            time.sleep(0.5)
            assert service.request("POST", "/v1/streams", {"url": url, "id": "cam"}).status == 201
            analysing(5)

            os.kill(cameras[-1].pid, signal.SIGSTOP)  # frozen
            frozen = service.wait_for(lambda s: s["state"] == "reconnecting", "cam", 20)
            assert "no data" in str(frozen["last_error"]), frozen
            assert (metric(service, "swapwatch_reconnects_total", stream="cam") or 0) >= 1
            cameras[-1].kill()

            camera()  # the camera is back
            before = int(str(analysing(0)["frames_analysed"]))
            analysing(before + 5)
            cameras[-1].kill()  # killed mid-stream
            service.wait_for(lambda s: s["state"] == "reconnecting", "cam", 20)
            camera()
            analysing(int(str(service.wait_for(lambda s: True, "cam")["frames_analysed"])) + 5)
            assert service.request("DELETE", "/v1/streams/cam").status == 204
            wait_until(lambda: sink_status(service, "hook")["backlog"] == 0, 20, "delivery")
    finally:
        for process in cameras:
            process.kill()
            process.communicate()
        receiver.stop()
    events = stream_events(outbox, "cam")
    kinds = [e.type.value for e in events]
    first = kinds.index("stream.started")  # a loaded machine may try before the camera listens
    assert set(kinds[:first]) <= {"stream.error"}, kinds
    events, kinds = events[first:], kinds[first:]
    assert kinds.count("stream.started") == 3 and kinds.count("stream.error") == 2, kinds
    assert kinds[-1] == "stream.ended" and events[-1].detail == {"reason": "removed"}
    assert all(
        e.detail and e.detail["final"] is False for e in events if e.type.value == "stream.error"
    )
    assert receiver.ids()[-len(events) :] == [e.id for e in events]  # all, once, in order


def test_sigkill_during_a_push_ingest_restarts_cleanly_and_delivers_what_was_raised(
    tmp_path: Path, fake_model: Path
) -> None:
    receiver = Receiver().start()
    receiver.status = 503  # not delivered yet when the service dies
    low = free_port()
    outbox = tmp_path / "events.sqlite"
    config = {
        "analysis.model": fake_model,
        "analysis.cusum_h": 4.0,
        "events.path": outbox,
        "ingest.rtmp.host": "127.0.0.1",
        "ingest.rtmp.ports": [low, low],
        "events.sinks": [f"webhook:{receiver.url};name=hook;backoff=0.05;max_backoff=0.2"],
    }
    service = ServeProcess(config, tmp_path)
    publisher: subprocess.Popen[str] | None = None
    try:
        api = service.wait_ready()
        reply = api.request("POST", "/v1/streams", {"ingest": "rtmp", "id": "studio"})
        assert reply.status == 201, reply.body
        publisher = start_publisher(reply.body["ingest_url"], 60.0)  # taken once it listens
        api.wait_for(lambda s: s["alarms_raised"] >= 1, "studio", timeout=60)
        service.kill()
        # The publisher sees its connection reset and stops with an error, at once.
        started = time.monotonic()
        _, said = publisher.communicate(timeout=30)
        assert publisher.returncode != 0 and time.monotonic() - started < 15, said[-2000:]

        receiver.status = 200
        service = ServeProcess(config, tmp_path)
        api = service.wait_ready()
        raised = stream_events(outbox, "studio")
        assert [e.type.value for e in raised][:2] == ["stream.started", "alert.raised"]
        assert receiver.wait_for({e.id for e in raised}, timeout=20), service.log()[-3000:]
        # The ingest port came free with the dead process: the resumed ingest listens there.
        again = api.request("GET", "/v1/streams/studio")
        assert again.status == 200, again.body
        assert again.body["ingest_url"] == f"rtmp://127.0.0.1:{low}/live/***"
    finally:
        if publisher is not None and publisher.poll() is None:
            publisher.kill()
            publisher.communicate()
        assert service.stop() == 0, service.log()[-3000:]
        receiver.stop()
    assert "Traceback" not in service.log(), service.log()[-3000:]
