"""MediaPipe and LiteRT print from C++ straight to file descriptor 2, ignoring Python logging.

The CLI silences that descriptor while those libraries start, warm up and shut down, which is
when they talk; errors still surface as Python exceptions.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def native_stderr_silenced(enabled: bool = True) -> Iterator[None]:
    if not enabled:
        yield
        return
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def keep_native_stderr_quiet() -> None:
    """For the rest of the process: what C/C++ code writes to descriptor 2 goes to /dev/null,
    while Python's `sys.stderr` (our messages, logging, tracebacks) keeps the real stderr.

    MediaPipe logs from its own threads at moments no `native_stderr_silenced` block can cover,
    so the CLI does this once at start unless asked to be verbose."""
    sys.stderr.flush()
    terminal = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    os.close(devnull)
    sys.stderr = open(  # noqa: SIM115 - it lives as long as the process
        terminal, "w", buffering=1, encoding=sys.stderr.encoding, errors="backslashreplace"
    )
