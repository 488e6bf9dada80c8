"""Per-stage latency recording: a null default that costs nothing, and a collector."""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Protocol


class StageTimer(Protocol):
    def record(self, stage: str, seconds: float) -> None: ...


class NullTimer:
    def record(self, stage: str, seconds: float) -> None:
        pass


class CollectingTimer:
    """Keeps every duration per stage (benchmarks, reports)."""

    def __init__(self) -> None:
        self.samples: dict[str, list[float]] = defaultdict(list)

    def record(self, stage: str, seconds: float) -> None:
        self.samples[stage].append(seconds)


@contextmanager
def timed(timer: StageTimer, stage: str) -> Iterator[None]:
    start = time.perf_counter()
    try:
        yield
    finally:
        timer.record(stage, time.perf_counter() - start)
