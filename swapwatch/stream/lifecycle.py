"""The life of one stream worker: a state enum and the table of the transitions it may make."""

from __future__ import annotations

from enum import StrEnum

from swapwatch.errors import SwapwatchError


class StreamState(StrEnum):
    STARTING = "starting"
    RUNNING = "running"
    RECONNECTING = "reconnecting"
    ENDED = "ended"  # a file or a pushed stream came to its end
    FAILED = "failed"  # cannot go on (refused, too large, unsupported, a bug)
    STOPPED = "stopped"  # stopped from outside (removed, shutdown, interrupted)


# Every legal move; a terminal state has none.
TRANSITIONS: dict[StreamState, frozenset[StreamState]] = {
    StreamState.STARTING: frozenset(
        {
            StreamState.RUNNING,
            StreamState.RECONNECTING,
            StreamState.ENDED,  # stopped before its source opened (a signal, a closed source)
            StreamState.FAILED,
            StreamState.STOPPED,
        }
    ),
    StreamState.RUNNING: frozenset(
        {StreamState.RECONNECTING, StreamState.ENDED, StreamState.FAILED, StreamState.STOPPED}
    ),
    StreamState.RECONNECTING: frozenset(
        {StreamState.RUNNING, StreamState.FAILED, StreamState.STOPPED}
    ),
    StreamState.ENDED: frozenset(),
    StreamState.FAILED: frozenset(),
    StreamState.STOPPED: frozenset(),
}


class IllegalTransition(SwapwatchError):
    """A worker was asked to move between two states the table does not link (a bug)."""


class Lifecycle:
    """The current state of one worker; `move` is the only way to change it."""

    def __init__(self, state: StreamState = StreamState.STARTING) -> None:
        self._state = state

    @property
    def state(self) -> StreamState:
        return self._state

    @property
    def finished(self) -> bool:
        return not TRANSITIONS[self._state]

    def move(self, to: StreamState) -> None:
        """Go to `to`; raises IllegalTransition when the table does not allow it."""
        if to not in TRANSITIONS[self._state]:
            raise IllegalTransition(f"a stream cannot go from {self._state} to {to}")
        self._state = to
