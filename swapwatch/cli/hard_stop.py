"""The last resort of a stop: end the process when its drain has not ended it in time.

`limits.drain_timeout_s` is "the time to finish, in all", but a thread stuck for good (a signal
plugin or an engine that never returns, a sink blocked in a call without a timeout) would hold
the process past it: Python joins its worker threads before it exits, and no stop can interrupt
a thread. A supervisor would then wait for ever, or kill the process with no word of why. Once
a stop has begun, a daemon timer ends the process at the limit instead, naming what still runs.
The outbox is SQLite: events it holds are committed, and those not yet delivered go out at the
next start.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import threading
import traceback
from collections.abc import Callable

log = logging.getLogger(__name__)

EXIT_MARGIN_S = 5.0  # after the drain: closing the HTTP server, the state file, the engine
FORCED_EXIT_STATUS = 1


def arm(limit_s: float, exit_process: Callable[[int], object] = os._exit) -> threading.Timer:
    """Starts the timer: `limit_s` from now, the process exits with FORCED_EXIT_STATUS unless it
    has ended by itself (the timer's thread is a daemon, so it never holds the exit)."""
    timer = threading.Timer(limit_s, _force_exit, args=(limit_s, exit_process))
    timer.name = "hard-stop"
    timer.daemon = True
    timer.start()
    return timer


def still_running() -> list[str]:
    """The threads that would hold the exit (not daemons, not this one), each with where it is."""
    frames = sys._current_frames()
    current = threading.current_thread()
    found = []
    for thread in threading.enumerate():
        if thread.daemon or thread is current or thread is threading.main_thread():
            continue
        frame = frames.get(thread.ident or -1)
        where = ""
        if frame is not None:
            last = traceback.extract_stack(frame, limit=1)[-1]
            where = f" in {last.name} ({os.path.basename(last.filename)}:{last.lineno})"
        found.append(f"{thread.name}{where}")
    return found


def _force_exit(limit_s: float, exit_process: Callable[[int], object]) -> None:
    busy = still_running()
    log.error(
        "the stop did not end the process within %.0f s (%s); exiting without waiting: events "
        "not yet delivered stay in the outbox for the next start",
        limit_s,
        "still running: " + "; ".join(busy) if busy else "the main thread is still busy",
    )
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):  # closed or gone: nothing more to say
            stream.flush()
    exit_process(FORCED_EXIT_STATUS)
