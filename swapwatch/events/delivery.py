"""The dispatcher: one task per sink reads the outbox from that sink's cursor and delivers.

Each sink sees events in outbox order (so in order per stream), one at a time: an event is tried
with exponential backoff until it is delivered, refused for good, too old or out of attempts;
then its fate is committed and the cursor moves on. Tries that cannot reach the receiver at all
are not counted against the event: a sink that is down holds its events back (up to `max_age`)
instead of burning through them as dead letters. An event whose fate was not committed (the
process was killed mid-send) is sent again on restart: delivery is at least once, and the event
id is the receivers' idempotency key. A failing sink only ever holds back itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal, ParamSpec, TypeVar

from swapwatch.events.errors import OutboxError, SinkError, SinkRejected, SinkUnavailable
from swapwatch.events.outbox import EventLog, StoredEvent
from swapwatch.events.sink_lock import SinkBusy, SinkLock
from swapwatch.events.sinks.base import RetryPolicy, Sink

log = logging.getLogger(__name__)

P = ParamSpec("P")
T = TypeVar("T")
LATENCY_SAMPLES = 10_000
BUSY_RETRY_S = 5.0  # how often a sink another process delivers is tried again
# A sink's close may wait on its peer (a Kafka producer flushing to a broker that went away) or
# on a plugin's bug: a stop waits this long for each, then leaves it.
SINK_CLOSE_TIMEOUT_S = 5.0


@dataclass(frozen=True, slots=True)
class Route:
    """A sink and how to deliver to it."""

    sink: Sink
    retry: RetryPolicy = field(default_factory=lambda: RetryPolicy())
    start: Literal["oldest", "latest"] = "oldest"  # where a sink new to this outbox begins
    formerly: str | None = None  # a former name of the sink: a cursor under it is taken over


@dataclass(slots=True)
class SinkStats:
    """Counters of one sink since the dispatcher started."""

    delivered: int = 0
    failed_attempts: int = 0
    dead_lettered: int = 0
    cursor: int = 0
    backlog: int = 0  # events appended after the cursor, as far as this process knows
    running: bool = False
    idle: bool = False  # its last look at the outbox found nothing to send
    crashed: str | None = None  # the bug that stopped this sink, if one did
    last_error: str | None = None
    # seconds from append to delivery of recent events
    latencies: deque[float] = field(default_factory=lambda: deque(maxlen=LATENCY_SAMPLES))


class Dispatcher:
    """Delivers the outbox to its sinks. Use `async with Dispatcher(...)`, or start()/aclose().

    New events are noticed at once when appended through the same EventLog object, and within
    `poll_interval` seconds when another process appends them.
    """

    def __init__(
        self,
        outbox: EventLog,
        routes: Sequence[Route],
        poll_interval: float = 0.5,
        prune_interval: float = 60.0,
        batch_size: int = 256,
        rng: random.Random | None = None,
        wait_for_busy_sinks: bool = False,
    ) -> None:
        """`wait_for_busy_sinks`: a sink another process delivers (`SinkLock`) waits until it
        is free, as the service does; else `start` raises SinkBusy, as a command should."""
        names = [r.sink.name for r in routes]
        if len(set(names)) != len(names):
            raise ValueError(f"sink names must be unique: {names}")
        self.outbox = outbox
        self.routes = list(routes)
        self.poll_interval = poll_interval
        self.prune_interval = prune_interval
        self.batch_size = batch_size
        self.stats = {name: SinkStats() for name in names}
        self._rng = rng or random.Random()
        self._tasks: list[asyncio.Task[None]] = []
        self._news: dict[str, asyncio.Event] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._last_seq = 0  # the newest event known to be in the outbox
        self._locks: list[SinkLock] = []
        self._wait_for_busy = wait_for_busy_sinks

    async def __aenter__(self) -> Dispatcher:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def start(self) -> None:
        """SinkBusy when another process delivers one of these sinks of this outbox."""
        self._loop = asyncio.get_running_loop()
        if not self._wait_for_busy:
            try:
                for route in self.routes:
                    self._lock(route)
            except BaseException:
                self._release_locks()
                raise
        self._last_seq = await self._db(self.outbox.last_seq)
        self.outbox.add_listener(self._on_append)
        for route in self.routes:
            self._news[route.sink.name] = asyncio.Event()
            task = asyncio.create_task(self._run(route), name=f"sink {route.sink.name}")
            task.add_done_callback(self._on_task_done)
            self._tasks.append(task)
        self._tasks.append(asyncio.create_task(self._prune(), name="outbox retention"))

    async def aclose(self, drain_timeout: float = 0.0) -> None:
        """Stop delivering; first wait up to `drain_timeout` s for the sinks to catch up.

        An event in flight when this returns was not settled: it is sent again next time.
        """
        if drain_timeout > 0:
            await self.wait_idle(drain_timeout)
        self.outbox.remove_listener(self._on_append)
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
        try:
            for route in self.routes:
                await _close_sink(route.sink)
        finally:
            self._release_locks()

    def _lock(self, route: Route) -> None:
        lock = SinkLock(self.outbox.path, route.sink.name)
        lock.acquire()
        self._locks.append(lock)

    async def _wait_for_lock(self, route: Route) -> None:
        warned = False
        while True:
            try:
                self._lock(route)
                if warned:
                    log.info("sink %s is free again: delivering", route.sink.name)
                return
            except SinkBusy as exc:
                self.stats[route.sink.name].last_error = str(exc)
                if not warned:
                    log.warning("%s; its events wait in the outbox", exc)
                    warned = True
            except OutboxError as exc:
                self.stats[route.sink.name].last_error = str(exc)
                log.error("%s", exc)
            await asyncio.sleep(BUSY_RETRY_S)

    def _release_locks(self) -> None:
        for lock in self._locks:
            lock.release()
        self._locks.clear()

    async def wait_idle(self, timeout: float | None = None) -> bool:
        """Wait until every running sink has settled every event appended so far (and its
        replays); False when `timeout` seconds passed first."""
        target = await asyncio.to_thread(self.outbox.last_seq)
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            if await self._settled(target):
                return True
            if deadline is not None and time.monotonic() >= deadline:
                return False
            await asyncio.sleep(0.02)

    # -- internals -----------------------------------------------------------------------------

    async def _settled(self, target: int) -> bool:
        for name, s in self.stats.items():
            if s.crashed is not None:
                continue
            if not (s.idle and s.cursor >= target):
                return False
            replays: list[StoredEvent] = await self._db(self.outbox.requeued, name, 1)
            if replays:
                return False
        return True

    def _on_append(self, seq: int) -> None:
        # Called in whichever thread appended.
        if self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._wake, seq)

    def _wake(self, seq: int) -> None:
        self._seen(seq)
        for event in self._news.values():
            event.set()

    def _seen(self, seq: int) -> None:
        """Note that the outbox holds events up to `seq`; every sink's backlog follows."""
        self._last_seq = max(self._last_seq, seq)
        for stats in self.stats.values():
            stats.backlog = max(0, self._last_seq - stats.cursor)

    def _on_task_done(self, task: asyncio.Task[None]) -> None:
        if task.cancelled() or task.exception() is None:
            return
        name = task.get_name().removeprefix("sink ")
        exc = task.exception()
        log.error("sink %s stopped by a bug; its events wait in the outbox", name, exc_info=exc)
        if name in self.stats:
            self.stats[name].crashed = f"{type(exc).__name__}: {exc}"
            self.stats[name].running = False

    async def _db(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        return await asyncio.to_thread(fn, *args, **kwargs)

    async def _run(self, route: Route) -> None:
        name = route.sink.name
        stats = self.stats[name]
        news = self._news[name]
        if self._wait_for_busy:
            await self._wait_for_lock(route)
        await self._start_sink(route)
        while True:
            try:
                stats.cursor = await self._db(self.outbox.cursor, name, route.start, route.formerly)
                self._seen(stats.cursor)
                break
            except OutboxError as exc:
                log.error("sink %s cannot read its cursor: %s", name, exc)
                await asyncio.sleep(self.poll_interval)
        stats.running = True
        while True:
            news.clear()
            try:
                replays = await self._db(self.outbox.requeued, name, self.batch_size)
                stats.idle = False if replays else stats.idle
                for event in replays:
                    fate = await self._deliver(route, event, replay=True)
                    await self._settle(name, self.outbox.settle_requeued, event.seq, fate)
                batch = await self._db(self.outbox.read_after, stats.cursor, self.batch_size)
                stats.idle = not (batch or replays)
                if batch:
                    self._seen(batch[-1].seq)
                for event in batch:
                    fate = await self._deliver(route, event)
                    await self._settle(name, self.outbox.settle, event.seq, fate)
                    stats.cursor = event.seq
                    self._seen(event.seq)
            except OutboxError as exc:
                # Unsettled events stay where they were and are tried again.
                log.error("sink %s: outbox error: %s", name, exc)
                await asyncio.sleep(self.poll_interval)
                continue
            if batch or replays:
                continue
            # Not asyncio.wait_for: in 3.11 it swallows a cancel that comes as `news` is set,
            # and aclose() would then wait for this task for ever.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.poll_interval):
                    await news.wait()

    async def _settle(
        self,
        name: str,
        settle: Callable[[str, int, tuple[int, str] | None], None],
        seq: int,
        fate: tuple[int, str] | None,
    ) -> None:
        """Commit an event's fate, waiting for an outbox that cannot be written (disk full)
        rather than sending the event again and again meanwhile; one log line per outage."""
        failed = False
        while True:
            try:
                await self._db(settle, name, seq, fate)
            except OutboxError as exc:
                if not failed:
                    log.error("sink %s: cannot record a delivery, waiting: %s", name, exc)
                    failed = True
                await asyncio.sleep(self.poll_interval)
                continue
            if failed:
                log.info("sink %s: deliveries are recorded again", name)
            return

    async def _start_sink(self, route: Route) -> None:
        attempt = 0
        while True:
            attempt += 1
            try:
                await route.sink.start()
                return
            except SinkError as exc:
                delay = route.retry.delay(attempt, self._rng)
                log.warning(
                    "sink %s cannot start (%s); again in %.1fs", route.sink.name, exc, delay
                )
                self.stats[route.sink.name].last_error = str(exc)
                await asyncio.sleep(delay)

    async def _deliver(
        self, route: Route, event: StoredEvent, replay: bool = False
    ) -> tuple[int, str] | None:
        """Try until delivered (None) or given up: (attempts, last error) for the dead letter.

        Tries that found the receiver unreachable set the backoff but are not counted against
        `max_attempts`: the outage is the sink's, and the next event would fare no better.
        `max_age` counts from the event's append, or for a `replay` (asked for by hand, often
        of events days old) from now: else a replay older than it would get a single try.
        """
        began = time.time() if replay else event.created
        policy, sink = route.retry, route.sink
        stats = self.stats[sink.name]
        attempt = 0  # every try: sets the backoff
        counted = 0  # tries the receiver could have answered: limited by max_attempts
        while True:
            attempt += 1
            try:
                async with asyncio.timeout(policy.send_timeout):
                    await sink.send(event)
            except (SinkError, TimeoutError) as exc:
                error = str(exc) or f"no answer within {policy.send_timeout:.0f}s"
                stats.failed_attempts += 1
                stats.last_error = error
                counted += not isinstance(exc, SinkUnavailable)
                age = time.time() - began
                if (
                    isinstance(exc, SinkRejected)
                    or counted >= policy.max_attempts
                    or age >= policy.max_age
                ):
                    log.error(
                        "sink %s: event %s dead-lettered after %d attempts: %s",
                        sink.name,
                        event.id,
                        attempt,
                        error,
                    )
                    stats.dead_lettered += 1
                    return attempt, error
                delay = policy.delay(attempt, self._rng)
                log.info(
                    "sink %s: event %s attempt %d failed (%s); again in %.2fs",
                    sink.name,
                    event.id,
                    attempt,
                    error,
                    delay,
                )
                await asyncio.sleep(delay)
                continue
            stats.delivered += 1
            stats.last_error = None
            stats.latencies.append(time.time() - event.created)
            return None

    async def _prune(self) -> None:
        while True:
            try:
                await self._db(self.outbox.prune)
            except OutboxError as exc:
                log.error("outbox retention failed: %s", exc)
            await asyncio.sleep(self.prune_interval)


async def _close_sink(sink: Sink) -> None:
    """Close `sink` within SINK_CLOSE_TIMEOUT_S. One that fails or overruns is left, so that
    the others are still closed; what it had not settled stays in the outbox."""
    try:
        async with asyncio.timeout(SINK_CLOSE_TIMEOUT_S):
            await sink.aclose()
    except TimeoutError:
        log.warning(
            "sink %s did not close within %gs; left as it is", sink.name, SINK_CLOSE_TIMEOUT_S
        )
    except Exception:
        log.exception("sink %s failed to close", sink.name)
