"""The service's events: each stream and alarm event is committed to the durable outbox first,
then delivered to the configured sinks and to the live feed behind `/v1/events`.

A broken or full outbox never stops the analysis: the service logs one clear error, counts the
events it could not record, shows the state in `/readyz`, `/v1/events/status` and `/metrics`, and
still puts every event on the live feed.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from aiohttp import web

from swapwatch.errors import ConfigError
from swapwatch.events.delivery import Dispatcher, Route, SinkStats
from swapwatch.events.errors import OutboxCorrupt, OutboxError
from swapwatch.events.model import Event, EventType
from swapwatch.events.outbox import EventLog, Retention, StoredEvent
from swapwatch.events.run import crashed_event
from swapwatch.events.sinks.base import parse_sink
from swapwatch.events.sinks.factory import create_routes
from swapwatch.events.sinks.live import LiveFeed, LiveSink, sse_response
from swapwatch.server.config import EventsConfig
from swapwatch.server.metrics import ServiceMetrics
from swapwatch.server.state import OpenRun, StateError, StateStore

log = logging.getLogger(__name__)

LIVE_FEED_SINK = "live-feed"
CLOCK_MARGIN_S = 3600.0
MAX_RECENT = 1000  # events a new live-feed client may ask to see first
SINK_STATUS_FIELDS = (
    "running",
    "delivered",
    "failed_attempts",
    "dead_lettered",
    "cursor",
    "backlog",
    "crashed",
    "last_error",
)


def default_events_path() -> Path:
    """$XDG_STATE_HOME/swapwatch/events.sqlite (~/.local/state/... when unset)."""
    state = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(state) / "swapwatch" / "events.sqlite"


def events_path(config: EventsConfig) -> Path:
    return config.path or default_events_path()


def build_routes(config: EventsConfig, feed: LiveFeed) -> list[Route]:
    """The configured sinks, then the live feed (which starts at the newest event)."""
    routes = create_routes(parse_sink(text) for text in config.sinks)
    names = [r.sink.name for r in routes]
    if LIVE_FEED_SINK in names:
        raise ConfigError(f"the sink name {LIVE_FEED_SINK!r} is the service's own: rename yours")
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise ConfigError(f"sink names must be unique (add ;name=...): {', '.join(repeated)}")
    return [*routes, Route(LiveSink(LIVE_FEED_SINK, feed), start="latest")]


def salvage_hint(path: Path) -> str:
    """What to do about a damaged outbox: the service leaves it as it is, for its events."""
    return (
        f"To record events again, stop the service and move {path} aside (a new outbox is "
        f"made at start); `sqlite3 {path} .dump` (or `.recover`) salvages the events it still holds"
    )


class ServiceEvents:
    """Records what the stream workers report as events, one run per source connection.

    `record` is called on the event loop and never blocks it: the events are built there (so
    their ids and order are fixed) and committed, in order, by one writer thread. With `state`,
    the run each stream has open is kept there too (opened before its first event is committed,
    closed after its last), so that a run the process dies under is closed at the next start.
    """

    def __init__(
        self, config: EventsConfig, metrics: ServiceMetrics, state: StateStore | None = None
    ) -> None:
        self.config = config
        self.metrics = metrics
        self.state = state
        self.path = events_path(config)
        self.feed = LiveFeed()
        self.routes = build_routes(config, self.feed)  # a bad sink fails before anything runs
        self.outbox: EventLog | None = None
        self.dispatcher: Dispatcher | None = None
        self.error: str | None = None  # why events are not being recorded durably
        self.recorded = 0
        self.lost = 0
        self._runs: dict[str, str] = {}  # the run each stream has open
        self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="outbox-writer")
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closed = False
        metrics.delivery.source = self

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        retention = Retention(
            keep_seconds=self.config.keep_days * 86_400.0,
            max_bytes=int(self.config.max_mb * 1024 * 1024),
        )
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.outbox = await asyncio.to_thread(EventLog, self.path, retention)
        except OutboxCorrupt as exc:
            self._degrade(f"events are not recorded durably: {exc}. {salvage_hint(self.path)}")
            return
        except OutboxError as exc:
            self._degrade(f"events are not recorded durably: {exc}")
            return
        except OSError as exc:
            self._degrade(f"events are not recorded durably: cannot create {self.path}: {exc}")
            return
        await self._warn_about_forgotten_sinks(self.outbox)
        self.dispatcher = Dispatcher(self.outbox, self.routes, wait_for_busy_sinks=True)
        await self.dispatcher.start()
        log.info("events: outbox %s, sinks %s", self.path, [r.sink.name for r in self.routes])

    async def _warn_about_forgotten_sinks(self, outbox: EventLog) -> None:
        configured = {r.sink.name for r in self.routes}
        for state in await asyncio.to_thread(outbox.sinks):
            if state.name not in configured:
                log.warning(
                    "sink %r is no longer configured but holds %d events back from pruning; "
                    "`swapwatch events forget --db %s %s` lets them go",
                    state.name,
                    state.backlog,
                    self.path,
                    state.name,
                )

    def _degrade(self, message: str) -> None:
        self.error = message
        log.error("%s; analysis goes on, events reach only the live feed", message)

    async def close(self, drain_timeout: float) -> None:
        """Commit what was recorded, then give the sinks `drain_timeout` s to catch up."""
        self._closed = True
        await asyncio.to_thread(self._writer.shutdown, True)
        if self.dispatcher is not None:
            await self.dispatcher.aclose(drain_timeout)
        # The live feed has had the last events: its readers' streams end now, rather than at
        # their next heartbeat, which the HTTP server's shutdown would wait for.
        self.feed.close()
        if self.outbox is not None:
            await asyncio.to_thread(self.outbox.close)

    def publish(self, event: Event) -> None:
        """A stream's event (on the event loop): queued for the outbox, then the sinks. The
        first event of a run opens it in the state file, its final one closes it."""
        if self._closed:
            kind = event.type.value
            log.warning("event %s of %s after shutdown: not recorded", kind, event.stream)
            return
        stream_id = event.stream
        if event.type is EventType.SESSION_COMPLETED:
            # A verdict belongs to no run of its own: it neither opens nor closes one.
            self._writer.submit(self._write, event)
            return
        if self._runs.get(stream_id) != event.run:
            self._runs[stream_id] = event.run
            self._writer.submit(self._keep_run, stream_id, event.run, True)
        final = event.type is EventType.STREAM_ENDED or (
            event.type is EventType.STREAM_ERROR and (event.detail or {}).get("final") is True
        )
        if not final:
            self._writer.submit(self._write, event)
            return
        del self._runs[stream_id]  # the next start is a new run
        self._writer.submit(self._write_final, event)

    def _write_final(self, event: Event) -> None:
        """In the writer thread: a run's closing event; the run is marked closed only once the
        event is in the outbox, else the next start closes it (as a crash's)."""
        if self._write(event):
            self._keep_run(event.stream, event.run, False)

    async def flushed(self) -> None:
        """Returns once every event published so far is committed (or counted lost)."""
        if not self._closed:
            await asyncio.wrap_future(self._writer.submit(_nothing))

    async def flushed_within(self, seconds: float) -> bool:
        """Whether every event published so far was committed (or counted lost) within
        `seconds`: a stuck outbox (a locked file) holds no caller longer than that."""
        try:
            await asyncio.wait_for(asyncio.shield(self.flushed()), seconds)
        except TimeoutError:
            return False
        return True

    def record(self, event: Event) -> asyncio.Future[bool]:
        """Queue an event that belongs to no run (a session's verdict) for the outbox, in the
        order of the calls: a future of whether it is in it (False: the write failed, or
        events are no longer recorded), which a stuck outbox leaves pending."""
        if event.type is not EventType.SESSION_COMPLETED:
            raise ValueError(f"{event.type.value} belongs to a run: publish it")
        if self._closed:
            self.publish(event)  # says it is not recorded
            refused: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
            refused.set_result(False)
            return refused
        return asyncio.wrap_future(self._writer.submit(self._write, event))

    def close_crashed_runs(self, runs: list[OpenRun]) -> None:
        """Close runs a dead process left open, each with a `stream.ended` of reason `crashed`
        (unless the outbox holds the run's last event already), queued before any event of this
        process. A run stays open in the state file until its closing event is in the outbox."""
        for open_run in runs:
            self._writer.submit(self._close_crashed, open_run)

    def _close_crashed(self, open_run: OpenRun) -> None:
        """In the writer thread. A run whose last event is in the outbox but that the process
        died before marking closed is only marked now: it ended, it did not crash."""
        if self._ended_in_outbox(open_run):
            self._keep_run(open_run.stream_id, open_run.run, False)
            return
        log.warning(
            "stream %s: run %s was cut by a crash: closing it (stream.ended, crashed)",
            open_run.stream_id,
            open_run.run,
        )
        event = crashed_event(open_run.stream_id, open_run.run)
        if self._write(event):
            self._keep_run(open_run.stream_id, open_run.run, False)

    def _ended_in_outbox(self, open_run: OpenRun) -> bool:
        if self.outbox is None:
            return False
        kinds = (EventType.STREAM_ENDED.value, EventType.STREAM_ERROR.value)
        # The run was marked open before its first append; the margin covers a clock step.
        since = open_run.opened - CLOCK_MARGIN_S
        try:
            stored = self.outbox.stream_events_since(open_run.stream_id, kinds, since)
        except OutboxError as exc:
            log.error(
                "stream %s: cannot tell how run %s ended: %s", open_run.stream_id, open_run.run, exc
            )
            return False
        for item in stored:
            event = item.event()
            final = event.type is EventType.STREAM_ENDED or (event.detail or {}).get("final")
            if event.run == open_run.run and final:
                return True
        return False

    def _keep_run(self, stream_id: str, run_id: str, open_now: bool) -> None:
        """In the writer thread: the run is open now, or closed, in the state file."""
        if self.state is None:
            return
        try:
            if open_now:
                self.state.run_opened(stream_id, run_id)
            else:
                self.state.run_closed(stream_id, run_id)
        except StateError as exc:
            log.error("stream %s: the state of run %s not kept: %s", stream_id, run_id, exc)

    def _write(self, event: Event) -> bool:
        """In the writer thread: commit, then report back to the loop; whether it is in the
        outbox."""
        error: str | None = None
        if self.outbox is None:
            error = self.error or "no outbox"
        else:
            try:
                self.outbox.append(event)
            except OutboxError as exc:
                error = str(exc)
        if self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._written, event, error)
        return error is None

    def _written(self, event: Event, error: str | None) -> None:
        kind = event.type.value
        if error is None:
            self.recorded += 1
            self.metrics.events_recorded.labels(kind).inc()
            if self.error is not None:
                log.info("events are recorded in the outbox again")
                self.error = None
            return
        self.lost += 1
        self.metrics.events_lost.inc()
        if self.outbox is not None and self.error is None:
            self._degrade(f"events are not being recorded: {error}")
        # Unrecorded, it still reaches the dashboards (seq 0: outside the outbox's order).
        body = event.encode()
        self.feed.publish(StoredEvent(0, event.id, event.stream, kind, time.time(), body))

    @property
    def durable(self) -> bool:
        """Whether events are being recorded in the outbox."""
        return self.outbox is not None and self.error is None

    def sink_stats(self) -> dict[str, SinkStats]:
        return dict(self.dispatcher.stats) if self.dispatcher is not None else {}

    def status(self) -> dict[str, Any]:
        sinks = [
            {"name": name, **{field: getattr(stats, field) for field in SINK_STATUS_FIELDS}}
            for name, stats in self.sink_stats().items()
        ]
        return {
            "outbox": {
                "path": str(self.path),
                "ok": self.durable,
                "error": self.error,
                "recorded": self.recorded,
                "lost": self.lost,
            },
            "sinks": sinks,
        }

    async def sse(self, request: web.Request, recent: int = 0) -> web.StreamResponse:
        """The live feed; it first replays the `recent` latest events recorded (at most
        MAX_RECENT), unless the client resumes with Last-Event-ID."""
        return await sse_response(request, self.feed, self.outbox, recent=min(recent, MAX_RECENT))


def _nothing() -> None:
    pass
