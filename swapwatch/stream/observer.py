"""What a worker reports as it runs, for metrics: an observer protocol and a null default."""

from __future__ import annotations

from typing import Protocol

from swapwatch.fusion import AlarmChange
from swapwatch.stream.pipeline import FrameResult
from swapwatch.timing import NullTimer, StageTimer


class WorkerObserver(Protocol):
    """Called on the event loop (`stage_timer`'s timer: in the analysis thread)."""

    def stage_timer(self) -> StageTimer:
        """Receives the time of each analysis stage."""
        ...

    def running(self, active: bool) -> None:
        """The worker began (True) or finished (False) its work."""

    def frames(self, decoded: int, dropped: int) -> None:
        """More frames decoded, and dropped because analysis lagged, since the last report."""

    def analysed(self, result: FrameResult, latency: float) -> None:
        """One frame analysed, `latency` s after it was decoded."""

    def alarm(self, change: AlarmChange) -> None: ...

    def error(self, kind: str) -> None:
        """A failure of the source (its exception's name) or `internal`."""

    def reconnecting(self) -> None: ...


class NullObserver:
    """Reports nothing."""

    def stage_timer(self) -> StageTimer:
        return NullTimer()

    def running(self, active: bool) -> None:
        pass

    def frames(self, decoded: int, dropped: int) -> None:
        pass

    def analysed(self, result: FrameResult, latency: float) -> None:
        pass

    def alarm(self, change: AlarmChange) -> None:
        pass

    def error(self, kind: str) -> None:
        pass

    def reconnecting(self) -> None:
        pass
