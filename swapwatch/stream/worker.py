"""One stream worker: a source and a policy in, typed events out. `scan`, `watch` and the
service all run a stream through it.

The worker decodes in its source's thread and analyses in one thread of its own (MediaPipe and
LiteRT stay on one thread), folds each frame's result into its status, turns alarm changes and
its own lifecycle into events for its sink, and reports to an observer for metrics. A live
source that drops or ends is opened again with backoff, under one media clock. `state()` is
everything a worker restored elsewhere needs to go on with the same tracks, decisions and
event ids.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import random
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from swapwatch.errors import (
    EndOfStream,
    NoVideoStream,
    SourceError,
    SwapwatchError,
    UnsupportedSource,
)
from swapwatch.events.emit import alarm_evidence
from swapwatch.events.model import EventType
from swapwatch.events.run import RunEvents
from swapwatch.fusion import AlarmChange
from swapwatch.stream.assembly import close_analyzer
from swapwatch.stream.clock import MediaClock
from swapwatch.stream.frames import Frame, VideoInfo
from swapwatch.stream.lifecycle import Lifecycle, StreamState
from swapwatch.stream.observer import NullObserver, WorkerObserver
from swapwatch.stream.pipeline import FrameResult, StreamAnalyzer
from swapwatch.stream.sink import EventSink, NullSink
from swapwatch.stream.source import FrameSource
from swapwatch.stream.status import WorkerStatus
from swapwatch.stream.tracks import TRACK_TIMEOUT_S, TrackTable

log = logging.getLogger(__name__)

STATE_VERSION = 1
STABLE_RUN_SECONDS = 10.0  # a source that ran this long resets the reconnect backoff
SOURCE_CLOSE_GRACE_S = 1.0  # how long a stop waits for a source's decode thread to let go
RELEASE_GRACE_S = 1.0  # the least a stop gives the analyzer to close, after the frame in analysis

SourceFactory = Callable[[], FrameSource]
AnalyzerFactory = Callable[[], StreamAnalyzer]  # called in the worker's analysis thread
ResultCallback = Callable[[FrameResult], None]


@dataclass(frozen=True, slots=True)
class WorkerConfig:
    stream_id: str
    reconnect: bool = False  # open the source again when it ends or fails (live pulls)
    backoff: tuple[float, float] = (1.0, 30.0)  # first and longest reconnect delay, seconds
    max_size: tuple[int, int] | None = None  # largest frame (width, height) accepted
    started_detail: Mapping[str, Any] = field(default_factory=dict)  # added to stream.started
    quiet: bool = True  # keep the face models' native log lines off stderr when closing
    close_analyzer: bool = True  # False: the analyzer is the caller's, who closes it
    track_timeout: float = TRACK_TIMEOUT_S  # media seconds a track stays in the status
    # Part of every run id: a new one for each new worker, the saved one for a restored one.
    epoch: str | None = None


class FrameTooLarge(SourceError):
    """Frames above the configured maximum resolution: refused, not retried."""


class WorkerBusy(SwapwatchError):
    """`state()` was asked while a frame was being analysed: use `checkpoint()`."""


def permanent(exc: SwapwatchError) -> bool:
    """A source error that trying again cannot cure."""
    return isinstance(exc, FrameTooLarge | UnsupportedSource | NoVideoStream)


def reconnect_delay(attempt: int, initial: float, maximum: float) -> float:
    """Exponential backoff with jitter: a random delay in [cap/2, cap], cap = initial * 2^n."""
    cap = min(maximum, initial * (2**attempt))
    return random.uniform(cap / 2, cap)


class StreamWorker:
    """Runs one stream until it ends, fails or is stopped."""

    def __init__(
        self,
        config: WorkerConfig,
        source_factory: SourceFactory,
        analyzer_factory: AnalyzerFactory,
        sink: EventSink | None = None,
        observer: WorkerObserver | None = None,
        on_result: ResultCallback | None = None,
        end_detail: Callable[[], Mapping[str, Any]] | None = None,
        on_open: Callable[[VideoInfo], None] | None = None,
        on_finished: Callable[[], None] | None = None,
    ) -> None:
        """`end_detail` gives the detail of the `stream.ended` of a source that came to its
        end (default: reason `end of stream`); `on_open` hears of each connection opened;
        `on_finished` hears that its source ended or failed for good (not that it was stopped,
        nor that it failed on this side: its analysis could not start, or a bug), as its state
        turns final and before its last event goes out: whoever then sees it ended finds that
        handled, though its models may still be closing."""
        self.config = config
        self.status = WorkerStatus(tracks=TrackTable(config.track_timeout))
        self.error: SwapwatchError | None = None  # why it failed, when a source error did it
        self._source_factory = source_factory
        self._analyzer_factory = analyzer_factory
        self._sink = sink or NullSink()
        self._observer = observer or NullObserver()
        self._on_result = on_result
        self._end_detail = end_detail
        self._on_open = on_open
        self._on_finished = on_finished
        self.finished_by_source = False  # see `on_finished`
        self._lifecycle = Lifecycle()
        self._events = RunEvents(config.stream_id, config.epoch)
        self._clock = MediaClock()
        self._executor = ThreadPoolExecutor(
            max_workers=1, thread_name_prefix=f"s-{config.stream_id}"
        )
        self._analyzer: StreamAnalyzer | None = None
        self._pending_analysis: dict[str, Any] | None = None  # restored, for the analyzer
        self._resume_run = False  # the next connection goes on with the restored run
        self._source: FrameSource | None = None
        self._counted = (0, 0)  # the source's decoded and dropped counts in the status so far
        self._stopping = False
        self._analysing = False
        self._checkpoints: list[asyncio.Future[dict[str, Any]]] = []
        self._released: asyncio.Future[None] | None = None

    # Lifecycle ----------------------------------------------------------------------

    @property
    def state(self) -> StreamState:
        return self._lifecycle.state

    @property
    def stopping(self) -> bool:
        """Whether it was told to stop (rather than ending by itself)."""
        return self._stopping

    @property
    def run_id(self) -> str | None:
        """The current (or last) run: one per connection of the source."""
        return self._events.run

    async def run(self) -> None:
        """Run the stream to its end. Returns when it ended, failed on a source error (see
        `error`) or was stopped; a bug is recorded (`stream.error`) and raised."""
        loop = asyncio.get_running_loop()
        attempt = 0
        self._observer.running(True)
        try:
            try:
                await loop.run_in_executor(self._executor, self._build_analyzer)
            except SwapwatchError as exc:  # a plugin or model that cannot be loaded
                self.error = exc
                self.status.last_error = str(exc)
                self._observer.error(type(exc).__name__)
                self._finish(StreamState.FAILED, _error_detail(exc, final=True), by_source=False)
                return
            while not self._stopping:
                started = time.monotonic()
                try:
                    opened = await self._run_source()
                    if self._stopping:  # stop() closed the source and records the end
                        return
                    if not self.config.reconnect or not opened:
                        detail = self._end_detail() if self._end_detail else None
                        self._finish(StreamState.ENDED, detail or {"reason": "end of stream"})
                        return
                    # A live source that ends (camera restarted, publisher gone) comes back.
                    self._retry_error("the source ended")
                except SourceError as exc:
                    if self._stopping:  # the source failed because stop() closed it
                        return
                    self.status.last_error = str(exc)
                    self._observer.error(type(exc).__name__)
                    if not self.config.reconnect or permanent(exc):
                        self.error = exc
                        self._finish(StreamState.FAILED, _error_detail(exc, final=True))
                        return
                    self._retry_error(str(exc))
                if time.monotonic() - started > STABLE_RUN_SECONDS:
                    attempt = 0
                delay = reconnect_delay(attempt, *self.config.backoff)
                attempt += 1
                if self.state is not StreamState.RECONNECTING:
                    self._lifecycle.move(StreamState.RECONNECTING)
                self.status.reconnects += 1
                self._observer.reconnecting()
                log.info("stream %s: reconnecting in %.1fs", self.config.stream_id, delay)
                await asyncio.sleep(delay)
        except Exception as exc:
            log.exception("stream %s failed", self.config.stream_id)
            self.status.last_error = f"internal error: {exc}"
            self._observer.error("internal")
            if not self._lifecycle.finished:
                detail = {"error": self.status.last_error, "final": True}
                self._finish(StreamState.FAILED, detail, by_source=False)
            raise
        finally:
            self._observer.running(False)
            await asyncio.shield(self._release())

    def abandon(self, reason: str) -> None:
        """A stream that is still live ends now, with a `stream.ended` giving `reason`."""
        self._stopping = True
        if not self._lifecycle.finished:
            self._finish(StreamState.STOPPED, {"reason": reason}, by_source=False)

    async def stop(
        self,
        task: asyncio.Task[None] | None,
        timeout: float = 10.0,
        reason: str = "stopped",
        leave_stuck_analysis: bool = False,
    ) -> None:
        """Stop reading, let the frame in analysis finish, release everything, all within
        `timeout` s (a source that does not let go in time is left to its daemon thread); a
        stream still live ends with a `stream.ended` giving `reason`. `task` runs `run()`.

        `leave_stuck_analysis`: an analysis still busy RELEASE_GRACE_S past `timeout` is left
        running in its thread rather than waited for; for an owner whose engine outlives the
        stream (the service), not for one that closes the engine next."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        self._stopping = True
        if self._source is not None:
            # A source blocked in a read (a frozen feed) lets go only at its read timeout: it is
            # not waited for longer than this, its daemon thread closes it in the background.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._source.aclose(), min(timeout, SOURCE_CLOSE_GRACE_S))
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, TimeoutError):
                await asyncio.wait_for(asyncio.shield(task), max(0.0, deadline - loop.time()))
        self.abandon(reason)
        if not leave_stuck_analysis:
            await self._release()
            return
        try:
            # At least a moment for closing the analyzer, even when the source took the time.
            left = max(RELEASE_GRACE_S, deadline - loop.time())
            await asyncio.wait_for(asyncio.shield(self._release()), left)
        except TimeoutError:
            # A frame whose analysis never returns (a plugin or engine stuck for good) must
            # not hold the rest of the stop; its thread cannot be stopped, only left.
            log.error(
                "stream %s: its analysis did not finish within %.0f s of the stop; left running",
                self.config.stream_id,
                timeout + RELEASE_GRACE_S,
            )

    def _release(self) -> asyncio.Future[None]:
        """Close the analyzer in its own thread (after a build still running there), once."""
        if self._released is None:
            loop = asyncio.get_running_loop()
            self._released = loop.run_in_executor(self._executor, self._close_analyzer)
            self._executor.shutdown(wait=False)
        return self._released

    def _build_analyzer(self) -> None:
        """In the analysis thread, which keeps what it builds: a stop() during the build still
        closes it, its close being queued behind the build."""
        self._analyzer = self._analyzer_factory()
        if self._pending_analysis is not None:
            self._analyzer.restore(self._pending_analysis)
            self._pending_analysis = None

    def _close_analyzer(self) -> None:
        if self._analyzer is not None:
            if self.config.close_analyzer:
                close_analyzer(self._analyzer, self.config.quiet)
            self._analyzer = None

    @property
    def finished(self) -> bool:
        """Whether it ended, failed or was stopped (its release may still be under way)."""
        return self._lifecycle.finished

    def _finish(self, to: StreamState, detail: Mapping[str, Any], by_source: bool = True) -> None:
        self._lifecycle.move(to)
        self.finished_by_source = by_source and not self._stopping
        if self.finished_by_source and self._on_finished is not None:
            try:
                self._on_finished()
            except Exception:  # its end event goes out all the same
                log.exception("stream %s: on_finished failed", self.config.stream_id)
        kind = EventType.STREAM_ERROR if to is StreamState.FAILED else EventType.STREAM_ENDED
        self._sink.publish(self._events.lifecycle(kind, detail))

    def _retry_error(self, error: str) -> None:
        """A failure that will be retried: an event when the stream goes from running (or
        starting) to reconnecting, not one per failed try; the status keeps the latest error."""
        self.status.last_error = error
        if self.state is not StreamState.RECONNECTING:
            self._sink.publish(
                self._events.lifecycle(EventType.STREAM_ERROR, {"error": error, "final": False})
            )

    # One connection -----------------------------------------------------------------

    async def _run_source(self) -> bool:
        """Read one connection of the source to its end; whether it opened."""
        loop = asyncio.get_running_loop()
        source = self._source_factory()
        self._source = source
        self._counted = (0, 0)  # with the source they count: sync_counters may run at any time
        status = self.status
        try:
            try:
                info = await source.start()
            except EndOfStream:  # stopped before it opened
                return False
            self._check_size(info.width, info.height, "")
            analyzer = self._analyzer
            assert analyzer is not None
            analyzer.still_pictures = info.still
            status.video = info
            if self._on_open is not None:
                self._on_open(info)
            self._clock.new_connection()
            self._lifecycle.move(StreamState.RUNNING)
            if self._resume_run:  # a restored worker goes on with its run
                self._resume_run = False
            else:
                self._events.begin_run()
                detail = {
                    **self.config.started_detail,
                    "width": info.width,
                    "height": info.height,
                    "codec": info.codec,
                    "fps": info.fps,
                }
                self._sink.publish(self._events.lifecycle(EventType.STREAM_STARTED, detail))
            while True:
                try:
                    frame = await source.recv()
                except EndOfStream:
                    return True
                self._check_size(frame.image.shape[1], frame.image.shape[0], "a ")
                frame = self._on_worker_clock(frame)
                self._analysing = True
                try:
                    result = await loop.run_in_executor(self._executor, analyzer.analyse, frame)
                finally:
                    self._analysing = False
                self._record(result)
        finally:
            self.sync_counters()  # frames decoded after the last analysed one
            self._source = None
            await source.aclose()

    def _check_size(self, width: int, height: int, article: str) -> None:
        if self.config.max_size is None:
            return
        max_w, max_h = self.config.max_size
        if width > max_w or height > max_h:
            what = f"{article}{width}x{height} frame" if article else f"{width}x{height}"
            raise FrameTooLarge(f"{what} is larger than the allowed {max_w}x{max_h}")

    def _on_worker_clock(self, frame: Frame) -> Frame:
        t = self._clock.map(frame.time)
        return frame if t == frame.time else dataclasses.replace(frame, time=t)

    def sync_counters(self, now: float | None = None) -> None:
        """Bring the decoded and dropped counts up to the source's (on the event loop). Frames
        the rate cap leaves out never reach the loop, so whoever reads the status calls this
        first, or the frames after the last analysed one would be missing from it."""
        source = self._source
        if source is None:
            return
        counters = source.counters
        counted_in, counted_dropped = self._counted
        decoded, dropped = counters.decoded - counted_in, counters.dropped - counted_dropped
        if not decoded and not dropped:
            return
        self._counted = (counters.decoded, counters.dropped)
        status = self.status
        status.frames_in += decoded
        status.dropped += dropped
        status.fps_in.update(status.frames_in, time.monotonic() if now is None else now)
        self._observer.frames(decoded, dropped)

    def _record(self, result: FrameResult) -> None:
        """Fold one analysed frame into the status and the events (on the event loop)."""
        status = self.status
        now = time.monotonic()
        self.sync_counters(now)
        status.frames_analysed += 1
        status.fps_analysed.update(status.frames_analysed, now)
        status.faces = len(result.faces)
        latency = now - result.arrival
        status.latency_ms = latency * 1000
        status.analysed_at = now
        status.tracks.fold(result)
        self._observer.analysed(result, latency)
        decision = self._analyzer.decision_config if self._analyzer is not None else None
        for alert in result.alerts:
            raised = alert.type is AlarmChange.RAISED
            status.alarms_raised += raised
            self._observer.alarm(alert.type)
            event = self._events.alarm(
                EventType.from_alarm(alert.type),
                alert.track_id,
                round(alert.time, 3),
                round(alert.score, 4),
                alarm_evidence(alert, decision),
            )
            self._sink.publish(event)
        if self._on_result is not None:
            self._on_result(result)
        if self._checkpoints:
            state = self.state_now()
            for waiter in self._checkpoints:
                if not waiter.done():
                    waiter.set_result(state)
            self._checkpoints.clear()

    # Checkpoints --------------------------------------------------------------------

    def state_now(self) -> dict[str, Any]:
        """Everything a worker needs to go on from here, as JSON: run and event counters,
        media clock, status counters and tracks, the tracker and each track's decision. Only
        between two frames (from `on_result`, or when no frame is in analysis): else
        `WorkerBusy`, and `checkpoint()` waits for the frame."""
        if self._analysing:
            raise WorkerBusy("a frame is being analysed: take the state between frames")
        analysis = self._analyzer.state() if self._analyzer is not None else None
        return {
            "version": STATE_VERSION,
            "stream_id": self.config.stream_id,
            "events": self._events.state(),
            "clock": self._clock.state(),
            "counters": self.status.counters(),
            "tracks": self.status.tracks.state(),
            "analysis": analysis if analysis is not None else self._pending_analysis,
        }

    async def checkpoint(self) -> dict[str, Any]:
        """The state after the frame in analysis, if any (see `state_now`)."""
        if not self._analysing:
            return self.state_now()
        waiter: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._checkpoints.append(waiter)
        return await waiter

    def restore(self, state: Mapping[str, Any]) -> None:
        """Take up `state_now()` of a worker of the same stream; before `run()`. The first
        connection then goes on with the saved run (no new `stream.started`), so the events
        it repeats keep their ids."""
        if self._analyzer is not None or self._released is not None:
            raise RuntimeError("restore() before run()")
        if state.get("version") != STATE_VERSION:
            raise ValueError(f"unsupported worker state version {state.get('version')!r}")
        if state["stream_id"] != self.config.stream_id:
            raise ValueError(f"a state of stream {state['stream_id']!r}, not of this one")
        self._events = RunEvents.restore(state["events"])
        self._clock.restore(state["clock"])
        self.status.restore_counters(state["counters"])
        self.status.tracks.restore(state["tracks"])
        self._pending_analysis = state["analysis"]
        self._resume_run = self._events.run is not None


def _error_detail(exc: BaseException, final: bool) -> dict[str, Any]:
    return {"error": str(exc), "final": final, "kind": type(exc).__name__}
