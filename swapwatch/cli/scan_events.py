"""Events from `scan` (and `watch`): `--events FILE.sqlite` records them durably, `--sink`
delivers them while the analysis runs, from a thread with its own event loop."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
import threading
from pathlib import Path
from typing import TYPE_CHECKING

from swapwatch.cli.common import non_negative_float
from swapwatch.cli.events import add_sink_options, sink_specs
from swapwatch.errors import ConfigError
from swapwatch.stream.source import stream_name

if TYPE_CHECKING:  # the CLI builds every parser; the event machinery loads only when used
    from swapwatch.events.delivery import Route, SinkStats
    from swapwatch.events.model import Event
    from swapwatch.events.outbox import EventLog

log = logging.getLogger(__name__)


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


class DeliveryThread:
    """A Dispatcher running in its own thread and event loop, beside a synchronous caller."""

    def __init__(self, outbox: EventLog, routes: list[Route], drain_timeout: float) -> None:
        from swapwatch.events.delivery import Dispatcher

        # A sink that another process (a service on the same outbox) delivers waits for it:
        # the analysis goes on, and what is left is said at the end.
        self.dispatcher = Dispatcher(outbox, routes, wait_for_busy_sinks=True)
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
    """The events of one `scan` or `watch` (an `EventSink`): each committed to the outbox as
    the worker makes it; at the end the sinks get `--drain` seconds to catch up."""

    def __init__(self, outbox: EventLog, delivery: DeliveryThread | None) -> None:
        self.outbox = outbox
        self.delivery = delivery
        self.lost = 0

    def publish(self, event: Event) -> None:
        from swapwatch.events.errors import OutboxError

        try:
            self.outbox.append(event)
        except OutboxError as exc:
            self.lost += 1
            log.error("event %s not recorded: %s", event.type.value, exc)

    def close(self) -> None:
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
            if self.lost:
                print(
                    f"swapwatch: warning: {self.lost} events could not be recorded (see the log)",
                    file=sys.stderr,
                )
        finally:
            self.outbox.close()


class NoEvents:
    """What `scan` uses without --events: keeps nothing."""

    def publish(self, event: Event) -> None:
        pass

    def close(self) -> None:
        pass


def events_from_args(args: argparse.Namespace) -> ScanEvents | NoEvents:
    """Open the outbox and start delivering to the sinks; NoEvents without --events."""
    from swapwatch.events.outbox import EventLog
    from swapwatch.events.sinks.factory import create_routes

    specs = sink_specs(args)
    if args.events is None:
        if specs:
            raise ConfigError("--sink needs --events FILE.sqlite (the outbox it delivers from)")
        return NoEvents()
    routes = create_routes(specs)  # before the outbox: a bad sink fails fast
    outbox = EventLog(args.events)
    delivery = DeliveryThread(outbox, routes, args.drain) if routes else None
    if delivery is not None:
        delivery.start()
    return ScanEvents(outbox, delivery)


def events_stream_id(args: argparse.Namespace) -> str:
    """The stream's id in events: --stream-id, else the source without secrets."""
    return str(args.stream_id or stream_name(args.source))
