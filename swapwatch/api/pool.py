"""Face models kept between calls: building them costs more than scoring a picture."""

from __future__ import annotations

import threading
from collections.abc import Callable

from swapwatch.stream.assembly import close_analyzer
from swapwatch.stream.pipeline import StreamAnalyzer


class AnalyzerPool:
    """Idle analyzers for calls that run one at a time each; as many as ran at once."""

    def __init__(self, build: Callable[[], StreamAnalyzer]) -> None:
        self._build = build
        self._idle: list[StreamAnalyzer] = []
        self._lock = threading.Lock()
        self._closed = False

    def take(self) -> StreamAnalyzer:
        """An idle analyzer, else a new one; no faces or decisions from a previous call."""
        with self._lock:
            if self._idle:
                return self._idle.pop()
        return self._build()

    def give_back(self, analyzer: StreamAnalyzer) -> None:
        """Only once no thread analyses with it any more."""
        analyzer.reset()
        with self._lock:
            if not self._closed:
                self._idle.append(analyzer)
                return
        close_analyzer(analyzer)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
        for analyzer in idle:
            close_analyzer(analyzer)
