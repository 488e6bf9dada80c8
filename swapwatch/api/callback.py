"""Events handed to a caller's function, as the stream worker makes them."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from swapwatch.events.model import Event

log = logging.getLogger(__name__)

EventCallback = Callable[[Event], None]


class CallbackSink:
    """An EventSink calling `on_event` with each event, on the event loop. The first exception
    the callback raises is kept and `failed` is set (whoever runs the stream stops it and
    raises the exception); the callback is not called again after it."""

    def __init__(self, on_event: EventCallback) -> None:
        self._on_event = on_event
        self.error: Exception | None = None
        self.failed = asyncio.Event()

    def publish(self, event: Event) -> None:
        if self.error is not None:
            return
        try:
            self._on_event(event)
        except Exception as exc:  # the caller's code: kept and raised by `watch`, not lost
            log.warning("the event callback failed on %s: %r", event.type.value, exc)
            self.error = exc
            self.failed.set()
