"""Delivery from the outbox to real sinks on 127.0.0.1: retries, order, dead letters, isolation."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import sqlite3
import time
import uuid
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from receivers import Receiver

from swapwatch.events import (
    Dispatcher,
    Event,
    EventLog,
    EventType,
    RetryPolicy,
    Route,
    StoredEvent,
    delivery,
    parse_sink,
)
from swapwatch.events.sinks.factory import create_routes, create_sink
from swapwatch.events.sinks.jsonl import JsonlOptions, JsonlSink
from swapwatch.events.sinks.live import LiveSink, sse_response

SECRET = "whsec-delivery"
FAST_RETRY = RetryPolicy(backoff=0.05, max_backoff=0.2, max_attempts=1000, send_timeout=5.0)


def event(stream: str, n: int) -> Event:
    return Event(str(uuid.uuid4()), EventType.ALERT_RAISED, datetime.now(UTC), stream, "r", n)


def webhook(receiver: Receiver, timeout: float = 5.0) -> Route:
    spec = parse_sink(f"webhook:{receiver.url};secret={SECRET};timeout={timeout}")
    return Route(create_sink(spec), FAST_RETRY)


def test_webhook_down_then_slow_then_up_gets_every_event_signed(tmp_path: Path) -> None:
    receiver = Receiver(SECRET)  # down: nothing listens on its port yet
    outbox = EventLog(tmp_path / "o.sqlite")
    appended = [outbox.append(event(f"s{i % 2}", i)) for i in range(12)]
    by_seq = {e.seq: e for e in outbox.read_after(0)}

    async def run() -> bool:
        route = webhook(receiver, timeout=0.4)
        async with Dispatcher(outbox, [route]) as dispatcher:
            await asyncio.sleep(0.5)
            assert dispatcher.stats[route.sink.name].failed_attempts > 0
            receiver.delay = 0.6  # slow: past the sender's timeout, so it sends again
            receiver.start()
            await asyncio.sleep(1.5)
            receiver.delay = 0.0  # up
            return await dispatcher.wait_idle(timeout=20)

    try:
        assert asyncio.run(asyncio.wait_for(run(), 30))
    finally:
        receiver.stop()
        outbox.close()
    wanted = [by_seq[s].id for s in appended]
    got = receiver.ids()
    assert set(got) == set(wanted)
    assert all(d.signature_ok for d in receiver.deliveries)
    repeats = [i for i, n in Counter(got).items() if n > 1]
    assert repeats, "the slow phase should have made the sender try again"
    bodies: dict[str, set[bytes]] = {}
    for d in receiver.deliveries:
        bodies.setdefault(d.event_id, set()).add(d.body)
    assert all(len(b) == 1 for b in bodies.values())  # a repeat is the same event, byte for byte
    for stream in ("s0", "s1"):
        first_seen = list(dict.fromkeys(i for i in got if by_id(by_seq, i).stream == stream))
        assert first_seen == [by_seq[s].id for s in appended if by_seq[s].stream == stream]


def by_id(by_seq: dict[int, StoredEvent], event_id: str) -> StoredEvent:
    return next(e for e in by_seq.values() if e.id == event_id)


def test_refused_event_is_dead_lettered_then_replayed(tmp_path: Path) -> None:
    receiver = Receiver(SECRET).start()
    receiver.status = 400
    outbox = EventLog(tmp_path / "o.sqlite")
    first = outbox.append(event("s", 1))

    async def run() -> None:
        async with Dispatcher(outbox, [webhook(receiver)], poll_interval=0.05) as dispatcher:
            assert await dispatcher.wait_idle(10)
            [dead] = outbox.dead_letters()
            assert (dead.seq, dead.attempts) == (first, 1)
            assert "HTTP 400" in dead.error
            receiver.status = 200
            second = outbox.append(event("s", 2))
            assert outbox.replay_dead() == 1
            assert await dispatcher.wait_idle(10)
            ids = {e.seq: e.id for e in outbox.read_after(0)}
            assert receiver.wait_for({ids[first], ids[second]}, 5)

    try:
        asyncio.run(asyncio.wait_for(run(), 30))
        assert outbox.dead_letters() == []
    finally:
        receiver.stop()
        outbox.close()


@pytest.mark.parametrize("refusal", ["redirect", 401, 404])
def test_a_webhook_whose_url_or_credentials_are_wrong_keeps_its_events_until_mended(
    tmp_path: Path, refusal: str | int
) -> None:
    # Every event would get the same answer: none is dead-lettered for it, and a redirect is
    # not followed (a redirected POST arrives as a GET without its body, which looked
    # delivered). Mended, the sink delivers them all, in order.
    receiver = Receiver(SECRET).start()
    if refusal == "redirect":
        receiver.redirect = "/moved"
    else:
        receiver.status = int(refusal)
    few_tries = RetryPolicy(backoff=0.05, max_backoff=0.1, max_attempts=2, send_timeout=5.0)
    route = Route(create_sink(parse_sink(f"webhook:{receiver.url};secret={SECRET}")), few_tries)
    outbox = EventLog(tmp_path / "o.sqlite")
    appended = [outbox.append(event("s", n)) for n in range(3)]

    async def run() -> None:
        async with Dispatcher(outbox, [route], poll_interval=0.05) as dispatcher:
            stats = dispatcher.stats[route.sink.name]
            while stats.failed_attempts < 5:  # well past max_attempts
                await asyncio.sleep(0.02)
            assert stats.delivered == 0 and stats.dead_lettered == 0
            assert "HTTP" in (stats.last_error or "")
            receiver.redirect, receiver.status = None, 200
            assert await dispatcher.wait_idle(10)

    try:
        asyncio.run(asyncio.wait_for(run(), 30))
        ids = {e.seq: e.id for e in outbox.read_after(0)}
        assert receiver.ids() == [ids[seq] for seq in appended]
        assert all(d.signature_ok for d in receiver.deliveries)
        assert outbox.dead_letters() == []
    finally:
        receiver.stop()
        outbox.close()


def test_a_webhook_named_by_its_url_shows_no_path_and_keeps_its_former_cursor(
    tmp_path: Path,
) -> None:
    # A webhook's path is often its secret; its name (in logs, /metrics, the status) shows a
    # digest of it instead. The name keys its cursor: the cursor kept under the name earlier
    # releases gave it is taken over, so nothing already delivered is sent again.
    receiver = Receiver(SECRET).start()
    outbox = EventLog(tmp_path / "o.sqlite")
    seqs = [outbox.append(event("s", n)) for n in range(4)]
    former = f"webhook:{receiver.url}"  # what releases before this one named it
    outbox.cursor(former)
    outbox.settle(former, seqs[1])  # the first two were delivered then
    (route,) = create_routes([parse_sink(f"webhook:{receiver.url};secret={SECRET}")])
    assert "/hook" not in route.sink.name and route.sink.name.startswith("webhook:http://")

    async def run() -> None:
        async with Dispatcher(outbox, [route], poll_interval=0.05) as dispatcher:
            assert await dispatcher.wait_idle(10)

    try:
        asyncio.run(asyncio.wait_for(run(), 30))
        ids = {e.seq: e.id for e in outbox.read_after(0)}
        assert receiver.ids() == [ids[seqs[2]], ids[seqs[3]]]
        assert [s.name for s in outbox.sinks()] == [route.sink.name]
    finally:
        receiver.stop()
        outbox.close()


def test_a_replay_of_old_events_is_retried_like_a_new_one(tmp_path: Path) -> None:
    # Replayed by hand two days after its append, past the 24 h max_age: one 503 must not
    # dead-letter it again at once.
    receiver = Receiver(SECRET).start()
    outbox = EventLog(tmp_path / "o.sqlite")
    seq = outbox.append(event("s", 1))
    with contextlib.closing(sqlite3.connect(tmp_path / "o.sqlite")) as conn, conn:
        conn.execute("UPDATE events SET created = created - 2 * 86400")
    route = webhook(receiver)
    outbox.cursor(route.sink.name)
    outbox.settle(route.sink.name, seq)  # delivered then
    assert outbox.replay_since(time.time() - 3 * 86_400) == 1
    receiver.status = 503

    async def run() -> None:
        async with Dispatcher(outbox, [route], poll_interval=0.05) as dispatcher:
            while not dispatcher.stats[route.sink.name].failed_attempts:
                await asyncio.sleep(0.01)
            receiver.status = 200
            assert await dispatcher.wait_idle(10)

    try:
        asyncio.run(asyncio.wait_for(run(), 30))
        assert outbox.dead_letters() == []
        assert receiver.ids() == [e.id for e in outbox.read_after(0)]
    finally:
        receiver.stop()
        outbox.close()


class BrokenSink:
    """A plugin with a bug: its send raises something that is not a SinkError."""

    name = "broken"

    async def start(self) -> None:
        pass

    async def send(self, event: StoredEvent) -> None:
        raise RuntimeError("bug in a plugin")

    async def aclose(self) -> None:
        pass


def test_a_buggy_sink_stops_alone_and_jsonl_gets_everything(tmp_path: Path) -> None:
    outbox = EventLog(tmp_path / "o.sqlite")
    out = tmp_path / "events.jsonl"
    jsonl = JsonlSink("file", str(out), JsonlOptions())
    ids = [outbox.append(event("s", i)) for i in range(5)]

    async def run() -> Dispatcher:
        dispatcher = Dispatcher(outbox, [Route(BrokenSink()), Route(jsonl)])
        async with dispatcher:
            assert await dispatcher.wait_idle(10)
        return dispatcher

    dispatcher = asyncio.run(asyncio.wait_for(run(), 20))
    assert dispatcher.stats["broken"].crashed == "RuntimeError: bug in a plugin"
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert [line["track"] for line in lines] == list(range(5))
    states = {s.name: s.cursor for s in outbox.sinks()}
    assert states == {"broken": 0, "file": ids[-1]}  # the broken sink's events wait for a fix
    outbox.close()


class SinkThatNeverCloses:
    """A plugin whose close waits on a peer for good, as a producer flushing to a vanished
    broker would."""

    name = "hangs"

    async def start(self) -> None:
        pass

    async def send(self, event: StoredEvent) -> None:
        pass

    async def aclose(self) -> None:
        await asyncio.Event().wait()


class SinkWithABuggyClose(SinkThatNeverCloses):
    name = "buggy-close"

    async def aclose(self) -> None:
        raise RuntimeError("bug in a plugin's close")


def test_a_sink_that_never_closes_or_fails_to_close_leaves_the_others_closed_and_unlocked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(delivery, "SINK_CLOSE_TIMEOUT_S", 0.3)
    outbox = EventLog(tmp_path / "o.sqlite")
    out = tmp_path / "events.jsonl"
    for i in range(3):
        outbox.append(event("s", i))

    def routes() -> list[Route]:
        jsonl = JsonlSink("file", str(out), JsonlOptions())
        return [Route(SinkThatNeverCloses()), Route(SinkWithABuggyClose()), Route(jsonl)]

    async def deliver_then_close() -> float:
        dispatcher = Dispatcher(outbox, routes())
        await dispatcher.start()
        assert await dispatcher.wait_idle(10)
        started = time.monotonic()
        await dispatcher.aclose()
        return time.monotonic() - started

    with caplog.at_level(logging.WARNING, logger=delivery.__name__):
        seconds = asyncio.run(asyncio.wait_for(deliver_then_close(), 20))
    assert seconds < 2.0  # not for ever
    messages = [r.getMessage() for r in caplog.records]
    assert "sink hangs did not close within 0.3s; left as it is" in messages
    assert "sink buggy-close failed to close" in messages
    assert len(out.read_text().splitlines()) == 3

    async def next_delivery() -> None:
        async with Dispatcher(outbox, routes()) as dispatcher:  # refused were a lock still held
            assert await dispatcher.wait_idle(10)

    asyncio.run(asyncio.wait_for(next_delivery(), 20))
    outbox.close()


def test_events_appended_by_another_process_are_noticed(tmp_path: Path) -> None:
    path = tmp_path / "o.sqlite"
    reader = EventLog(path)
    writer = EventLog(path)  # another connection, as another process would have
    out = tmp_path / "e.jsonl"

    async def run() -> None:
        routes = [Route(JsonlSink("f", str(out), JsonlOptions()))]
        async with Dispatcher(reader, routes, poll_interval=0.05) as dispatcher:
            await asyncio.sleep(0.1)
            await asyncio.to_thread(writer.append, event("s", 7))
            for _ in range(100):
                if dispatcher.stats["f"].delivered:
                    return
                await asyncio.sleep(0.02)
            raise AssertionError("not delivered")

    asyncio.run(asyncio.wait_for(run(), 10))
    assert json.loads(out.read_text())["track"] == 7
    reader.close()
    writer.close()


async def read_sse(response: aiohttp.ClientResponse, count: int) -> list[dict[str, str]]:
    messages: list[dict[str, str]] = []
    current: dict[str, str] = {}
    while len(messages) < count:
        line = (await response.content.readline()).decode().rstrip("\n")
        if not line:
            if current:
                messages.append(current)
            current = {}
        elif not line.startswith(":"):
            key, _, value = line.partition(": ")
            current[key] = value
    return messages


def test_live_feed_over_sse_with_catch_up_after_a_reconnect(tmp_path: Path) -> None:
    outbox = EventLog(tmp_path / "o.sqlite")
    live = LiveSink()

    async def handler(request: web.Request) -> web.StreamResponse:
        return await sse_response(request, live.feed, outbox, heartbeat=0.2)

    async def run() -> None:
        app = web.Application()
        app.router.add_get("/v1/events", handler)
        runner = web.AppRunner(app, shutdown_timeout=0.5)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = runner.addresses[0][1]
        url = f"http://127.0.0.1:{port}/v1/events"
        try:
            async with (
                Dispatcher(outbox, [Route(live)]) as dispatcher,
                aiohttp.ClientSession() as client,
            ):
                async with client.get(url) as response:
                    assert response.headers["Content-Type"] == "text/event-stream"
                    while not live.feed.subscribers:
                        await asyncio.sleep(0.01)
                    outbox.append(event("s", 1))
                    [first] = await read_sse(response, 1)
                assert first["event"] == "alert.raised"
                assert json.loads(first["data"])["track"] == 1
                # Missed while disconnected: sent from the outbox after Last-Event-ID.
                outbox.append(event("s", 2))
                outbox.append(event("s", 3))
                assert await dispatcher.wait_idle(5)
                headers = {"Last-Event-ID": first["id"]}
                async with client.get(url, headers=headers) as response:
                    missed = await read_sse(response, 2)
                assert [json.loads(m["data"])["track"] for m in missed] == [2, 3]
        finally:
            await runner.cleanup()

    asyncio.run(asyncio.wait_for(run(), 20))
    outbox.close()


@pytest.mark.parametrize("kind", ["kafka", "nats"])
def test_broker_sinks_behind_extras_say_how_to_install_them(
    kind: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from swapwatch.events.errors import SinkConfigError

    module = {"kafka": "aiokafka", "nats": "nats"}[kind]
    monkeypatch.setitem(__import__("sys").modules, module, None)  # as if not installed
    with pytest.raises(SinkConfigError, match=rf"pip install 'swapwatch\[{kind}\]'"):
        create_sink(parse_sink(f"{kind}:127.0.0.1:1"))


@pytest.mark.parametrize("spins", [0, 1, 2])
def test_closing_without_drain_time_right_after_an_append_stops(tmp_path: Path, spins: int) -> None:
    """The append wakes the idle sink in the same loop turn as the close cancels it: the cancel
    must not be lost (asyncio.wait_for in 3.11 swallowed it, and the service hung at shutdown
    when its streams had used the whole drain time)."""
    outbox = EventLog(tmp_path / "o.sqlite")
    jsonl = JsonlSink("file", str(tmp_path / "events.jsonl"), JsonlOptions())

    async def run() -> None:
        dispatcher = Dispatcher(outbox, [Route(jsonl)])
        await dispatcher.start()
        assert await dispatcher.wait_idle(10)
        outbox.append(event("s", 1))
        for _ in range(spins):
            await asyncio.sleep(0)
        await asyncio.wait_for(dispatcher.aclose(0), 5)

    try:
        asyncio.run(run())
    finally:
        outbox.close()
