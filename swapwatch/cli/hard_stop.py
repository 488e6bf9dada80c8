"""The last resort of a stop: end the process when its drain has not ended it in time.

`limits.drain_timeout_s` is "the time to finish, in all", but a thread stuck for good (a signal
plugin or an engine that never returns, a sink blocked in a call without a timeout) would hold
the process past it: Python joins its worker threads before it exits, and no stop can interrupt
a thread. A supervisor would then wait for ever, or kill the process with no word of why. Once
a stop has begun, a daemon timer ends the process at a limit instead, naming what still runs.
The outbox is SQLite: events it holds are committed, and those not yet delivered go out at the
next start.

`scan`, `watch` and `events deliver` arm the same timer at their first stop signal, when they run
as the process's own command (not inside a caller's program, which the exit would end too).
"""

from __future__ import annotations

import contextlib
import faulthandler
import logging
import os
import sys
import sysconfig
import threading
import traceback
from collections.abc import Callable
from types import FrameType

log = logging.getLogger(__name__)

# After the drain: a stream's analyzer closing (1 s), requests still in flight (2 s), the
# engine's or the Ray connection's close, with room to spare on a loaded machine.
EXIT_MARGIN_S = 10.0
# A command's stop after its drain: the analyzer's close (1 s) and the engine's, or the sinks'
# (each bounded by the dispatcher), with room to spare on a loaded machine.
COMMAND_EXIT_MARGIN_S = 5.0
# Once the event loop has ended, only the interpreter's joins of worker threads are left.
JOIN_LIMIT_S = 2.0
FORCED_EXIT_STATUS = 1
# Should the timer's own thread be unable to run (a lock it needs held for good), faulthandler
# (no lock, no GIL needed) ends the process this much later, with every thread's stack.
BACKSTOP_S = 2.0

_STDLIB = sysconfig.get_paths()["stdlib"]


def arm(
    limit_s: float, since: str, exit_process: Callable[[int], object] = os._exit
) -> threading.Timer:
    """Starts the timer: `limit_s` from now, the process exits with FORCED_EXIT_STATUS unless it
    has ended by itself (the timer's thread is a daemon, so it never holds the exit). `since`
    says from when, for the log ("the stop began")."""
    timer = threading.Timer(
        limit_s, _force_exit, args=(f"{limit_s:g} s after {since}", exit_process)
    )
    timer.name = "hard-stop"
    timer.daemon = True
    timer.start()
    if exit_process is os._exit:
        faulthandler.dump_traceback_later(limit_s + BACKSTOP_S, exit=True)
    return timer


def arm_at_stop(limit_s: float) -> Callable[[], None]:
    """What a command calls at its first stop signal: arms the timer for `limit_s`, once."""
    armed: list[threading.Timer] = []

    def stop_began() -> None:
        if not armed:
            armed.append(arm(limit_s, since="the stop began"))

    return stop_began


def still_running() -> list[str]:
    """The threads that would hold the exit (the main thread and those not daemons, but not
    this one), each with the innermost place in its stack outside Python's own library."""
    frames = sys._current_frames()
    current = threading.current_thread()
    found = []
    for thread in threading.enumerate():
        if thread is current or (thread.daemon and thread is not threading.main_thread()):
            continue
        frame = frames.get(thread.ident or -1)
        found.append(f"{thread.name}{_where(frame)}")
    return found


def _where(frame: FrameType | None) -> str:
    if frame is None:
        return ""
    stack = traceback.extract_stack(frame)
    outside = [entry for entry in stack if not entry.filename.startswith(_STDLIB)]
    last = (outside or stack)[-1]
    return f" in {last.name} ({os.path.basename(last.filename)}:{last.lineno})"


def _force_exit(when: str, exit_process: Callable[[int], object]) -> None:
    try:
        busy = still_running()
        log.error(
            "the process had not ended %s (still running: %s); exiting without waiting: "
            "events not yet delivered stay in the outbox for the next start",
            when,
            "; ".join(busy) or "nothing known",
        )
        logging.shutdown()
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(OSError, ValueError):  # closed or gone: nothing to say
                stream.flush()
    finally:
        exit_process(FORCED_EXIT_STATUS)
