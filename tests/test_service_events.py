"""The service's events: the outbox first, then webhook and live feed; a SIGKILL loses nothing; a
broken or full outbox is reported while analysis goes on."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from media import Placement, write_video
from prometheus_client.parser import text_string_to_metric_families
from receivers import Receiver
from service import RunningService, free_port, running_service

from swapwatch.events import Event, EventLog, EventType, OutboxFull, Retention
from swapwatch.server.config import ServiceConfig
from swapwatch.server.state import StateStore, state_path

SECRET = "a-webhook-secret"


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_video(
        tmp_path_factory.mktemp("events") / "face.mp4",
        [Placement(0.5, 0.5, 300)],
        seconds=3.0,
        size=(640, 360),
    )


def outbox_events(path: Path) -> list[Event]:
    with EventLog(path) as log:
        return [stored.event() for stored in log.read_after(0, 10_000)]


def events_once_ended(path: Path, streams: set[str], timeout: float = 10.0) -> list[Event]:
    """The outbox's events once each stream's stream.ended is in it: a stream's status says
    ended as the event goes to the outbox writer, a moment before it is committed."""
    deadline = time.monotonic() + timeout
    while True:
        events = outbox_events(path)
        ended = {e.stream for e in events if e.type is EventType.STREAM_ENDED}
        if streams <= ended or time.monotonic() > deadline:
            return events
        time.sleep(0.05)


def add_file_stream(service: RunningService, clip: Path, stream_id: str) -> None:
    reply = service.request("POST", "/v1/streams", {"url": clip.as_uri(), "id": stream_id})
    assert reply.status == 201, reply.body


def sse_lines(service: RunningService, last_id: str, wanted: int, timeout: float) -> list[str]:
    """`data:` lines of /v1/events until `wanted` of them came (or the timeout)."""
    request = urllib.request.Request(service.base + "/v1/events")
    if last_id:
        request.add_header("Last-Event-ID", last_id)
    lines: list[str] = []
    with urllib.request.urlopen(request, timeout=timeout) as response:
        deadline = time.monotonic() + timeout
        while len(lines) < wanted and time.monotonic() < deadline:
            line = response.readline().decode().strip()
            if line.startswith(("id:", "data:")):
                lines.append(line)
    return lines


def wait_for_sink(
    service: RunningService, name: str, delivered: int, timeout: float = 10.0
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        sinks = service.request("GET", "/v1/events/status").body["sinks"]
        sink = next(s for s in sinks if s["name"] == name)
        if sink["delivered"] >= delivered or time.monotonic() > deadline:
            assert sink["delivered"] == delivered, sink
            return dict(sink)
        time.sleep(0.05)


def metric_samples(service: RunningService) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = service.request("GET", "/metrics").body
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_events_reach_the_outbox_then_a_signed_webhook_and_the_live_feed(
    tmp_path: Path, fake_model: Path, clip: Path
) -> None:
    receiver = Receiver(secret=SECRET).start()
    outbox = tmp_path / "events.sqlite"
    config = ServiceConfig(
        analysis={"model": fake_model, "cusum_h": 4.0},
        ingest={"pull": {"allow_file_urls": True}},
        events={
            "path": outbox,
            "sinks": (f"webhook:{receiver.url};secret={SECRET};name=soc",),
        },
    )
    try:
        with running_service(config) as service:
            add_file_stream(service, clip, "cam-1")
            service.wait_for(lambda s: s["state"] == "ended", "cam-1", timeout=60)
            events = events_once_ended(outbox, {"cam-1"})
            kinds = [e.type for e in events]
            assert kinds[0] is EventType.STREAM_STARTED and kinds[-1] is EventType.STREAM_ENDED
            assert EventType.ALERT_RAISED in kinds
            alarm = next(e for e in events if e.type is EventType.ALERT_RAISED)
            assert alarm.evidence is not None and alarm.evidence["threshold"] == 4.0
            assert alarm.score is not None and alarm.score > 0.5
            assert {e.run for e in events} == {events[0].run}

            assert receiver.wait_for({e.id for e in events}, timeout=20)
            assert all(d.signature_ok for d in receiver.deliveries)
            delivered = [json.loads(d.body)["id"] for d in receiver.deliveries]
            assert delivered == [e.id for e in events]  # in order, each once

            # The receiver stores before it answers: the count follows its answer.
            soc = wait_for_sink(service, "soc", delivered=len(events))
            assert soc["dead_lettered"] == 0 and soc["failed_attempts"] == 0
            status = service.request("GET", "/v1/events/status").body
            assert status["outbox"]["ok"] and status["outbox"]["recorded"] == len(events)
            shown = service.request("GET", "/v1/config").body["events"]["sinks"]
            assert shown == ["webhook:***"]  # no secret, no URL
            samples = metric_samples(service)
            assert samples[("swapwatch_sink_delivered_total", (("sink", "soc"),))] == len(events)
            assert samples[("swapwatch_outbox_up", ())] == 1.0

            # A dashboard that reconnects from the start gets the recorded events, with ids.
            lines = sse_lines(service, "0", wanted=2 * len(events), timeout=10)
            ids = [line.removeprefix("id:").strip() for line in lines if line.startswith("id:")]
            assert ids == [str(i) for i in range(1, len(events) + 1)]
            bodies = [json.loads(line[5:]) for line in lines if line.startswith("data:")]
            assert [b["id"] for b in bodies] == [e.id for e in events]
    finally:
        receiver.stop()


def test_a_reconnecting_stream_gets_a_new_run_and_distinct_event_ids(
    tmp_path: Path, fake_model: Path, clip: Path, slow_model_close: None
) -> None:
    outbox = tmp_path / "events.sqlite"
    config = ServiceConfig(
        analysis={"model": fake_model},
        ingest={"pull": {"allow_file_urls": True}},
        events={"path": outbox},
    )
    with running_service(config) as service:
        for _ in range(2):  # the same id added twice: two runs
            add_file_stream(service, clip, "again")
            service.wait_for(lambda s: s["state"] == "ended", "again", timeout=60)
        recorded = service.request("GET", "/v1/events/status").body["outbox"]["recorded"]
    events = outbox_events(outbox)
    starts = [e for e in events if e.type is EventType.STREAM_STARTED]
    assert len(starts) == 2 and starts[0].run != starts[1].run
    assert recorded == len(events)  # every append kept: no two events shared an id


def test_an_id_waiting_for_its_ended_stream_to_close_holds_up_no_other_stream(
    tmp_path: Path, fake_model: Path, clip: Path, slow_model_close: None
) -> None:
    config = ServiceConfig(
        analysis={"model": fake_model},
        ingest={"pull": {"allow_file_urls": True}},
        events={"path": tmp_path / "events.sqlite"},
    )
    with running_service(config) as service:
        add_file_stream(service, clip, "again")
        service.wait_for(lambda s: s["state"] == "ended", "again", timeout=60)
        finished: list[str] = []

        def add_again() -> None:  # waits until the ended stream's models have closed (2 s)
            add_file_stream(service, clip, "again")
            finished.append("again")

        again = threading.Thread(target=add_again)
        again.start()
        time.sleep(0.3)
        add_file_stream(service, clip, "other")
        finished.append("other")
        again.join(timeout=30)
        assert finished == ["other", "again"]


def serve_in_subprocess(config_file: Path, log: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "swapwatch", "serve", "--config", str(config_file)],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
        )


def wait_ready(base: str, process: subprocess.Popen[bytes], timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, "the service exited"
        try:
            with urllib.request.urlopen(base + "/readyz", timeout=2) as reply:
                if reply.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.2)
    raise AssertionError("the service never became ready")


def test_service_killed_with_sigkill_mid_delivery_loses_no_event(
    tmp_path: Path, fake_model: Path, clip: Path
) -> None:
    receiver = Receiver(secret=SECRET).start()
    receiver.delay = 1.0  # slow: deliveries are in flight when the service dies
    port = free_port()
    outbox = tmp_path / "events.sqlite"
    config_file = tmp_path / "swapwatch.toml"
    config_file.write_text(
        f'http.port = {port}\nanalysis.model = "{fake_model}"\n'
        "ingest.pull.allow_file_urls = true\nanalysis.cusum_h = 4.0\n"
        f'events.path = "{outbox}"\n'
        f'events.sinks = ["webhook:{receiver.url};secret={SECRET};backoff=0.2;max_backoff=0.5"]\n'
    )
    base = f"http://127.0.0.1:{port}"
    log = tmp_path / "serve.log"
    service = serve_in_subprocess(config_file, log)
    try:
        wait_ready(base, service)
        running = RunningService(ServiceConfig(http={"port": port}), base)
        for name in ("a", "b"):
            add_file_stream(running, clip, name)
        for name in ("a", "b"):
            running.wait_for(lambda s: s["state"] == "ended", name, timeout=60)
        recorded = events_once_ended(outbox, {"a", "b"})
        assert len(recorded) >= 6  # started, raised, ended for each stream
        assert len(receiver.ids()) < len(recorded)  # still delivering
        os.kill(service.pid, signal.SIGKILL)
        assert service.wait(timeout=10) == -signal.SIGKILL
        receiver.delay = 0.0

        service = serve_in_subprocess(config_file, log)
        wait_ready(base, service)
        assert receiver.wait_for({e.id for e in recorded}, timeout=30), log.read_text()[-2000:]
        assert all(d.signature_ok for d in receiver.deliveries)
        by_id: dict[str, set[bytes]] = {}
        for delivery in receiver.deliveries:
            by_id.setdefault(delivery.event_id, set()).add(delivery.body)
        assert all(len(bodies) == 1 for bodies in by_id.values())  # a repeat is the same event
        # In order per stream, counting each event's first arrival.
        first_seen = list(dict.fromkeys(receiver.ids()))
        for stream in ("a", "b"):
            expected = [e.id for e in recorded if e.stream == stream]
            assert [i for i in first_seen if i in set(expected)] == expected
    finally:
        service.send_signal(signal.SIGTERM)
        service.wait(timeout=30)
        receiver.stop()


def test_a_corrupt_outbox_is_reported_and_analysis_goes_on(
    tmp_path: Path, fake_model: Path, clip: Path
) -> None:
    outbox = tmp_path / "events.sqlite"
    outbox.write_bytes(b"this is not a database" * 100)
    config = ServiceConfig(
        analysis={"model": fake_model, "cusum_h": 4.0},
        ingest={"pull": {"allow_file_urls": True}},
        events={"path": outbox},
    )
    with running_service(config) as service:
        ready = service.request("GET", "/readyz")
        assert ready.status == 200 and ready.body["events"] == "degraded"
        status = service.request("GET", "/v1/events/status").body["outbox"]
        assert not status["ok"] and str(outbox) in status["error"]

        add_file_stream(service, clip, "cam")
        final = service.wait_for(lambda s: s["state"] == "ended", "cam", timeout=60)
        assert final["alarms_raised"] >= 1 and final["frames_analysed"] > 10
        samples = metric_samples(service)
        assert samples[("swapwatch_outbox_up", ())] == 0.0
        assert samples[("swapwatch_events_lost_total", ())] >= 3
    assert outbox.read_bytes().startswith(b"this is not a database")  # left for inspection


def test_a_full_outbox_is_reported_and_analysis_goes_on(
    tmp_path: Path, fake_model: Path, clip: Path
) -> None:
    outbox = tmp_path / "events.sqlite"
    limit = Retention(max_bytes=64 * 1024, keep_seconds=1e9, keep_events=10**9)
    with EventLog(outbox, limit) as log:
        filler = 0
        with pytest.raises(OutboxFull):
            while filler < 100_000:
                log.append(_filler_event(filler))
                filler += 1
    config = ServiceConfig(
        analysis={"model": fake_model, "cusum_h": 4.0},
        ingest={"pull": {"allow_file_urls": True}},
        events={"path": outbox, "max_mb": 0.0625},
    )
    with running_service(config) as service:
        add_file_stream(service, clip, "cam")
        final = service.wait_for(lambda s: s["state"] == "ended", "cam", timeout=60)
        assert final["alarms_raised"] >= 1
        status = service.request("GET", "/v1/events/status").body["outbox"]
        assert not status["ok"] and "full" in status["error"].lower()
        assert status["lost"] >= 2  # the alarm and the end, at least
        assert service.request("GET", "/readyz").body["events"] == "degraded"
    # Its end was lost, so its run stays open: the next start closes it in the outbox.
    state = StateStore(state_path(outbox))
    state.open()
    try:
        assert [run.stream_id for run in state.open_runs()] == ["cam"]
    finally:
        state.close()


def _filler_event(number: int) -> Event:
    from swapwatch.events.model import derived_id, utc_now

    return Event(
        id=derived_id("filler", number),
        type=EventType.STREAM_ERROR,
        time=utc_now(),
        stream="filler",
        run="filler",
        detail={"error": "x" * 400},
    )


@pytest.mark.parametrize(
    ("sinks", "said"),
    [
        ("pager:https://example.invalid/", "unknown sink type 'pager'"),
        ("jsonl:-,jsonl:-", "sink names must be unique"),
    ],
)
def test_a_bad_sink_stops_the_service_with_one_clear_line(
    tmp_path: Path, sinks: str, said: str
) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "swapwatch", "serve", "--port", str(free_port())],
        env={**os.environ, "SWAPWATCH_EVENTS_SINKS": sinks, "XDG_STATE_HOME": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode != 0
    assert said in done.stderr and "Traceback" not in done.stderr, done.stderr


def test_a_stream_removed_through_the_api_ends_with_one_event(
    tmp_path: Path, fake_model: Path
) -> None:
    outbox = tmp_path / "events.sqlite"
    low = free_port()
    config = ServiceConfig(
        analysis={"model": fake_model},
        events={"path": outbox},
        ingest={"rtmp": {"host": "127.0.0.1", "ports": (low, low)}},
    )
    with running_service(config) as service:
        reply = service.request("POST", "/v1/streams", {"ingest": "rtmp", "id": "idle"})
        assert reply.status == 201, reply.body
        assert service.request("DELETE", "/v1/streams/idle").status in (200, 204)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            recorded = service.request("GET", "/v1/events/status").body["outbox"]["recorded"]
            if recorded:
                break
            time.sleep(0.05)
    (ended,) = outbox_events(outbox)
    assert ended.type is EventType.STREAM_ENDED and ended.stream == "idle"
    assert ended.detail == {"reason": "removed"}


def test_a_last_event_id_we_never_sent_still_gets_the_live_feed(fake_model: Path) -> None:
    with running_service(ServiceConfig(analysis={"model": fake_model})) as service:
        # "²" passes str.isdigit() but is no outbox position.
        for last_id in ("²", "9" * 5000, "-3"):
            request = urllib.request.Request(
                service.base + "/v1/events", headers={"Last-Event-ID": last_id}
            )
            with urllib.request.urlopen(request, timeout=1) as response:
                assert response.status == 200
                with pytest.raises(TimeoutError):  # open, waiting for events: not closed
                    while True:
                        assert response.readline() != b"", f"feed closed for {last_id[:12]!r}"
