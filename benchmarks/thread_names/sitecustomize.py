"""For benchmarks/stream_threads.py only: gives each Python thread of the process it is loaded
into its name as the OS thread name (first 15 characters), so /proc/PID/task shows which thread
spends the CPU. Threads native code starts from a named thread inherit its name (FFmpeg's
decoder threads count with their stream's decode thread, MediaPipe's with `drishti`)."""

import ctypes
import threading

PR_SET_NAME = 15
_libc = ctypes.CDLL(None)
_bootstrap_inner = threading.Thread._bootstrap_inner  # type: ignore[attr-defined]


def _named(self: threading.Thread) -> None:
    _libc.prctl(PR_SET_NAME, self.name[:15].encode(), 0, 0, 0)
    _bootstrap_inner(self)


threading.Thread._bootstrap_inner = _named  # type: ignore[attr-defined]
