"""The NATS sink against a real NATS server with JetStream (Debian's nats-server), started on a
free port: delivery, duplicates dropped, and outages that do not count against the events."""

from __future__ import annotations

import asyncio
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest
from receivers import free_port

from swapwatch.events import Dispatcher, Event, EventLog, EventType, RetryPolicy, Route, parse_sink
from swapwatch.events.delivery import SinkStats
from swapwatch.events.sinks.factory import create_sink

nats = pytest.importorskip("nats")

NATS_SERVER = shutil.which("nats-server") or (
    "/usr/sbin/nats-server" if Path("/usr/sbin/nats-server").exists() else None
)
pytestmark = [
    pytest.mark.network,
    pytest.mark.skipif(
        NATS_SERVER is None, reason="nats-server is not installed (apt nats-server)"
    ),
]
STREAM = "SWAPWATCH"
# A policy that would dead-letter an event at its second counted failure.
IMPATIENT = RetryPolicy(backoff=0.05, max_backoff=0.2, max_attempts=2)


@dataclass
class Server:
    """A nats-server with JetStream on one port and one store, stopped and started again."""

    port: int
    store: Path
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def start(self) -> None:
        assert NATS_SERVER is not None and self.process is None
        self.process = subprocess.Popen(
            [NATS_SERVER, "-a", "127.0.0.1", "-p", str(self.port), "-js", "-sd", str(self.store)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("nats-server did not start")

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=10)
            self.process = None


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    running = Server(free_port(), tmp_path / "jetstream")
    running.start()
    try:
        yield running
    finally:
        running.stop()


async def add_stream(url: str) -> None:
    client = await nats.connect(url)
    try:
        await client.jetstream().add_stream(name=STREAM, subjects=["swapwatch.events.>"])
    finally:
        await client.close()


async def stored(url: str) -> list[tuple[str, str]]:
    """(subject, Nats-Msg-Id) of every message in the stream, in order."""
    client = await nats.connect(url)
    try:
        js = client.jetstream()
        count = (await js.stream_info(STREAM)).state.messages
        found = []
        for seq in range(1, count + 1):
            message = await js.get_msg(STREAM, seq)
            found.append((message.subject, (message.headers or {}).get("Nats-Msg-Id", "")))
        return found
    finally:
        await client.close()


def event(kind: EventType = EventType.ALERT_RAISED) -> Event:
    return Event(str(uuid.uuid4()), kind, datetime.now(UTC), "cam", "run")


async def held_back(dispatcher: Dispatcher, name: str) -> SinkStats:
    """The sink's counters once it has failed more tries than IMPATIENT allows, checked to have
    dead-lettered nothing."""
    deadline = time.monotonic() + 10
    while dispatcher.stats[name].failed_attempts < 2 * IMPATIENT.max_attempts:
        assert time.monotonic() < deadline, dispatcher.stats[name]
        await asyncio.sleep(0.05)
    stats = dispatcher.stats[name]
    assert stats.dead_lettered == 0, stats
    return stats


def nats_route(server: Server, retry: RetryPolicy = IMPATIENT) -> Route:
    return Route(create_sink(parse_sink(f"nats:{server.url};timeout=0.5")), retry)


def test_jetstream_gets_every_event_once(tmp_path: Path, server: Server) -> None:
    asyncio.run(add_stream(server.url))
    outbox = EventLog(tmp_path / "o.sqlite")
    kinds = [EventType.STREAM_STARTED, EventType.ALERT_RAISED, EventType.STREAM_ENDED]
    for kind in kinds:
        outbox.append(event(kind))
    route = nats_route(server)

    async def run() -> None:
        async with Dispatcher(outbox, [route]) as dispatcher:
            assert await dispatcher.wait_idle(15)
            assert dispatcher.stats[route.sink.name].delivered == 3
        # Delivered again (at-least-once: a crash before the cursor moved): JetStream drops it.
        first = outbox.read_after(0, 1)[0]
        await route.sink.send(first)
        await route.sink.aclose()

    try:
        asyncio.run(asyncio.wait_for(run(), 30))
        messages = asyncio.run(stored(server.url))
    finally:
        outbox.close()
    assert [subject for subject, _ in messages] == [f"swapwatch.events.{k.value}" for k in kinds]
    assert len({msg_id for _, msg_id in messages}) == 3


def test_an_outage_of_the_server_holds_the_events_back_and_loses_none(
    tmp_path: Path, server: Server
) -> None:
    asyncio.run(add_stream(server.url))
    outbox = EventLog(tmp_path / "o.sqlite")
    outbox.append(event())
    route = nats_route(server)
    name = route.sink.name

    async def run() -> None:
        async with Dispatcher(outbox, [route]) as dispatcher:
            assert await dispatcher.wait_idle(15)
            await asyncio.to_thread(server.stop)
            outbox.append(event())
            outbox.append(event())
            # More tries while the server is down than max_attempts allows: none counted.
            stats = await held_back(dispatcher, name)
            await asyncio.to_thread(server.start)
            assert await dispatcher.wait_idle(30)
            assert (stats.delivered, stats.dead_lettered) == (3, 0)

    try:
        asyncio.run(asyncio.wait_for(run(), 60))
        messages = asyncio.run(stored(server.url))
        assert outbox.dead_letters() == []
    finally:
        outbox.close()
    assert len(messages) == 3


def test_events_wait_for_a_stream_to_take_their_subject(tmp_path: Path, server: Server) -> None:
    """No JetStream stream for the subject: every event would get the same answer, so none is
    dead-lettered for it; once the stream exists they are delivered."""
    outbox = EventLog(tmp_path / "o.sqlite")
    outbox.append(event())
    route = nats_route(server)
    name = route.sink.name

    async def run() -> None:
        async with Dispatcher(outbox, [route]) as dispatcher:
            stats = await held_back(dispatcher, name)
            assert "no JetStream stream takes subject" in (stats.last_error or "")
            await add_stream(server.url)
            assert await dispatcher.wait_idle(15)
            assert stats.delivered == 1

    try:
        asyncio.run(asyncio.wait_for(run(), 40))
        assert outbox.dead_letters() == []
    finally:
        outbox.close()
