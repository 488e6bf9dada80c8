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
from pathlib import Path
from typing import Any

from aiohttp import web

from swapwatch.errors import ConfigError
from swapwatch.events.delivery import Dispatcher, Route, SinkStats
from swapwatch.events.emit import StreamEvents
from swapwatch.events.errors import OutboxError
from swapwatch.events.model import EventType
from swapwatch.events.outbox import EventLog, Retention, StoredEvent
from swapwatch.events.sinks.base import parse_sink
from swapwatch.events.sinks.live import LiveFeed, LiveSink, sse_response
from swapwatch.plugins.sinks import create_routes
from swapwatch.server.config import ServiceConfig
from swapwatch.server.metrics import ServiceMetrics

log = logging.getLogger(__name__)

LIVE_FEED_SINK = "live-feed"


def default_events_path() -> Path:
    """$XDG_STATE_HOME/swapwatch/events.sqlite (~/.local/state/... when unset)."""
    state = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(state) / "swapwatch" / "events.sqlite"


def build_routes(config: ServiceConfig, feed: LiveFeed) -> list[Route]:
    """The configured sinks, then the live feed (which starts at the newest event)."""
    routes = create_routes(parse_sink(text) for text in config.sinks)
    if any(r.sink.name == LIVE_FEED_SINK for r in routes):
        raise ConfigError(f"the sink name {LIVE_FEED_SINK!r} is the service's own: rename yours")
    return [*routes, Route(LiveSink(LIVE_FEED_SINK, feed), start="latest")]


class ServiceEvents:
    """Records what the stream workers report as events, one run per source connection."""

    def __init__(self, config: ServiceConfig, metrics: ServiceMetrics) -> None:
        self.config = config
        self.metrics = metrics
        self.path = config.events_path or default_events_path()
        self.feed = LiveFeed()
        self.routes = build_routes(config, self.feed)  # a bad sink fails before anything runs
        self.outbox: EventLog | None = None
        self.dispatcher: Dispatcher | None = None
        self.error: str | None = None  # why events are not being recorded durably
        self.recorded = 0
        self.lost = 0
        self._runs: dict[str, StreamEvents] = {}
        metrics.delivery.source = self

    async def start(self) -> None:
        retention = Retention(
            keep_seconds=self.config.events_keep_days * 86_400.0,
            max_bytes=int(self.config.events_max_mb * 1024 * 1024),
        )
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.outbox = await asyncio.to_thread(EventLog, self.path, retention)
        except OutboxError as exc:
            self._degrade(f"events are not recorded durably: {exc}")
            return
        except OSError as exc:
            self._degrade(f"events are not recorded durably: cannot create {self.path}: {exc}")
            return
        self.dispatcher = Dispatcher(self.outbox, self.routes)
        await self.dispatcher.start()
        log.info("events: outbox %s, sinks %s", self.path, [r.sink.name for r in self.routes])

    def _degrade(self, message: str) -> None:
        self.error = message
        log.error("%s; analysis goes on, events reach only the live feed", message)

    async def close(self, drain_timeout: float) -> None:
        if self.dispatcher is not None:
            await self.dispatcher.aclose(drain_timeout)
        if self.outbox is not None:
            await asyncio.to_thread(self.outbox.close)

    def record(self, stream_id: str, kind: str, payload: dict[str, Any]) -> None:
        """A worker's event (called on the event loop): into the outbox, then the sinks."""
        event_type = EventType(kind)
        if event_type is EventType.STREAM_STARTED or stream_id not in self._runs:
            self._runs[stream_id] = StreamEvents(self.outbox, stream_id)
        run = self._runs[stream_id]
        lost_before = run.lost
        if event_type in (EventType.ALERT_RAISED, EventType.ALERT_CLEARED):
            event = run.alarm(
                event_type,
                payload["track"],
                payload["media_time"],
                payload["score"],
                payload.get("evidence"),
            )
        else:
            event = run.lifecycle(event_type, payload)
        if run.lost == lost_before:
            self.recorded += 1
            self.metrics.events_recorded.labels(kind).inc()
            if self.error is not None:
                log.info("events are recorded in the outbox again")
                self.error = None
            return
        self.lost += 1
        self.metrics.events_lost.inc()
        if self.outbox is not None and self.error is None:
            self._degrade(f"events are not being recorded: {run.last_error}")
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
        sinks = []
        if self.dispatcher is not None:
            for name, stats in self.dispatcher.stats.items():
                sinks.append(
                    {
                        "name": name,
                        "running": stats.running,
                        "delivered": stats.delivered,
                        "failed_attempts": stats.failed_attempts,
                        "dead_lettered": stats.dead_lettered,
                        "cursor": stats.cursor,
                        "crashed": stats.crashed,
                        "last_error": stats.last_error,
                    }
                )
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

    async def sse(self, request: web.Request) -> web.StreamResponse:
        return await sse_response(request, self.feed, self.outbox)
