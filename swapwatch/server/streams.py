"""Streams of the service: each one a `stream.worker.StreamWorker`, supervised here.

A stream owns its source, its face tracker and its per-track decisions; it shares only the
batched engine. Whatever goes wrong inside one stream (a dead source, a decoder error, a bug)
ends in that stream's status and events, never in another stream or in the service.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from swapwatch.cluster.push import PushListen
from swapwatch.engines.base import Engine
from swapwatch.errors import ConfigError
from swapwatch.faces.quality import QualityConfig
from swapwatch.fusion import DecisionConfig, Policy
from swapwatch.server.metrics import ServiceMetrics, StreamObserver
from swapwatch.stream.assembly import AnalysisSettings, build_analyzer
from swapwatch.stream.lifecycle import StreamState
from swapwatch.stream.pipeline import FrameResult, StreamAnalyzer
from swapwatch.stream.report import worker_report
from swapwatch.stream.sink import EventSink
from swapwatch.stream.source import FrameSource, redact_url
from swapwatch.stream.status import FPS_WINDOW_SECONDS, LiveFigures, RateMeter, WorkerStatus
from swapwatch.stream.worker import StreamWorker, WorkerConfig

log = logging.getLogger(__name__)

__all__ = [
    "FPS_WINDOW_SECONDS",
    "ManagedStream",
    "RateMeter",
    "ServiceStream",
    "SourceFactory",
    "StreamPlacer",
    "StreamSpec",
    "StreamState",
    "check_stream_id",
]

STREAM_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")

SourceFactory = Callable[[], FrameSource]


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


class ManagedStream(Protocol):
    """A stream as the manager holds it: run here (`ServiceStream`) or on a cluster."""

    spec: StreamSpec

    @property
    def state(self) -> StreamState: ...

    @property
    def done(self) -> bool: ...

    @property
    def ended(self) -> bool:
        """Whether its state is final (ended, failed, stopped): it may still be closing its
        models, until `done`."""
        ...

    def start(self) -> None: ...

    async def settle(self, timeout: float) -> None:
        """Once `ended`, wait (at most `timeout` s) until it is `done`."""
        ...

    async def stop(self, timeout: float = 10.0, reason: str = "stopped") -> None: ...

    def live(self) -> LiveFigures:
        """Its current rates, latency and faces."""
        ...

    def to_json(self) -> dict[str, Any]: ...


class StreamPlacer(Protocol):
    """Runs streams somewhere other than this process (`server.cluster_streams`)."""

    def stream(
        self,
        spec: StreamSpec,
        source: SourceFactory | PushListen,
        analysis: AnalysisSettings,
        max_size: tuple[int, int],
        backoff: tuple[float, float],
        sink: EventSink,
        on_finished: Callable[[], None],
        on_refused: Callable[[str], None],
    ) -> ManagedStream:
        """A stream reading `source`, or the RTMP push ingest it opens where it runs."""

    async def ingest_address(self, stream: ManagedStream, timeout: float) -> str:
        """`rtmp://HOST:PORT/live` where the push ingest of `stream` listens, once it does
        (TimeoutError after `timeout` s; IngestGone when the stream is stopped or ends
        first)."""


class IngestGone(ConfigError):
    """A push stream was stopped (deleted, the service shutting down) or ended before its
    ingest opened."""


class ServiceStream:
    """One stream of the service: its worker, the task running it, and its HTTP status."""

    def __init__(
        self,
        spec: StreamSpec,
        source_factory: SourceFactory,
        engine: Engine,
        decision: DecisionConfig,
        metrics: ServiceMetrics,
        sink: EventSink,
        max_size: tuple[int, int],
        backoff: tuple[float, float],
        on_result: Callable[[FrameResult], None] | None = None,
        signals: Sequence[str] = (),
        quality: QualityConfig | None = None,
        on_finished: Callable[[], None] | None = None,
        score_past_pose_gate: bool = False,
    ) -> None:
        self.spec = spec
        observer = StreamObserver(metrics, spec.stream_id)
        settings = AnalysisSettings(
            decision=decision,
            quality=quality,
            signals=tuple(signals),
            score_past_pose_gate=score_past_pose_gate,
        )

        def analyzer() -> StreamAnalyzer:
            return build_analyzer(engine, settings, observer.stage_timer())

        self.worker = StreamWorker(
            WorkerConfig(
                spec.stream_id, reconnect=spec.reconnect, backoff=backoff, max_size=max_size
            ),
            source_factory,
            analyzer,
            sink,
            observer,
            on_result,
            on_finished=on_finished,  # its source ended or failed for good: not resumed
        )
        self._task: asyncio.Task[None] | None = None

    @property
    def status(self) -> WorkerStatus:
        return self.worker.status

    @property
    def state(self) -> StreamState:
        return self.worker.state

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(
            self._supervise(), name=f"stream {self.spec.stream_id}"
        )

    @property
    def done(self) -> bool:
        return self._task is None or self._task.done()

    @property
    def ended(self) -> bool:
        return self.worker.finished

    async def settle(self, timeout: float) -> None:
        """See `ManagedStream.settle`."""
        if self.ended:
            await wait_for_task(self._task, timeout)

    async def stop(self, timeout: float = 10.0, reason: str = "stopped") -> None:
        """See `StreamWorker.stop`."""
        # The service's engine outlives its streams: a stuck analysis is left, not waited for.
        await self.worker.stop(self._task, timeout, reason, leave_stuck_analysis=True)

    async def _supervise(self) -> None:
        try:
            await self.worker.run()
        except Exception:  # isolation: a bug ends this stream (recorded), not the service
            log.error("stream %s ended by an internal error", self.spec.stream_id)

    def live(self) -> LiveFigures:
        self.worker.sync_counters()
        return self.worker.status.live()

    def to_json(self) -> dict[str, Any]:
        video = self.worker.status.video
        report = worker_report(self.worker)
        return {
            "id": self.spec.stream_id,
            "kind": self.spec.kind,
            "url": video.url if video else redact_url(self.spec.url),
            "ingest_url": self.spec.ingest_url,
            "policy": self.spec.policy.value,
            **report,
        }


async def wait_for_task(task: asyncio.Task[None] | None, timeout: float) -> None:
    """Wait for `task` to end, at most `timeout` s, neither cancelling it nor raising what it
    raised."""
    if task is not None and not task.done():
        await asyncio.wait({task}, timeout=timeout)


def check_stream_id(stream_id: str) -> str:
    if not STREAM_ID.fullmatch(stream_id):
        raise ConfigError(
            "stream id must be 1-64 letters, digits, '_', '.' or '-', starting with a letter "
            "or digit"
        )
    return stream_id
