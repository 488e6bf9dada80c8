"""What a worker shows of itself while it runs: counters, live rates, tracks."""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from swapwatch.stream.frames import VideoInfo
from swapwatch.stream.tracks import TrackTable

FPS_WINDOW_SECONDS = 2.0


@dataclass(frozen=True, slots=True)
class LiveFigures:
    """What a stream's latest frames show; 0 fps, no latency and no faces once they stop."""

    fps_in: float
    fps_analysed: float
    latency_ms: float | None
    faces: int


class RateMeter:
    """Events per second over a short sliding window, up to the time it is read: when the
    updates stop (a frozen or reconnecting feed), the rate falls to 0 within `window` s."""

    def __init__(self, window: float = FPS_WINDOW_SECONDS) -> None:
        self.window = window
        self._marks: deque[tuple[float, int]] = deque()

    def update(self, total: int, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        self._marks.append((now, total))
        while len(self._marks) > 2 and now - self._marks[0][0] > self.window:
            self._marks.popleft()

    def rate(self, now: float | None = None) -> float:
        now = time.monotonic() if now is None else now
        if len(self._marks) < 2 or now - self._marks[-1][0] >= self.window:
            return 0.0
        (t0, n0), (_, n1) = self._marks[0], self._marks[-1]
        return (n1 - n0) / (now - t0) if now > t0 else 0.0


COUNTERS = ("frames_in", "frames_analysed", "dropped", "alarms_raised", "reconnects")


@dataclass(slots=True)
class WorkerStatus:
    created: float = field(default_factory=time.time)
    video: VideoInfo | None = None
    frames_in: int = 0  # decoded, over every connection
    frames_analysed: int = 0
    dropped: int = 0
    faces: int = 0
    alarms_raised: int = 0
    reconnects: int = 0
    last_error: str | None = None
    tracks: TrackTable = field(default_factory=TrackTable)
    fps_in: RateMeter = field(default_factory=RateMeter)
    fps_analysed: RateMeter = field(default_factory=RateMeter)
    latency_ms: float | None = None  # of the latest analysed frame
    analysed_at: float | None = None  # time.monotonic() when it was analysed

    def live(self, now: float | None = None) -> LiveFigures:
        """The figures of the frames of the last FPS_WINDOW_SECONDS; without frames in it
        (frozen, reconnecting, ended), 0 fps, no latency and no faces."""
        now = time.monotonic() if now is None else now
        fresh = self.analysed_at is not None and now - self.analysed_at < FPS_WINDOW_SECONDS
        return LiveFigures(
            fps_in=self.fps_in.rate(now),
            fps_analysed=self.fps_analysed.rate(now),
            latency_ms=self.latency_ms if fresh else None,
            faces=self.faces if fresh else 0,
        )

    def counters(self) -> dict[str, int]:
        return {name: getattr(self, name) for name in COUNTERS}

    def restore_counters(self, counters: dict[str, Any]) -> None:
        for name in COUNTERS:
            setattr(self, name, int(counters[name]))
