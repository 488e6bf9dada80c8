"""A bounded hand-off from a worker thread to the event loop, with a named drop policy."""

from __future__ import annotations

import asyncio
import contextlib
import enum
import threading
from collections import deque
from typing import Generic, TypeVar

T = TypeVar("T")


class DropPolicy(enum.Enum):
    """What the producer does when the consumer has not taken the previous items."""

    KEEP_NEWEST = "keep_newest"  # live: replace the oldest waiting item and count a drop
    WAIT = "wait"  # files: block the producer until there is room; nothing is lost


class HandoffClosed(Exception):
    """The consumer side has gone away; the producer should stop."""


class Handoff(Generic[T]):
    """Thread-to-loop queue. `put` runs in a worker thread, `get` on the event loop."""

    def __init__(self, loop: asyncio.AbstractEventLoop, policy: DropPolicy, capacity: int) -> None:
        if capacity < 1:
            raise ValueError("capacity must be at least 1")
        self._loop = loop
        self._policy = policy
        self._capacity = capacity
        self._items: deque[T] = deque()
        self._lock = threading.Condition()
        self._ready = asyncio.Event()
        self._finished = False  # producer said it has no more items
        self._error: BaseException | None = None
        self._cancelled = False  # consumer stopped listening
        self.dropped = 0

    # Producer side (worker thread) -------------------------------------------------

    def put(self, item: T) -> None:
        with self._lock:
            if self._policy is DropPolicy.WAIT:
                while len(self._items) >= self._capacity and not self._cancelled:
                    self._lock.wait(timeout=0.5)
            elif len(self._items) >= self._capacity:
                self._items.popleft()
                self.dropped += 1
            if self._cancelled:
                raise HandoffClosed
            self._items.append(item)
        self._wake()

    def finish(self, error: BaseException | None = None) -> None:
        """No more items will come; `error` (if any) is raised by `get` once items are drained."""
        with self._lock:
            self._finished = True
            self._error = error
        self._wake()

    @property
    def cancelled(self) -> bool:
        return self._cancelled

    def _wake(self) -> None:
        with contextlib.suppress(RuntimeError):  # a closed loop: nobody is waiting any more
            self._loop.call_soon_threadsafe(self._ready.set)

    # Consumer side (event loop) ----------------------------------------------------

    async def get(self) -> T:
        """The next item; raises the producer's error, or `EOFError` when it finished cleanly."""
        while True:
            with self._lock:
                if self._items:
                    item = self._items.popleft()
                    self._lock.notify()
                    return item
                if self._finished:
                    if self._error is not None:
                        raise self._error
                    raise EOFError
                self._ready.clear()
            await self._ready.wait()

    def cancel(self) -> None:
        """The consumer will not read again: unblock and stop the producer."""
        with self._lock:
            self._cancelled = True
            self._items.clear()
            self._lock.notify_all()
