"""One media clock per worker: media time that never goes back across reconnects.

A source's media time starts again at 0 on every connection, while the worker's tracks and
decisions live on. Without a clock of its own the worker would see the old tracks as last seen
in its future: never pruned, and an old alarm would keep the stream alarmed for ever.
"""

from __future__ import annotations

from typing import Any

DEFAULT_INTERVAL_S = 1 / 30  # the gap put between two connections when no frame gap is known


class MediaClock:
    """Maps each connection's media time onto the worker's: a connection whose first frame
    would come at or before the last frame seen is moved to one frame interval after it;
    one that goes on from where the last left (a resumed recording) keeps its times."""

    def __init__(self) -> None:
        self.offset = 0.0
        self.last: float | None = None  # the worker's media time of the latest frame
        self.interval = DEFAULT_INTERVAL_S  # the latest gap between two frames
        self._new_connection = True

    def new_connection(self) -> None:
        """The next frame is the first of a new connection of the source."""
        self._new_connection = True

    def map(self, source_time: float) -> float:
        """The worker's media time of a frame at `source_time` in its connection."""
        if self._new_connection:
            self._new_connection = False
            if self.last is not None and source_time + self.offset <= self.last:
                self.offset = self.last + self.interval - source_time
        mapped = source_time + self.offset
        if self.last is not None and mapped > self.last:
            self.interval = mapped - self.last
        self.last = mapped
        return mapped

    def state(self) -> dict[str, Any]:
        return {"offset": self.offset, "last": self.last, "interval": self.interval}

    def restore(self, state: dict[str, Any]) -> None:
        self.offset = float(state["offset"])
        self.last = None if state["last"] is None else float(state["last"])
        self.interval = float(state["interval"])
        self._new_connection = True
