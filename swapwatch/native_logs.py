"""MediaPipe and LiteRT print from C++ straight to file descriptor 2, ignoring Python logging.

The CLI silences that descriptor while those libraries start, warm up and shut down, which is
when they talk; errors still surface as Python exceptions.

Descriptor 2 belongs to the whole process while every stream's thread may silence it, so the
silencing is counted under one lock: the first block in redirects it to /dev/null, the last one
out puts back what the first one found. (Each block saving and restoring on its own let two
overlapping streams leave it on /dev/null for good.)
"""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager

_lock = threading.Lock()
_depth = 0  # silenced blocks open now, in all threads
_saved: int | None = None  # a duplicate of what descriptor 2 was before the first of them


@contextmanager
def native_stderr_silenced(enabled: bool = True) -> Iterator[None]:
    if not enabled:
        yield
        return
    _enter()
    try:
        yield
    finally:
        _leave()


def _enter() -> None:
    global _depth, _saved
    with _lock:
        if _depth == 0:
            sys.stderr.flush()
            saved = os.dup(2)
            try:
                _point_at_devnull(2)
            except OSError:
                os.close(saved)
                raise
            _saved = saved
        _depth += 1


def _leave() -> None:
    global _depth, _saved
    with _lock:
        _depth -= 1
        if _depth == 0 and _saved is not None:
            os.dup2(_saved, 2)
            os.close(_saved)
            _saved = None


def _point_at_devnull(fd: int) -> None:
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, fd)
    finally:
        os.close(devnull)


def keep_native_stderr_quiet() -> None:
    """For the rest of the process: what C/C++ code writes to descriptor 2 goes to /dev/null,
    while Python's `sys.stderr` (our messages, logging, tracebacks) keeps the real stderr.

    MediaPipe logs from its own threads at moments no `native_stderr_silenced` block can cover,
    so the CLI does this once at start unless asked to be verbose."""
    with _lock:
        sys.stderr.flush()
        # Inside silenced blocks the real stderr is the one they saved, and what they put back.
        real = _saved if _saved is not None else 2
        terminal = os.dup(real)
        _point_at_devnull(real)
    sys.stderr = open(  # noqa: SIM115 - it lives as long as the process
        terminal, "w", buffering=1, encoding=sys.stderr.encoding, errors="backslashreplace"
    )
