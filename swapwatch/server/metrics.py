"""Prometheus metrics of the service, all named `swapwatch_*`, in one registry per service."""

from __future__ import annotations

import contextlib
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.15, 0.25, 0.5, 1.0, 2.5)
SCORE_BUCKETS = tuple(i / 10 for i in range(1, 11))
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64)


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
        self.tracked_faces = Gauge(
            "swapwatch_tracked_faces",
            "Faces tracked in the latest frame of each stream",
            ["stream"],
            registry=r,
        )
        self.scores = Histogram(
            "swapwatch_face_score",
            "Calibrated fake probability of each scored face crop",
            buckets=SCORE_BUCKETS,
            registry=r,
        )
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

    def observe_batch(self, crops: int, seconds: float) -> None:
        self.batch_size.observe(crops)
        self.engine_seconds.observe(seconds)

    def forget_stream(self, stream: str) -> None:
        """Drop a removed stream's labelled series, so /metrics does not grow without bound."""
        for metric in (
            self.frames_in,
            self.frames_analysed,
            self.frames_dropped,
            self.tracked_faces,
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
