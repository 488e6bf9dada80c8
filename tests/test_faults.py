"""Faults, each against a real service: a source killed or frozen, a sink down for longer than
its retry budget, the disk full under the outbox, the outbox file damaged, SIGKILL while
delivering and while a publisher pushes. Each test shows that nothing committed is lost and that
the fault is visible in the API, the metrics or the log."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from media import Placement, write_video
from prometheus_client.parser import text_string_to_metric_families
from receivers import Receiver
from service import RunningService, running_service

from swapwatch.events import Event, EventLog
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
        model=fake_model,
        allow_file_urls=True,
        cusum_h=4.0,
        events_path=outbox,
        sinks=(f"webhook:{receiver.url};name=hook;backoff=0.02;max_backoff=0.05;max_attempts=5",),
    )
    try:
        with running_service(config) as service:
            for stream in ("a", "b"):
                body = {"url": clip.as_uri(), "id": stream}
                assert service.request("POST", "/v1/streams", body).status == 201
            for stream in ("a", "b"):
                service.wait_for(lambda s: s["state"] == "ended", stream, timeout=90)
            recorded = outbox_events(outbox)
            assert len(recorded) >= 6  # started, raised, ended of each
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
