"""What the fuzz tests share: the Hypothesis profiles and a watch on logged tracebacks.

`HYPOTHESIS_PROFILE=fast` (the default, what `make test` runs) keeps every fuzz test to a few
seconds; `HYPOTHESIS_PROFILE=long` multiplies the examples (tests/test_fuzz_long.py runs it,
marked slow). Each test names its own counts with `examples(fast, long)`, since one example of
a media scan costs what a thousand HTTP bodies do.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager

from hypothesis import HealthCheck, settings

PROFILE = os.environ.get("HYPOTHESIS_PROFILE", "fast")
PROFILES = ("fast", "long")


def load_profile() -> None:
    common = {
        "deadline": None,  # timing is asserted by the tests' own timeouts, not per example
        "print_blob": True,  # a failure prints how to replay it
        "suppress_health_check": [HealthCheck.too_slow, HealthCheck.data_too_large],
    }
    # `make test` must not pass or fail by chance: the fast profile replays the same examples
    # every run; the long one draws new ones, and a failure it finds becomes a plain test.
    settings.register_profile("fast", derandomize=True, **common)
    settings.register_profile("long", **common)
    if PROFILE not in PROFILES:
        raise ValueError(f"HYPOTHESIS_PROFILE must be one of {PROFILES}, got {PROFILE!r}")
    settings.load_profile(PROFILE)


def examples(fast: int, long: int) -> int:
    return long if PROFILE == "long" else fast


class TracebackCatcher(logging.Handler):
    """Collects the log records that carry a traceback or are errors: the service (in a thread
    of the test process) writes those where `swapwatch serve` writes them, on stderr."""

    def __init__(self) -> None:
        super().__init__(level=logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.exc_info is not None or record.levelno >= logging.ERROR:
            self.records.append(record)

    def take(self) -> list[str]:
        """What was caught since the last call, formatted, and forget it."""
        caught = [
            self.format(r)
            + (f"\n{logging.Formatter().formatException(r.exc_info)}" if r.exc_info else "")
            for r in self.records
        ]
        self.records.clear()
        return caught


@contextmanager
def catching_tracebacks() -> Iterator[TracebackCatcher]:
    catcher = TracebackCatcher()
    root = logging.getLogger()
    root.addHandler(catcher)
    try:
        yield catcher
    finally:
        root.removeHandler(catcher)
