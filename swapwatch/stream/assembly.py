"""The one place a stream's analyzer is put together: face models, signals, decision rule."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import cv2

from swapwatch.engines.base import Engine
from swapwatch.faces.analyzer import FaceAnalyzer
from swapwatch.faces.quality import QualityConfig
from swapwatch.fusion import DecisionConfig
from swapwatch.native_logs import native_stderr_silenced
from swapwatch.stream.pipeline import StreamAnalyzer, extra_signals
from swapwatch.timing import StageTimer


@dataclass(frozen=True, slots=True)
class AnalysisSettings:
    """How a stream is analysed."""

    decision: DecisionConfig = field(default_factory=DecisionConfig)
    quality: QualityConfig | None = None  # None: the default gate
    signals: Sequence[str] = ()  # plugin signals, `NAME[:WEIGHT]`
    quiet: bool = True  # keep the face models' native log lines off stderr
    warmup: bool = False  # run the face models once before the first frame
    score_past_pose_gate: bool = False  # KYC sessions: see StreamAnalyzer.score_past_pose_gate


def share_cores_between_streams() -> None:
    """Keep OpenCV's work (crop and landmark warps, quality gates) on the calling thread. A
    process that runs many streams is parallel across its streams already; OpenCV's own thread
    pool on top of that cost 9 % more analysis CPU at 8 real streams (benchmarks/README)."""
    cv2.setNumThreads(1)


def build_analyzer(
    engine: Engine, settings: AnalysisSettings, timer: StageTimer | None = None
) -> StreamAnalyzer:
    """A stream's analyzer. Call it from the thread that will analyse: MediaPipe and LiteRT
    expect to stay on one thread."""
    signals = extra_signals(settings.signals)  # before the face models: a missing plugin leaks none
    try:
        with native_stderr_silenced(settings.quiet):
            faces = FaceAnalyzer(
                crop_size=engine.info.cut_size,
                quality=settings.quality,
                timer=timer,
                quiet=settings.quiet,
            )
            try:
                if settings.warmup:
                    faces.warmup()
            except BaseException:
                faces.close()
                raise
    except BaseException:
        for item in signals:
            item.signal.close()
        raise
    analyzer = StreamAnalyzer(engine, settings.decision, faces, timer, signals)
    analyzer.score_past_pose_gate = settings.score_past_pose_gate
    return analyzer


def close_analyzer(analyzer: StreamAnalyzer, quiet: bool = True) -> None:
    with native_stderr_silenced(quiet):
        analyzer.close()
