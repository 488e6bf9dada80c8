"""Streams of the service: one worker per stream, supervised, isolated, reconnecting.

A worker owns its source, its face tracker and its per-track decisions; it shares only the
batched engine. Whatever goes wrong inside one worker (a dead source, a decoder error, a bug)
ends in that worker's status and events, never in another stream or in the service.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import re
import time
import uuid
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from swapwatch.engines.base import Engine
from swapwatch.errors import (
    ConfigError,
    EndOfStream,
    NoVideoStream,
    SourceError,
    SwapwatchError,
    UnsupportedSource,
)
from swapwatch.events.emit import alarm_evidence
from swapwatch.faces.analyzer import FaceAnalyzer
from swapwatch.faces.quality import QualityConfig
from swapwatch.fusion import AlarmChange, DecisionConfig, Policy
from swapwatch.native_logs import native_stderr_silenced
from swapwatch.server.metrics import LiveFigures, ServiceMetrics, StageMetricsTimer
from swapwatch.stream.frames import VideoInfo
from swapwatch.stream.pipeline import FrameResult, StreamAnalyzer, extra_signals
from swapwatch.stream.source import FrameSource, redact_url

log = logging.getLogger(__name__)

STREAM_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
STABLE_RUN_SECONDS = 10.0  # a source that ran this long resets the reconnect backoff
FPS_WINDOW_SECONDS = 2.0
SOURCE_CLOSE_GRACE_S = 1.0  # how long a stop waits for a source's decode thread to let go


class StreamState(StrEnum):
    STARTING = "starting"
    RUNNING = "running"
    RECONNECTING = "reconnecting"
    ENDED = "ended"  # a file or a pushed stream came to its end
    FAILED = "failed"  # cannot go on (refused, too large, unsupported)
    STOPPED = "stopped"  # removed through the API or at shutdown


@dataclass(slots=True)
class TrackStatus:
    track_id: int
    score: float = 0.0  # display probability (EMA)
    alarm: bool = False
    frames_scored: int = 0
    last_seen: float = 0.0
    skip_reason: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "track_id": self.track_id,
            "score": round(self.score, 4),
            "verdict": "fake" if self.alarm else "real" if self.frames_scored else "unknown",
            "alarm": self.alarm,
            "frames_scored": self.frames_scored,
            "skip_reason": self.skip_reason,
        }


class RateMeter:
    """Events per second over a short sliding window, up to the time it is read: when the
    updates stop (a frozen or reconnecting feed), the rate falls to 0 within `window` s."""

    def __init__(self, window: float = FPS_WINDOW_SECONDS) -> None:
        self.window = window
        self._marks: deque[tuple[float, int]] = deque()

    def update(self, total: int, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        self._marks.append((now, total))
        while len(self._marks) > 2 and now - self._marks[0][0] > self.window:
            self._marks.popleft()

    def rate(self, now: float | None = None) -> float:
        now = time.monotonic() if now is None else now
        if len(self._marks) < 2 or now - self._marks[-1][0] >= self.window:
            return 0.0
        (t0, n0), (_, n1) = self._marks[0], self._marks[-1]
        return (n1 - n0) / (now - t0) if now > t0 else 0.0


SourceFactory = Callable[[], FrameSource]
EventSink = Callable[[str, str, dict[str, Any]], None]  # (run, event type, payload)


@dataclass(slots=True)
class StreamSpec:
    stream_id: str
    url: str  # what the source reads (redacted in status)
    kind: str  # "pull", "rtmp" (pushed to us), "webrtc", "nginx-rtmp" (pulled from the relay)
    policy: Policy
    live: bool
    reconnect: bool  # pulls reconnect; a push or a browser session ends when its sender stops
    ingest_url: str | None = None  # where a publisher pushes (rtmp kind)
    ingest_port: int | None = None  # the port this stream's RTMP ingest listens on


@dataclass(slots=True)
class StreamStatus:
    state: StreamState = StreamState.STARTING
    created: float = field(default_factory=time.time)
    video: VideoInfo | None = None
    frames_in: int = 0
    frames_analysed: int = 0
    dropped: int = 0
    faces: int = 0
    alarms_raised: int = 0
    reconnects: int = 0
    last_error: str | None = None
    tracks: dict[int, TrackStatus] = field(default_factory=dict)
    fps_in: RateMeter = field(default_factory=RateMeter)
    fps_analysed: RateMeter = field(default_factory=RateMeter)
    latency_ms: float | None = None  # of the latest analysed frame
    analysed_at: float | None = None  # time.monotonic() when it was analysed
    # The current (or last) run: one per connection of the source; a new start is a new run.
    run: str | None = None

    def live(self, now: float | None = None) -> LiveFigures:
        """The figures of the frames of the last FPS_WINDOW_SECONDS; without frames in it
        (frozen, reconnecting, ended), 0 fps, no latency and no faces."""
        now = time.monotonic() if now is None else now
        fresh = self.analysed_at is not None and now - self.analysed_at < FPS_WINDOW_SECONDS
        return LiveFigures(
            fps_in=self.fps_in.rate(now),
            fps_analysed=self.fps_analysed.rate(now),
            latency_ms=self.latency_ms if fresh else None,
            faces=self.faces if fresh else 0,
        )


class StreamWorker:
    """Runs one stream until it ends, fails or is stopped."""

    def __init__(
        self,
        spec: StreamSpec,
        source_factory: SourceFactory,
        engine: Engine,
        decision: DecisionConfig,
        metrics: ServiceMetrics,
        emit: EventSink,
        max_size: tuple[int, int],
        backoff: tuple[float, float],
        on_result: Callable[[FrameResult], None] | None = None,
        signals: Sequence[str] = (),
        quality: QualityConfig | None = None,
        on_finished: Callable[[], None] | None = None,
    ) -> None:
        self.spec = spec
        self._on_finished = on_finished  # called when the stream ends or fails by itself
        self._signals = tuple(signals)
        self._quality = quality  # None: the analyzer's default gate
        self.status = StreamStatus()
        self._source_factory = source_factory
        self._engine = engine
        self._decision = decision
        self._metrics = metrics
        self._sink = emit
        self._max_size = max_size
        self._backoff = backoff
        self._on_result = on_result
        self._task: asyncio.Task[None] | None = None
        self._source: FrameSource | None = None
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"s-{spec.stream_id}")
        self._analyzer: StreamAnalyzer | None = None
        self._stopping = False

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(
            self._run(), name=f"stream {self.spec.stream_id}"
        )

    @property
    def done(self) -> bool:
        return self._task is None or self._task.done()

    async def stop(self, timeout: float = 10.0, reason: str = "stopped") -> None:
        """Stop reading, let the frame in analysis finish, release everything, all within
        `timeout` s (a source that does not let go in time is left to its daemon thread); a
        stream still live ends with a `stream.ended` event giving `reason`."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        self._stopping = True
        if self._source is not None:
            # A source blocked in a read (a frozen feed) lets go only at its read timeout: it is
            # not waited for longer than this, its daemon thread closes it in the background.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._source.aclose(), min(timeout, SOURCE_CLOSE_GRACE_S))
        if self._task is not None and not self._task.done():
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, TimeoutError):
                await asyncio.wait_for(asyncio.shield(self._task), deadline - loop.time())
        if self.status.state not in (StreamState.ENDED, StreamState.FAILED, StreamState.STOPPED):
            self.status.state = StreamState.STOPPED
            self._emit("stream.ended", {"reason": reason})
        await asyncio.get_running_loop().run_in_executor(self._executor, self._close_analyzer)
        self._executor.shutdown(wait=False)

    def _close_analyzer(self) -> None:
        if self._analyzer is not None:
            with native_stderr_silenced(True):
                self._analyzer.close()
            self._analyzer = None

    def _build_analyzer(self) -> None:
        """Runs in the stream's one executor thread and keeps what it builds there, so that a
        stop() during the build still closes it: its close is queued behind the build."""
        timer = StageMetricsTimer(self._metrics)
        with native_stderr_silenced(True):
            faces = FaceAnalyzer(
                crop_size=self._engine.info.input_size,
                quality=self._quality,
                timer=timer,
                quiet=True,
            )
        try:
            signals = extra_signals(self._signals)
        except BaseException:
            faces.close()
            raise
        self._analyzer = StreamAnalyzer(self._engine, self._decision, faces, timer, signals)

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        sid = self.spec.stream_id
        attempt = 0
        self._metrics.active_streams.inc()
        try:
            await loop.run_in_executor(self._executor, self._build_analyzer)
            while not self._stopping:
                started = time.monotonic()
                try:
                    await self._run_source()
                    if self._stopping:  # stop() closed the source and records the end
                        return
                    if not self.spec.reconnect:
                        self.status.state = StreamState.ENDED
                        self._emit("stream.ended", {"reason": "end of stream"})
                        return
                    # A live source that ends (camera restarted, publisher gone) comes back.
                    self._retry_error("the source ended")
                except SourceError as exc:
                    if self._stopping:  # the source failed because stop() closed it
                        return
                    self.status.last_error = str(exc)
                    self._metrics.errors.labels(type(exc).__name__).inc()
                    if not self.spec.reconnect or _permanent(exc):
                        self.status.state = StreamState.FAILED
                        self._emit("stream.error", {"error": str(exc), "final": True})
                        return
                    self._retry_error(str(exc))
                if time.monotonic() - started > STABLE_RUN_SECONDS:
                    attempt = 0
                delay = reconnect_delay(attempt, *self._backoff)
                attempt += 1
                self.status.state = StreamState.RECONNECTING
                self.status.reconnects += 1
                self._metrics.reconnects.labels(sid).inc()
                log.info("stream %s: reconnecting in %.1fs", sid, delay)
                await asyncio.sleep(delay)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # isolation: a bug ends this stream, not the service
            log.exception("stream %s failed", sid)
            self.status.state = StreamState.FAILED
            self.status.last_error = f"internal error: {exc}"
            self._metrics.errors.labels("internal").inc()
            self._emit("stream.error", {"error": self.status.last_error, "final": True})
        finally:
            self._metrics.active_streams.dec()
            if not self._stopping:  # ended by itself: release its face models now
                self._executor.submit(self._close_analyzer)
                if self._on_finished is not None:
                    self._on_finished()

    def _emit(self, kind: str, payload: dict[str, Any]) -> None:
        """Report an event of the current run; `stream.started` begins a new run, and so does
        the first event of a stream that never started."""
        if kind == "stream.started" or self.status.run is None:
            self.status.run = str(uuid.uuid4())
        self._sink(self.status.run, kind, payload)

    def _retry_error(self, error: str) -> None:
        """A failure that will be retried: an event when the stream goes from running (or
        starting) to reconnecting, not one per failed try; the status keeps the latest error."""
        self.status.last_error = error
        if self.status.state is not StreamState.RECONNECTING:
            self._emit("stream.error", {"error": error, "final": False})

    async def _run_source(self) -> None:
        loop = asyncio.get_running_loop()
        source = self._source_factory()
        self._source = source
        status = self.status
        try:
            info = await source.start()
            max_w, max_h = self._max_size
            if info.width > max_w or info.height > max_h:
                raise FrameTooLarge(
                    f"{info.width}x{info.height} is larger than the allowed {max_w}x{max_h}"
                )
            status.video = info
            status.state = StreamState.RUNNING
            self._emit(
                "stream.started",
                {"width": info.width, "height": info.height, "codec": info.codec, "fps": info.fps},
            )
            analyzer = self._analyzer
            assert analyzer is not None
            sid = self.spec.stream_id
            frames_in = self._metrics.frames_in.labels(sid)
            analysed = self._metrics.frames_analysed.labels(sid)
            dropped = self._metrics.frames_dropped.labels(sid)
            counted_in = counted_dropped = 0
            while True:
                try:
                    frame = await source.recv()
                except EndOfStream:
                    return
                if frame.image.shape[1] > max_w or frame.image.shape[0] > max_h:
                    raise FrameTooLarge(
                        f"a {frame.image.shape[1]}x{frame.image.shape[0]} frame "
                        f"is larger than the allowed {max_w}x{max_h}"
                    )
                result = await loop.run_in_executor(self._executor, analyzer.analyse, frame)
                counters = source.counters
                frames_in.inc(counters.decoded - counted_in)
                dropped.inc(counters.dropped - counted_dropped)
                counted_in, counted_dropped = counters.decoded, counters.dropped
                analysed.inc()
                self._record(result, counters.decoded, counters.dropped)
        finally:
            self._source = None
            await source.aclose()

    def _record(self, result: FrameResult, decoded: int, dropped: int) -> None:
        status = self.status
        now = time.monotonic()
        status.frames_in = decoded
        status.dropped = dropped
        status.frames_analysed += 1
        status.fps_in.update(decoded, now)
        status.fps_analysed.update(status.frames_analysed, now)
        status.faces = len(result.faces)
        latency = now - result.arrival
        status.latency_ms = latency * 1000
        status.analysed_at = now
        self._metrics.frame_latency.observe(latency)
        seen = set()
        for face in result.faces:
            track = status.tracks.get(face.track_id)
            if track is None:
                track = status.tracks[face.track_id] = TrackStatus(face.track_id)
            seen.add(face.track_id)
            track.last_seen = result.time
            track.skip_reason = face.skip_reason
            if face.update is not None:
                track.score = face.update.score
                track.alarm = face.update.alarm
                track.frames_scored += 1
                self._metrics.scores.observe(face.update.score)
        # Forget tracks the tracker has dropped for good (it keeps lost ones ~1 s).
        for track_id in [t for t in status.tracks if t not in seen]:
            if result.time - status.tracks[track_id].last_seen > 5.0:
                del status.tracks[track_id]
        for alert in result.alerts:
            raised = alert.type is AlarmChange.RAISED
            status.alarms_raised += raised
            self._metrics.alarms.labels(alert.type.value).inc()
            self._emit(
                "alert.raised" if raised else "alert.cleared",
                {
                    "track": alert.track_id,
                    "media_time": round(alert.time, 3),
                    "score": round(alert.score, 4),
                    "evidence": alarm_evidence(alert, self._decision),
                },
            )
        if self._on_result is not None:
            self._on_result(result)

    def to_json(self) -> dict[str, Any]:
        s = self.status
        video = s.video
        live = s.live()
        return {
            "id": self.spec.stream_id,
            "kind": self.spec.kind,
            "url": video.url if video else redact_url(self.spec.url),
            "ingest_url": self.spec.ingest_url,
            "policy": self.spec.policy.value,
            "state": s.state.value,
            "run": s.run,
            "created": round(s.created, 3),
            "video": None
            if video is None
            else {
                "width": video.width,
                "height": video.height,
                "codec": video.codec,
                "fps": video.fps,
            },
            "fps_in": round(live.fps_in, 2),
            "fps_analysed": round(live.fps_analysed, 2),
            "frames_in": s.frames_in,
            "frames_analysed": s.frames_analysed,
            "dropped": s.dropped,
            "faces": live.faces,
            "latency_ms": None if live.latency_ms is None else round(live.latency_ms, 1),
            "alarms_raised": s.alarms_raised,
            "alarm": any(t.alarm for t in s.tracks.values()),
            "reconnects": s.reconnects,
            "last_error": s.last_error,
            "tracks": [t.to_json() for t in sorted(s.tracks.values(), key=lambda t: t.track_id)],
        }


class FrameTooLarge(SourceError):
    """Frames above the configured maximum resolution: refused, not retried."""


def _permanent(exc: SwapwatchError) -> bool:
    return isinstance(exc, FrameTooLarge | UnsupportedSource | NoVideoStream)


def reconnect_delay(attempt: int, initial: float, maximum: float) -> float:
    """Exponential backoff with jitter: a random delay in [cap/2, cap], cap = initial * 2^n."""
    cap = min(maximum, initial * (2**attempt))
    return random.uniform(cap / 2, cap)


def check_stream_id(stream_id: str) -> str:
    if not STREAM_ID.fullmatch(stream_id):
        raise ConfigError(
            "stream id must be 1-64 letters, digits, '_', '.' or '-', starting with a letter "
            "or digit"
        )
    return stream_id
