"""`scan`: analyse a file or stream to its end and sum it up (the JSON contract of the CLI)."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import cv2
import numpy as np

from swapwatch.errors import EndOfStream
from swapwatch.faces.quality import SkipReason
from swapwatch.fusion import Alert, TrackEvidence, Verdict, VideoConfig, video_decision
from swapwatch.fusion.video import main_tracks, track_score
from swapwatch.stream.frames import SourceCounters, VideoInfo
from swapwatch.stream.pipeline import FrameResult, StreamAnalyzer
from swapwatch.stream.sink import EventSink, NullSink
from swapwatch.stream.source import FrameSource
from swapwatch.stream.worker import StreamWorker, WorkerConfig
from swapwatch.version import __version__

THUMBNAIL_PX = 112
MAX_PERIODIC_THUMBNAILS = 6


@dataclass(slots=True)
class Thumbnail:
    """A small copy of a scored face crop; JPEG-encoded only when a report is written."""

    time: float
    evidence: float
    image: np.ndarray  # THUMBNAIL_PX square, RGB uint8

    def jpeg(self, quality: int = 85) -> bytes:
        ok, data = cv2.imencode(".jpg", self.image[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, quality])
        return data.tobytes() if ok else b""


@dataclass(slots=True)
class TrackRecord:
    """Everything `scan` keeps about one face track."""

    track_id: int
    first_seen: float
    last_seen: float
    frames_seen: int = 0
    times: list[float] = field(default_factory=list)  # of scored frames
    evidence: list[float] = field(default_factory=list)
    display: list[float] = field(default_factory=list)  # EMA probability after each frame
    skipped: Counter[str] = field(default_factory=Counter)
    alarmed: bool = False
    max_cusum: float = 0.0
    signal_sums: dict[str, float] = field(default_factory=dict)  # extra signals' logits, summed
    periodic: list[Thumbnail] = field(default_factory=list)
    period: float = 2.0
    most_fake: Thumbnail | None = None
    most_real: Thumbnail | None = None

    def thumbnails(self) -> list[Thumbnail]:
        chosen = {id(t): t for t in [*self.periodic, self.most_fake, self.most_real] if t}
        return sorted(chosen.values(), key=lambda t: t.time)


class ScanRecorder:
    """Folds frame results into per-track records and alerts."""

    def __init__(self, keep_thumbnails: bool = False) -> None:
        self.keep_thumbnails = keep_thumbnails
        self.tracks: dict[int, TrackRecord] = {}
        self.alerts: list[Alert] = []
        self.frames_analysed = 0
        self.frames_with_faces = 0
        self.faces_scored = 0
        self.first_time: float | None = None
        self.last_time = 0.0

    def add(self, result: FrameResult) -> None:
        self.frames_analysed += 1
        if self.first_time is None:
            self.first_time = result.time
        self.last_time = result.time
        if result.faces:
            self.frames_with_faces += 1
        self.alerts.extend(result.alerts)
        for i, face in enumerate(result.faces):
            record = self.tracks.get(face.track_id)
            if record is None:
                record = TrackRecord(face.track_id, result.time, result.time)
                self.tracks[face.track_id] = record
            record.last_seen = result.time
            record.frames_seen += 1
            if face.update is None:
                record.skipped[face.skip_reason or "unknown"] += 1
                continue
            self.faces_scored += 1
            record.times.append(result.time)
            record.evidence.append(face.update.evidence)
            record.display.append(face.update.score)
            record.alarmed |= face.update.alarm
            record.max_cusum = max(record.max_cusum, face.update.cusum)
            for name, logit in face.signals:
                record.signal_sums[name] = record.signal_sums.get(name, 0.0) + logit
            if self.keep_thumbnails:
                self._consider_thumbnail(record, result.time, face.update.evidence, result.crops[i])

    @property
    def analysis_rate(self) -> float | None:
        """Frames analysed per second of media: n frames span n - 1 intervals."""
        if self.first_time is None or self.last_time <= self.first_time:
            return None
        return (self.frames_analysed - 1) / (self.last_time - self.first_time)

    def _consider_thumbnail(
        self, record: TrackRecord, t: float, evidence: float, crop: np.ndarray
    ) -> None:
        made: Thumbnail | None = None

        def make() -> Thumbnail:  # at most one small copy per frame, shared by every slot
            nonlocal made
            if made is None:
                small = cv2.resize(crop, (THUMBNAIL_PX, THUMBNAIL_PX), interpolation=cv2.INTER_AREA)
                made = Thumbnail(t, evidence, small)
            return made

        if not record.periodic or t - record.periodic[-1].time >= record.period:
            record.periodic.append(make())
            if len(record.periodic) > MAX_PERIODIC_THUMBNAILS:
                record.periodic = record.periodic[::2]
                record.period *= 2
        if record.most_fake is None or evidence > record.most_fake.evidence:
            record.most_fake = make()
        if record.most_real is None or evidence < record.most_real.evidence:
            record.most_real = make()


@dataclass(frozen=True, slots=True)
class ScanResult:
    source: str
    video: VideoInfo
    model: dict[str, Any]
    policy: str
    score: float | None
    verdict: Verdict
    tracks: list[TrackRecord]
    main_track_ids: frozenset[int]
    alerts: list[Alert]
    counters: SourceCounters
    frames_analysed: int
    frames_with_faces: int
    faces_scored: int
    elapsed: float
    media_seconds: float
    video_config: VideoConfig
    analysis_rate: float | None = None  # frames analysed per second of media
    no_verdict_reason: NoVerdictReason | None = None  # why there is no score, when there is none

    @property
    def still(self) -> bool:
        """Judged as a picture: a still source, or a recording of one frame."""
        return self.video.still or self.counters.decoded == 1

    @property
    def threshold(self) -> float:
        """The score at which this result is called fake."""
        return self.video_config.threshold_for(self.still)

    def to_json(self) -> dict[str, Any]:
        """The documented `scan --json` object."""
        return {
            "swapwatch": __version__,
            "source": self.source,
            "score": _round(self.score),
            "verdict": self.verdict.value,
            "no_verdict_reason": (
                None if self.no_verdict_reason is None else self.no_verdict_reason.value
            ),
            "policy": self.policy,
            "video": {
                "width": self.video.width,
                "height": self.video.height,
                "fps": _round(self.video.fps),
                "codec": self.video.codec,
                "duration": _round(self.video.duration),
                "live": self.video.live,
                "hardware_decoding": self.video.hardware_decoding,
                "still": self.video.still,
            },
            "model": self.model,
            "tracks": [
                {
                    "track_id": t.track_id,
                    "main": t.track_id in self.main_track_ids,
                    "first_seen": _round(t.first_seen),
                    "last_seen": _round(t.last_seen),
                    "frames_seen": t.frames_seen,
                    "frames_scored": len(t.evidence),
                    "frames_skipped": dict(sorted(t.skipped.items())),
                    "score": _round(track_score(t.evidence, self.video_config.trim)),
                    "alarm": t.alarmed,
                    "max_cusum": _round(t.max_cusum),
                    # extra signals (--signal): mean logit over the scored frames
                    **(
                        {
                            "signals": {
                                name: _round(total / len(t.evidence))
                                for name, total in sorted(t.signal_sums.items())
                            }
                        }
                        if t.signal_sums
                        else {}
                    ),
                }
                for t in self.tracks
            ],
            "alerts": [
                {
                    "type": a.type.value,
                    "track_id": a.track_id,
                    "time": _round(a.time),
                    "score": _round(a.score),
                }
                for a in self.alerts
            ],
            "frames": {
                "decoded": self.counters.decoded,
                "analysed": self.frames_analysed,
                "with_faces": self.frames_with_faces,
                "faces_scored": self.faces_scored,
                "skipped_by_stride": self.counters.skipped,
                "dropped": self.counters.dropped,
                "decode_errors": self.counters.decode_errors,
            },
            "media_seconds": _round(self.media_seconds),
            "elapsed_seconds": _round(self.elapsed),
        }


class NoVerdictReason(StrEnum):
    """Why a scan gave no score: nothing decoded, no face, every face failed a quality gate
    (the gate most faces failed), or no face was scored long enough to speak for the video."""

    NO_FRAMES = "no_frames"
    NO_FACE = "no_face"
    TOO_SMALL = SkipReason.TOO_SMALL.value
    TOO_DARK = SkipReason.TOO_DARK.value
    TOO_BLURRED = SkipReason.TOO_BLURRED.value
    EXTREME_POSE = SkipReason.EXTREME_POSE.value
    OUT_OF_FRAME = SkipReason.OUT_OF_FRAME.value
    FACE_TOO_BRIEF = "face_too_brief"


def no_verdict_reason(recorder: ScanRecorder) -> NoVerdictReason:
    if recorder.frames_analysed == 0:
        return NoVerdictReason.NO_FRAMES
    if not recorder.tracks:
        return NoVerdictReason.NO_FACE
    if recorder.faces_scored:
        return NoVerdictReason.FACE_TOO_BRIEF
    skipped: Counter[str] = Counter()
    for track in recorder.tracks.values():
        skipped.update(track.skipped)
    reason, _ = max(skipped.items(), key=lambda kv: (kv[1], kv[0]))
    known = {r.value for r in NoVerdictReason}
    return NoVerdictReason(reason) if reason in known else NoVerdictReason.NO_FACE


def _round(value: float | None, digits: int = 4) -> float | None:
    return None if value is None else round(float(value), digits)


async def scan(
    source: FrameSource,
    analyzer: StreamAnalyzer,
    video_config: VideoConfig | None = None,
    keep_thumbnails: bool = False,
    on_result: Callable[[FrameResult], None] | None = None,
    model_description: dict[str, Any] | None = None,
    events: ScanEventSettings | None = None,
    close_analyzer: bool = False,
) -> ScanResult:
    """Analyse `source` to its end through a stream worker. The source must not be started
    yet; it is closed after, the analyzer only with `close_analyzer` (then in its own thread,
    after the frame in analysis, also when the scan is cancelled). A source error is raised
    (after its `stream.error`); a source stopped before it opened ends the stream and raises
    EndOfStream.
    """
    video_config = video_config or VideoConfig(min_frames=analyzer.decision_config.min_frames)
    events = events or ScanEventSettings()
    recorder = ScanRecorder(keep_thumbnails)
    started = time.perf_counter()
    results: list[ScanResult] = []
    worker: StreamWorker

    def record(result: FrameResult) -> None:
        recorder.add(result)
        if on_result is not None:
            on_result(result)

    def summed_up() -> Mapping[str, Any]:
        """At the end of the source: the result, and what `stream.ended` says of it."""
        info = worker.status.video
        result = None
        if info is not None:
            result = _result(
                info, source, analyzer, recorder, video_config, model_description, started
            )
            results.append(result)
        return events.end_detail(result)

    worker = StreamWorker(
        WorkerConfig(
            events.stream_id, started_detail=events.started_detail, close_analyzer=close_analyzer
        ),
        lambda: source,
        lambda: analyzer,
        events.sink,
        on_result=record,
        end_detail=summed_up,
    )
    try:
        await worker.run()
    except asyncio.CancelledError:
        worker.abandon("interrupted")
        raise
    if worker.error is not None:
        raise worker.error
    if not results:
        raise EndOfStream("stopped before the source opened")
    return results[0]


@dataclass(frozen=True, slots=True)
class ScanEventSettings:
    """Where a scan's events go and what its stream events say."""

    sink: EventSink = field(default_factory=NullSink)
    stream_id: str = "scan"
    started_detail: Mapping[str, Any] = field(default_factory=dict)
    # The detail of `stream.ended`, from the result (None: stopped before the source opened).
    end_detail: Callable[[ScanResult | None], Mapping[str, Any]] = lambda _result: {
        "reason": "end of stream"
    }


