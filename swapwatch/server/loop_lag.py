"""How late the event loop runs what is due: every stream's I/O, each request and each delivery
waits behind whatever holds the loop, so its delay is the service's first sign of CPU work done
in the wrong place or of a machine too loaded for its streams."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

DEFAULT_INTERVAL_S = 0.25


class LoopLagMonitor:
    """A task that sleeps `interval_s` at a time and reports how much longer each sleep took
    (seconds, never negative) to `observe`."""

    def __init__(
        self, observe: Callable[[float], None], interval_s: float = DEFAULT_INTERVAL_S
    ) -> None:
        if not interval_s > 0:
            raise ValueError(f"interval_s must be positive, got {interval_s}")
        self._observe = observe
        self._interval_s = interval_s
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="loop-lag")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            due = loop.time() + self._interval_s
            await asyncio.sleep(self._interval_s)
            self._observe(max(0.0, loop.time() - due))
