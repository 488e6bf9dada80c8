"""Stopping `scan` on SIGINT or SIGTERM alike: the source ends early, so the scan still sums up
what it analysed (a partial result), records its end and drains its events before exiting."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
from collections.abc import Callable, Coroutine, Iterator
from types import FrameType
from typing import Any, TypeVar

from swapwatch.cli import hard_stop
from swapwatch.errors import EndOfStream
from swapwatch.stream.frames import Frame, VideoInfo
from swapwatch.stream.source import FrameSource

T = TypeVar("T")

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Interrupted(EndOfStream):
    """A signal came before the source opened, or a second one came: nothing to sum up. For
    the stream worker, a source that ends before it opens."""


def hard_stop_from_args(args: argparse.Namespace) -> Callable[[], None] | None:
    """For the process's own `scan` or `watch`: at the first signal, the process is given the
    events' `--drain` and a margin to end, then ended naming what holds it (a plugin stuck in
    the analysis would otherwise hold it for ever, and a supervisor would kill it unexplained)."""
    if not args.owns_process:
        return None
    return hard_stop.arm_at_stop(args.drain + hard_stop.COMMAND_EXIT_MARGIN_S)


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """Outside the event loop, SIGTERM raises KeyboardInterrupt as Ctrl-C does.

    Without this, SIGTERM's default action kills the process with no word and no cleanup.
    """
    previous = signal.signal(signal.SIGTERM, _raise_interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _raise_interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


class StoppableSource(FrameSource):
    """Wraps a source; after `stop()` its `recv()` ends the stream as if the media had ended."""

    def __init__(self, inner: FrameSource) -> None:
        self.inner = inner
        self.counters = inner.counters
        self.stopped_by: signal.Signals | None = None
        self._stop = asyncio.Event()

    def stop(self, signum: signal.Signals) -> None:
        if self.stopped_by is None:
            self.stopped_by = signum
        self._stop.set()

    async def start(self) -> VideoInfo:
        info = await self._race(self.inner.start())
        if info is None:
            raise Interrupted
        return info

    async def recv(self) -> Frame:
        frame = await self._race(self.inner.recv())
        if frame is None:
            raise EndOfStream(f"stopped by {self.stopped_by.name if self.stopped_by else 'stop'}")
        return frame

    async def aclose(self) -> None:
        await self.inner.aclose()

    async def _race(self, work: Coroutine[Any, Any, T]) -> T | None:
        """`work`'s result, or None when stopped first (then `work` is cancelled)."""
        task = asyncio.ensure_future(work)
        if self._stop.is_set():
            task.cancel()
        else:
            stopped = asyncio.ensure_future(self._stop.wait())
            try:
                await asyncio.wait({task, stopped}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                stopped.cancel()
                if not task.done():
                    task.cancel()
            if task.done() and not task.cancelled():
                return task.result()  # a frame that arrived with the signal is still analysed
        with contextlib.suppress(asyncio.CancelledError):
            await task
        return None


async def run_until_signalled(
    source: StoppableSource,
    work: Coroutine[Any, Any, T],
    stop_began: Callable[[], None] | None = None,
) -> T:
    """Run `work` (which reads `source`); the first SIGINT/SIGTERM stops the source (and calls
    `stop_began`), a second cancels `work`, which then raises `Interrupted`.

    A source interrupted while opening is not closed: closing waits for its decode thread, which
    may sit in a blocking open (a listen waits for a publisher) for its whole timeout. The thread
    is a daemon and the process is about to exit.
    """
    loop = asyncio.get_running_loop()
    task = asyncio.ensure_future(work)

    def on_signal(signum: signal.Signals) -> None:
        if source.stopped_by is None:
            source.stop(signum)
            if stop_began is not None:
                stop_began()
        else:
            task.cancel()

    previous = {signum: signal.getsignal(signum) for signum in STOP_SIGNALS}
    for signum in STOP_SIGNALS:
        loop.add_signal_handler(signum, on_signal, signum)
    try:
        return await task
    except asyncio.CancelledError:
        raise Interrupted from None
    finally:
        for signum, handler in previous.items():
            loop.remove_signal_handler(signum)
            signal.signal(signum, handler)  # removing reset it to the default, not to ours