def _result(
    info: VideoInfo,
    source: FrameSource,
    analyzer: StreamAnalyzer,
    recorder: ScanRecorder,
    video_config: VideoConfig,
    model_description: dict[str, Any] | None,
    started: float,
) -> ScanResult:
    tracks = sorted(recorder.tracks.values(), key=lambda t: t.track_id)
    evidence = [TrackEvidence(t.track_id, t.evidence, t.alarmed) for t in tracks]
    # A recording of one frame is a picture too.
    still = info.still or source.counters.decoded == 1  # as ScanResult.still reads it
    rate = recorder.analysis_rate
    score, verdict = video_decision(evidence, video_config, rate, still)
    main = main_tracks(evidence, video_config, rate, still)
    return ScanResult(
        source=info.url,
        video=info,
        model=model_description
        or {"name": analyzer.engine.info.name, "temperature": analyzer.engine.info.temperature},
        policy=analyzer.decision_config.policy.value,
        score=score,
        verdict=verdict,
        tracks=tracks,
        main_track_ids=frozenset(t.track_id for t in main),
        no_verdict_reason=None if score is not None else no_verdict_reason(recorder),
        alerts=recorder.alerts,
        counters=source.counters,
        frames_analysed=recorder.frames_analysed,
        frames_with_faces=recorder.frames_with_faces,
        faces_scored=recorder.faces_scored,
        elapsed=time.perf_counter() - started,
        media_seconds=recorder.last_time,
        video_config=video_config,
        analysis_rate=recorder.analysis_rate,
    )
