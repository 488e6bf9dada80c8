"""Live feed for dashboards: an in-process fan-out, and its Server-Sent Events form.

The `live` sink publishes every event to a LiveFeed; each subscriber (one SSE connection) has a
bounded queue and, when it reads too slowly, loses its oldest events (counted), never the
service's memory. `sse_response` is the aiohttp handler body the HTTP service mounts; a client
that reconnects with `Last-Event-ID` first gets what it missed from the outbox. Closing the feed
ends every subscriber's stream once it has what was published before: a stopping service does
not wait for its idle readers' next heartbeat.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import Iterator
from dataclasses import dataclass, field

from aiohttp import web

from swapwatch.events.errors import OutboxError
from swapwatch.events.outbox import EventLog, StoredEvent
from swapwatch.events.sinks.base import SinkSpec

DEFAULT_QUEUE = 256
# A Last-Event-ID we sent: an outbox position (ASCII digits; isdigit() also takes '²').
SEQUENCE = re.compile(r"[0-9]{1,18}")
HEARTBEAT_S = 15.0


class FeedClosed(Exception):
    """The feed was closed (the service is stopping): a reader has had everything."""


@dataclass(eq=False, slots=True)
class Subscription:
    """One reader of the feed."""

    queue: asyncio.Queue[StoredEvent | None]  # None: the feed has closed
    dropped: int = 0

    def put(self, event: StoredEvent | None) -> None:
        while True:
            try:
                self.queue.put_nowait(event)
                return
            except asyncio.QueueFull:
                self.queue.get_nowait()  # drop oldest: a dashboard wants the newest
                self.dropped += 1

    async def get(self) -> StoredEvent:
        """The next event; FeedClosed once the feed is closed and the events before are read."""
        event = await self.queue.get()
        if event is None:
            raise FeedClosed
        return event


@dataclass(slots=True)
class LiveFeed:
    """Fan-out of events to subscribers; call from the event loop's thread."""

    queue_size: int = DEFAULT_QUEUE
    subscribers: set[Subscription] = field(default_factory=set)
    published: int = 0
    closed: bool = False

    def publish(self, event: StoredEvent) -> None:
        self.published += 1
        for subscription in self.subscribers:
            subscription.put(event)

    def close(self) -> None:
        """End every subscription after what it holds, and those made from now on at once."""
        self.closed = True
        for subscription in self.subscribers:
            subscription.put(None)

    @contextlib.contextmanager
    def subscribe(self) -> Iterator[Subscription]:
        subscription = Subscription(asyncio.Queue(self.queue_size))
        if self.closed:
            subscription.put(None)
        self.subscribers.add(subscription)
        try:
            yield subscription
        finally:
            self.subscribers.discard(subscription)


class LiveSink:
    """Publishes to a LiveFeed; never fails (a dashboard that is not there misses nothing)."""

    def __init__(self, name: str = "live", feed: LiveFeed | None = None) -> None:
        self.name = name
        self.feed = feed or LiveFeed()

    async def start(self) -> None:
        pass

    async def send(self, event: StoredEvent) -> None:
        self.feed.publish(event)

    async def aclose(self) -> None:
        pass


def create(spec: SinkSpec) -> LiveSink:
    queue = spec.options.get("queue", DEFAULT_QUEUE)
    return LiveSink(spec.name, LiveFeed(int(queue)))


def sse_message(event: StoredEvent) -> bytes:
    """One SSE message: the outbox sequence number as id, the event type as event name.

    An event the outbox could not record (seq 0) goes out without an id.
    """
    head = f"id: {event.seq}\n" if event.seq > 0 else ""
    return f"{head}event: {event.type}\ndata: {event.body}\n\n".encode()


async def sse_response(
    request: web.Request,
    feed: LiveFeed,
    outbox: EventLog | None = None,
    heartbeat: float = HEARTBEAT_S,
    recent: int = 0,
) -> web.StreamResponse:
    """Serve the feed as `text/event-stream` until the client goes away.

    With an outbox, a client reconnecting with `Last-Event-ID: SEQ` first gets the events after
    SEQ that it missed, then the live ones (each event once, in order); a client without one
    first gets the `recent` latest recorded events (a dashboard just opened shows past alerts).
    """
    last = request.headers.get("Last-Event-ID", "")
    response = web.StreamResponse(
        headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
    )
    await response.prepare(request)
    # Subscribed before the outbox is read, so nothing falls between. The feed ends when the
    # client leaves or the service closes the feed (or the outbox) at shutdown.
    ended = (ConnectionResetError, OutboxError, FeedClosed)
    with feed.subscribe() as subscription, contextlib.suppress(*ended):
        await _stream(response, subscription, outbox, last, heartbeat, recent)
    return response


async def _stream(
    response: web.StreamResponse,
    subscription: Subscription,
    outbox: EventLog | None,
    last: str,
    heartbeat: float,
    recent: int,
) -> None:
    high = 0  # events up to here were already sent from the outbox
    resuming = SEQUENCE.fullmatch(last) is not None
    if outbox is not None and (resuming or recent > 0):
        newest = await asyncio.to_thread(outbox.last_seq)
        high = _resume_after(int(last), newest) if resuming else max(0, newest - recent)
        while missed := await asyncio.to_thread(outbox.read_after, high, 256):
            for event in missed:
                await response.write(sse_message(event))
                high = event.seq
    while True:
        try:
            # Not asyncio.wait_for: in 3.11 it can swallow the cancel that ends this handler.
            async with asyncio.timeout(heartbeat):
                event = await subscription.get()
        except TimeoutError:
            await response.write(b": keep-alive\n\n")  # proxies close silent connections
            continue
        if event.seq <= 0:  # not in the outbox: never replayed, so never a repeat
            await response.write(sse_message(event))
        elif event.seq > high:
            high = event.seq
            await response.write(sse_message(event))


def _resume_after(last: int, newest: int) -> int:
    """Where a client resuming from `last` catches up from: an id past the end is from an
    outbox since replaced, so from its start."""
    return last if last <= newest else 0
