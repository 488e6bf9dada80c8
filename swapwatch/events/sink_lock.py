"""One deliverer per sink of an outbox: an exclusive lock, beside the outbox, that a process
holds while it delivers to a sink.

A sink's events go out in outbox order, one at a time, from its cursor. Two processes delivering
the same sink of one outbox (the service, and `swapwatch events deliver` started beside it)
would each send from the cursor: the receiver would see events twice and out of order. The lock
is an `flock` on a file named after the sink, so the kernel lets it go with the process, however
that ends.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
from pathlib import Path

from swapwatch.events.errors import OutboxError


class SinkBusy(OutboxError):
    """Another process is delivering this sink of this outbox."""


class SinkLock:
    """Held from `acquire` until `release` (or the process's end)."""

    def __init__(self, outbox: Path, sink: str) -> None:
        digest = hashlib.sha256(sink.encode()).hexdigest()[:16]
        self.path = outbox.with_name(f"{outbox.name}.delivering") / f"{digest}.lock"
        self.outbox = outbox
        self.sink = sink
        self._fd: int | None = None

    def acquire(self) -> None:
        try:
            self.path.parent.mkdir(exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise OutboxError(f"cannot lock sink {self.sink} of {self.outbox}: {exc}") from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_holder(fd)
            os.close(fd)
            raise SinkBusy(
                f"sink {self.sink} of {self.outbox} is being delivered by another process"
                f"{f' (pid {holder})' if holder else ''}: stop it first, or deliver another sink"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd

    def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            with contextlib.suppress(OSError):
                fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)


def _read_holder(fd: int) -> str:
    try:
        return os.pread(fd, 32, 0).decode(errors="replace").strip()
    except OSError:
        return ""
