"""Where a worker's events go: one protocol for the service, `scan` and `watch` alike."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from swapwatch.events.model import Event


@runtime_checkable
class EventSink(Protocol):
    """Takes each event as the worker makes it, on the event loop; must not block it for long
    and must not raise (an event it cannot keep is its own to count)."""

    def publish(self, event: Event) -> None: ...


class NullSink:
    def publish(self, event: Event) -> None:
        pass


class EventList:
    """Keeps every event in order (tests, embedding)."""

    def __init__(self) -> None:
        self.events: list[Event] = []

    def publish(self, event: Event) -> None:
        self.events.append(event)
