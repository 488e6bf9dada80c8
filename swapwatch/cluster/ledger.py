"""What a remote worker made and what its front has committed: events are numbered as the
worker makes them and kept until the front acknowledges them; a checkpoint names the last event
its state includes.

An event counts as recorded only once the front has committed it to its outbox. The front keeps
a checkpoint only after committing every event up to it, so a worker restored from that
checkpoint never skips an event that was not recorded, and events it makes again carry the ids
they had (the outbox and receivers drop the repeats).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from swapwatch.events.model import Event


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """A worker's state (`StreamWorker.state_now()`) right after it made event `upto`."""

    state: dict[str, Any]
    upto: int


class PendingEvents:
    """An `EventSink` that numbers each event and keeps it until it is acknowledged."""

    def __init__(self, start: int = 0) -> None:
        self.made = start  # the number of the latest event made
        self._pending: list[tuple[int, Event]] = []

    def publish(self, event: Event) -> None:
        self.made += 1
        self._pending.append((self.made, event))

    def acknowledge(self, upto: int) -> None:
        """The front has committed every event up to number `upto`."""
        self._pending = [(n, e) for n, e in self._pending if n > upto]

    def unacknowledged(self) -> list[tuple[int, Event]]:
        return list(self._pending)
