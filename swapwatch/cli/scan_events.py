"""Events from `scan` (and `watch`): `--events FILE.sqlite` records them durably, `--sink`
delivers them while the analysis runs, from a thread with its own event loop."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from swapwatch.cli.common import non_negative_float
from swapwatch.cli.events import add_sink_options, sink_specs
from swapwatch.errors import ConfigError
from swapwatch.stream.source import redact_url

if TYPE_CHECKING:  # the CLI builds every parser; the event machinery loads only when used
    from swapwatch.events.delivery import Route, SinkStats
    from swapwatch.events.emit import StreamEvents
    from swapwatch.events.outbox import EventLog
    from swapwatch.fusion import DecisionConfig
    from swapwatch.stream.pipeline import FrameResult

log = logging.getLogger(__name__)

ResultCallback = Callable[["FrameResult"], None]


def add_event_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("events")
    group.add_argument(
        "--events",
        type=Path,
        metavar="FILE.sqlite",
        help="record stream and alarm events in this outbox (created if missing)",
    )
    add_sink_options(group)  # type: ignore[arg-type]
    group.add_argument("--stream-id", help="the stream's id in events (default: the source)")
    group.add_argument(
        "--drain",
        type=non_negative_float,
        default=10.0,
        metavar="S",
        help="at the end, wait up to S seconds for the sinks to catch up (default 10)",
    )


def stream_id(source: str) -> str:
    """A source as events name it: no credentials, query or RTMP/SRT stream key."""
    return redact_url(source).removesuffix("?***")


class DeliveryThread:
    """A Dispatcher running in its own thread and event loop, beside a synchronous caller."""

    def __init__(self, outbox: EventLog, routes: list[Route], drain_timeout: float) -> None:
        from swapwatch.events.delivery import Dispatcher

        self.dispatcher = Dispatcher(outbox, routes)
        self.drain_timeout = drain_timeout
        self.drained = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._main, name="event delivery", daemon=True)

    @property
    def stats(self) -> dict[str, SinkStats]:
        return self.dispatcher.stats

    def start(self) -> None:
        self._thread.start()
        self._ready.wait()

    def stop(self) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join()

    def _main(self) -> None:
        asyncio.run(self._run())

    async def _run(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        try:
            await self.dispatcher.start()
        finally:
            self._ready.set()
        try:
            await self._stop.wait()
            self.drained = await self.dispatcher.wait_idle(self.drain_timeout)
        finally:
            await self.dispatcher.aclose()


class ScanEvents:
    """The events of one `scan`: started now, alarms as they come, ended or failed at the end."""

    def __init__(
        self, outbox: EventLog, events: StreamEvents, delivery: DeliveryThread | None
    ) -> None:
        self.outbox = outbox
        self.events = events
        self.delivery = delivery
        self._finished = False

    def chain(self, callback: ResultCallback | None) -> ResultCallback:
        """The per-frame callback: records alarms, then calls `callback`."""

        def on_result(result: FrameResult) -> None:
            self.events.alerts(result.alerts)
            if callback is not None:
                callback(result)

        return on_result

    def ended(self, summary: dict[str, Any]) -> None:
        self._finished = True
        keys = ("verdict", "score", "frames", "media_seconds")  # what a scan's summary has
        detail = {"reason": summary.get("reason", "end")}
        self.events.ended(detail | {key: summary[key] for key in keys if key in summary})

    def failed(self, error: BaseException) -> None:
        self._finished = True
        self.events.failed(error)

    def close(self) -> None:
        if not self._finished:
            self.events.ended({"reason": "interrupted"})
        try:
            if self.delivery is not None:
                self.delivery.stop()
                if not self.delivery.drained:
                    print(
                        f"swapwatch: warning: events still wait for delivery in "
                        f"{self.outbox.path}; `swapwatch events deliver --db {self.outbox.path}"
                        f" --sink ...` sends them",
                        file=sys.stderr,
                    )
            if self.events.lost:
                print(
                    f"swapwatch: warning: {self.events.lost} events could not be recorded "
                    f"(see the log)",
                    file=sys.stderr,
                )
        finally:
            self.outbox.close()


class NoEvents:
    """What `scan` uses without --events: does nothing."""

    def chain(self, callback: ResultCallback | None) -> ResultCallback:
        return callback or (lambda _result: None)

    def ended(self, summary: dict[str, Any]) -> None:
        pass

    def failed(self, error: BaseException) -> None:
        pass

    def close(self) -> None:
        pass


def events_from_args(
    args: argparse.Namespace, decision: DecisionConfig | None = None
) -> ScanEvents | NoEvents:
    """Open the outbox, build the sinks and record `stream.started`; NoEvents without --events."""
    from swapwatch.events.emit import StreamEvents
    from swapwatch.events.outbox import EventLog
    from swapwatch.events.sinks.factory import create_routes

    specs = sink_specs(args)
    if args.events is None:
        if specs:
            raise ConfigError("--sink needs --events FILE.sqlite (the outbox it delivers from)")
        return NoEvents()
    routes = create_routes(specs)  # before the outbox: a bad sink fails fast
    outbox = EventLog(args.events)
    stream = args.stream_id or stream_id(args.source)
    events = StreamEvents(outbox, stream, decision=decision)
    delivery = DeliveryThread(outbox, routes, args.drain) if routes else None
    if delivery is not None:
        delivery.start()
    events.started({"source": stream_id(args.source)})
    return ScanEvents(outbox, events, delivery)
