"""The MQTT sink against a real Mosquitto broker (Debian's), started on a free port."""

from __future__ import annotations

import asyncio
import json
import shutil
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from receivers import free_port

from swapwatch.events import Dispatcher, Event, EventLog, EventType, RetryPolicy, Route, parse_sink
from swapwatch.events.sinks.factory import create_sink

MOSQUITTO = shutil.which("mosquitto") or (
    "/usr/sbin/mosquitto" if Path("/usr/sbin/mosquitto").exists() else None
)
pytestmark = [
    pytest.mark.network,
    pytest.mark.skipif(MOSQUITTO is None, reason="mosquitto is not installed (apt mosquitto)"),
]


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[int]:
    assert MOSQUITTO is not None
    port = free_port()
    config = tmp_path / "mosquitto.conf"
    config.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n")
    process = subprocess.Popen(
        [MOSQUITTO, "-c", str(config)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                    break
            except OSError:
                time.sleep(0.05)
        else:
            raise RuntimeError("mosquitto did not start")
        yield port
    finally:
        process.terminate()
        process.wait(timeout=10)
        assert process.stderr is not None
        process.stderr.close()


class Subscriber:
    def __init__(self, port: int, topic: str) -> None:
        self.messages: list[tuple[str, dict[str, object]]] = []
        self._subscribed = threading.Event()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2)
        self.client.on_connect = lambda c, *_: c.subscribe(topic, qos=1)
        self.client.on_subscribe = lambda *_: self._subscribed.set()
        self.client.on_message = lambda _c, _u, m: self.messages.append(
            (m.topic, json.loads(m.payload))
        )
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        assert self._subscribed.wait(10)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def test_mosquitto_gets_every_event_on_its_topic(tmp_path: Path, broker: int) -> None:
    subscriber = Subscriber(broker, "swapwatch/#")
    outbox = EventLog(tmp_path / "o.sqlite")
    kinds = [EventType.STREAM_STARTED, EventType.ALERT_RAISED, EventType.STREAM_ENDED]
    for kind in kinds:
        outbox.append(Event(str(uuid.uuid4()), kind, datetime.now(UTC), "cam/1", "r"))
    spec = parse_sink(f"mqtt:mqtt://127.0.0.1:{broker};topic=swapwatch/{{stream}}/{{type}}")
    route = Route(create_sink(spec), RetryPolicy(backoff=0.05, max_backoff=0.2))

    async def run() -> None:
        async with Dispatcher(outbox, [route]) as dispatcher:
            assert await dispatcher.wait_idle(15)
            assert dispatcher.stats[spec.name].delivered == 3

    try:
        asyncio.run(asyncio.wait_for(run(), 30))
        deadline = time.monotonic() + 5
        while len(subscriber.messages) < 3 and time.monotonic() < deadline:
            time.sleep(0.02)
    finally:
        subscriber.close()
        outbox.close()
    assert [topic for topic, _ in subscriber.messages] == [
        f"swapwatch/cam_1/{k.value}" for k in kinds
    ]
    assert [m["type"] for _, m in subscriber.messages] == [k.value for k in kinds]


def test_events_wait_while_the_broker_is_down(tmp_path: Path) -> None:
    port = free_port()  # no broker yet
    outbox = EventLog(tmp_path / "o.sqlite")
    outbox.append(Event(str(uuid.uuid4()), EventType.ALERT_RAISED, datetime.now(UTC), "s", "r"))
    spec = parse_sink(f"mqtt:127.0.0.1:{port};connect_timeout=0.3")
    route = Route(create_sink(spec), RetryPolicy(backoff=0.05, max_backoff=0.1))

    async def run() -> None:
        async with Dispatcher(outbox, [route]) as dispatcher:
            assert not await dispatcher.wait_idle(0.8)
            stats = dispatcher.stats[spec.name]
            assert stats.failed_attempts > 0 and stats.delivered == 0
            assert "not connected" in (stats.last_error or "")

    asyncio.run(asyncio.wait_for(run(), 15))
    assert outbox.sinks()[0].backlog == 1  # still there for when the broker is back
    outbox.close()
