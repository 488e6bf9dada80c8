"""Prometheus metrics of the service, all named `swapwatch_*`, in one registry per service."""

from __future__ import annotations

import contextlib
from collections.abc import Iterable
from typing import Any, Protocol

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from swapwatch.events.delivery import SinkStats
from swapwatch.fusion import AlarmChange
from swapwatch.stream.pipeline import FrameResult
from swapwatch.stream.status import LiveFigures
from swapwatch.timing import StageTimer

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.15, 0.25, 0.5, 1.0, 2.5)
SCORE_BUCKETS = tuple(i / 10 for i in range(1, 11))
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64)
LOOP_LAG_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class DeliverySource(Protocol):
    @property
    def durable(self) -> bool: ...

    def sink_stats(self) -> dict[str, SinkStats]: ...


class DeliveryCollector(Collector):
    """The outbox's health and per-sink delivery counters, read from the events at scrape time."""

    def __init__(self) -> None:
        self.source: DeliverySource | None = None

    def collect(self) -> Iterable[Metric]:
        source = self.source
        up = GaugeMetricFamily(
            "swapwatch_outbox_up", "1 while events are recorded durably in the outbox"
        )
        up.add_metric([], float(source is not None and source.durable))
        families = {
            "delivered": CounterMetricFamily(
                "swapwatch_sink_delivered", "Events delivered, per sink", labels=["sink"]
            ),
            "failed_attempts": CounterMetricFamily(
                "swapwatch_sink_failed_attempts", "Delivery attempts that failed", labels=["sink"]
            ),
            "dead_lettered": CounterMetricFamily(
                "swapwatch_sink_dead_letters", "Events given up (dead letters)", labels=["sink"]
            ),
        }
        backlog = GaugeMetricFamily(
            "swapwatch_sink_backlog",
            "Events in the outbox that a sink has not settled yet (delivered or dead-lettered)",
            labels=["sink"],
        )
        for name, stats in (source.sink_stats() if source is not None else {}).items():
            for field, family in families.items():
                family.add_metric([name], getattr(stats, field))
            backlog.add_metric([name], stats.backlog)
        return [up, *families.values(), backlog]


class LiveSource(Protocol):
    def live_figures(self) -> dict[str, LiveFigures]: ...


class StreamsCollector(Collector):
    """Per-stream gauges read at scrape time, so that a feed that freezes or reconnects shows
    0 fps and no latency instead of the figures of its last frame."""

    def __init__(self) -> None:
        self.source: LiveSource | None = None

    def collect(self) -> Iterable[Metric]:
        labels = ["stream"]
        fps_in = GaugeMetricFamily(
            "swapwatch_stream_fps_in",
            "Frames per second decoded from each stream over the last 2 s (0 when frozen)",
            labels=labels,
        )
        fps_analysed = GaugeMetricFamily(
            "swapwatch_stream_fps_analysed",
            "Frames per second analysed of each stream over the last 2 s",
            labels=labels,
        )
        latency = GaugeMetricFamily(
            "swapwatch_stream_latency_seconds",
            "Arrival to score of each stream's latest frame; absent without a frame in 2 s",
            labels=labels,
        )
        faces = GaugeMetricFamily(
            "swapwatch_tracked_faces",
            "Faces tracked in the latest frame of each stream (0 without a frame in 2 s)",
            labels=labels,
        )
        figures = self.source.live_figures() if self.source is not None else {}
        for stream, live in figures.items():
            fps_in.add_metric([stream], live.fps_in)
            fps_analysed.add_metric([stream], live.fps_analysed)
            faces.add_metric([stream], live.faces)
            if live.latency_ms is not None:
                latency.add_metric([stream], live.latency_ms / 1000)
        return [fps_in, fps_analysed, latency, faces]


class ServiceMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.stage_seconds = Histogram(
            "swapwatch_stage_seconds",
            "Time spent per pipeline stage (detection, landmarks, crop, engine, fusion, analyse)",
            ["stage"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.frame_latency = Histogram(
            "swapwatch_frame_latency_seconds",
            "From a frame's arrival (decoded) to its faces being scored",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.frames_in = Counter(
            "swapwatch_frames_decoded_total", "Frames decoded", ["stream"], registry=r
        )
        self.frames_analysed = Counter(
            "swapwatch_frames_analysed_total", "Frames analysed", ["stream"], registry=r
        )
        self.frames_dropped = Counter(
            "swapwatch_frames_dropped_total",
            "Live frames dropped because analysis lagged",
            ["stream"],
            registry=r,
        )
        self.active_streams = Gauge(
            "swapwatch_active_streams", "Streams being analysed", registry=r
        )
        self.streams = StreamsCollector()
        r.register(self.streams)
        self.scores = Histogram(
            "swapwatch_face_score",
            "Calibrated fake probability of each scored face crop",
            buckets=SCORE_BUCKETS,
            registry=r,
        )
        self.events_recorded = Counter(
            "swapwatch_events_recorded_total",
            "Events committed to the durable outbox",
            ["type"],
            registry=r,
        )
        self.events_lost = Counter(
            "swapwatch_events_lost_total",
            "Events the outbox could not record (full or broken); they reached the live feed only",
            registry=r,
        )
        self.delivery = DeliveryCollector()
        r.register(self.delivery)
        self.alarms = Counter(
            "swapwatch_alarms_total", "Alarms raised and cleared", ["type"], registry=r
        )
        self.batch_size = Histogram(
            "swapwatch_engine_batch_size",
            "Crops per batched inference call",
            buckets=BATCH_BUCKETS,
            registry=r,
        )
        self.engine_seconds = Histogram(
            "swapwatch_engine_batch_seconds",
            "Time of one batched inference call",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.errors = Counter("swapwatch_errors_total", "Errors by kind", ["kind"], registry=r)
        self.reconnects = Counter(
            "swapwatch_reconnects_total", "Source reconnection attempts", ["stream"], registry=r
        )
        self.loop_lag = Histogram(
            "swapwatch_event_loop_lag_seconds",
            "How late the event loop ran a task due every 0.25 s (streams, requests and "
            "deliveries all wait that long)",
            buckets=LOOP_LAG_BUCKETS,
            registry=r,
        )
        self.rtmp_refused = Counter(
            "swapwatch_rtmp_publishes_refused",
            "RTMP publishes to a push ingest refused before any media was decoded "
            "(key, protocol, timeout, busy, not_ready)",
            ["reason"],
            registry=r,
        )

    def observe_batch(self, crops: int, seconds: float) -> None:
        self.batch_size.observe(crops)
        self.engine_seconds.observe(seconds)

    def forget_stream(self, stream: str) -> None:
        """Drop a removed stream's labelled series, so /metrics does not grow without bound."""
        for metric in (
            self.frames_in,
            self.frames_analysed,
            self.frames_dropped,
            self.reconnects,
        ):
            with contextlib.suppress(KeyError):
                metric.remove(stream)


class StageMetricsTimer:
    """A `StageTimer` feeding the stage histogram."""

    def __init__(self, metrics: ServiceMetrics) -> None:
        self._children: dict[str, Any] = {}
        self._metrics = metrics

    def record(self, stage: str, seconds: float) -> None:
        child = self._children.get(stage)
        if child is None:
            child = self._children[stage] = self._metrics.stage_seconds.labels(stage)
        child.observe(seconds)


class StreamObserver:
    """A worker's reports as Prometheus metrics (`WorkerObserver`), labelled by stream."""

    def __init__(self, metrics: ServiceMetrics, stream_id: str) -> None:
        self._metrics = metrics
        self._stream_id = stream_id

    def stage_timer(self) -> StageTimer:
        return StageMetricsTimer(self._metrics)

    def running(self, active: bool) -> None:
        if active:
            self._metrics.active_streams.inc()
        else:
            self._metrics.active_streams.dec()

    def frames(self, decoded: int, dropped: int) -> None:
        m, sid = self._metrics, self._stream_id
        m.frames_in.labels(sid).inc(decoded)
        m.frames_dropped.labels(sid).inc(dropped)

    def analysed(self, result: FrameResult, latency: float) -> None:
        m, sid = self._metrics, self._stream_id
        m.frames_analysed.labels(sid).inc()
        m.frame_latency.observe(latency)
        for face in result.faces:
            if face.update is not None:
                m.scores.observe(face.update.score)

    def alarm(self, change: AlarmChange) -> None:
        self._metrics.alarms.labels(change.value).inc()

    def error(self, kind: str) -> None:
        self._metrics.errors.labels(kind).inc()

    def reconnecting(self) -> None:
        self._metrics.reconnects.labels(self._stream_id).inc()
