"""A one-line progress display on stderr for long scans."""

from __future__ import annotations

import time
from typing import TextIO

from swapwatch.stream.pipeline import FrameResult
from swapwatch.stream.source import AvSource


class Progress:
    def __init__(self, out: TextIO, interval: float = 0.25) -> None:
        self._out = out
        self._interval = interval
        self._last = 0.0
        self._start = time.monotonic()
        self._shown = False

    def update(self, result: FrameResult, source: AvSource) -> None:
        now = time.monotonic()
        if now - self._last < self._interval:
            return
        self._last = now
        elapsed = now - self._start
        duration = source.info.duration if source.info else None
        where = f"{result.time:7.1f}s"
        if duration:
            where += f" / {duration:.1f}s ({min(100.0, 100.0 * result.time / duration):3.0f}%)"
        speed = result.time / elapsed if elapsed > 0 else 0.0
        self._out.write(
            f"\r  scanning {where}  {speed:4.1f}x real time  "
            f"{source.counters.decoded} frames  {len(result.faces)} faces "
        )
        self._out.flush()
        self._shown = True

    def done(self) -> None:
        if self._shown:
            self._out.write("\r\x1b[K")
            self._out.flush()
