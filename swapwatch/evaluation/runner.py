"""Run a detector over labelled media exactly as users run it, and keep what the metrics need.

Every item goes through `scan` (the same source, face pipeline, decision rule and video verdict
as `swapwatch scan`, at the same analysis rate): a picture is one frame, whose most suspicious
face gives its score. With `reencode_kbps` every recording is first re-encoded
to H.264 at that bitrate, as a live encoder would send it.
"""

from __future__ import annotations

import asyncio
import logging
import math
import tempfile
import time
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from enum import StrEnum
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import av.error
import cv2
import numpy as np
from av.video.frame import PictureType
from av.video.reformatter import ColorRange

from swapwatch.datasets.lists import MediaItem
from swapwatch.engines.base import Engine, ModelInfo
from swapwatch.errors import SourceError, SourceUnreadable
from swapwatch.faces.quality import QualityConfig
from swapwatch.fusion import (
    AlarmChange,
    DecisionConfig,
    Verdict,
    VideoConfig,
    rate_weighted,
)
from swapwatch.stream.assembly import AnalysisSettings, build_analyzer, close_analyzer
from swapwatch.stream.pipeline import FrameResult
from swapwatch.stream.scan import scan
from swapwatch.stream.source import AvSource, SourceOptions

log = logging.getLogger(__name__)

EngineFactory = Callable[[], Engine]


@dataclass(frozen=True, slots=True)
class EvalConfig:
    """How each item is analysed: the `scan` options that make sense for a list."""

    rate: float = 15.0  # frames per second analysed (sets the file stride, as in `scan`)
    every: int | None = None  # analyse every Nth frame instead of `rate`
    max_seconds: float | None = None  # of each recording
    decision: DecisionConfig = field(default_factory=DecisionConfig)
    quality: QualityConfig = field(default_factory=QualityConfig)
    reencode_kbps: int | None = None  # re-encode recordings to H.264 at this bitrate first
    video_threshold: float = field(default_factory=lambda: VideoConfig().threshold)  # scan's
    picture_threshold: float | None = None  # a still picture's own; None: video_threshold
    quiet: bool = True  # keep MediaPipe's and LiteRT's native log lines off stderr

    def __post_init__(self) -> None:
        if not self.rate > 0 or (self.every is not None and self.every < 1):
            raise ValueError("rate must be positive and every at least 1")
        if self.reencode_kbps is not None and not 16 <= self.reencode_kbps <= 100_000:
            raise ValueError("reencode_kbps must be within 16-100000")
        _ = self.video  # refuses a threshold outside (0, 1)

    @property
    def video(self) -> VideoConfig:
        # as `scan` builds it
        return VideoConfig(
            threshold=self.video_threshold,
            picture_threshold=self.picture_threshold,
            min_frames=self.decision.min_frames,
        )


class ItemStatus(StrEnum):
    SCORED = "scored"  # has a video (or picture) score
    INCONCLUSIVE = "inconclusive"  # faces scored, but no track long enough for a verdict
    NO_FACE = "no_face"  # no face passed the quality gates
    ERROR = "error"  # the file could not be read


@dataclass(frozen=True, slots=True)
class TrackLogits:
    """One face track's scored frames: media seconds and calibrated logits (logit / T)."""

    track_id: int
    times: np.ndarray  # (F,) float64
    logits: np.ndarray  # (F,) float64

    def to_json(self) -> dict[str, Any]:
        return {
            "track_id": self.track_id,
            "times": [round(float(v), 3) for v in self.times],
            "logits": [round(float(v), 4) for v in self.logits],
        }


@dataclass(frozen=True, slots=True)
class ItemResult:
    """What one item gave. Frame logits are calibrated (logit / T) and not clipped: the clip
    is a device of the alarm rule, and would tie confident frames for ranking metrics."""

    item: MediaItem
    status: ItemStatus
    score: float | None  # video score (pictures: the most suspicious face), as `scan` gives
    verdict: Verdict | None
    alarmed: bool  # any track alarmed at any time
    alarms_raised: int
    frame_logits: np.ndarray  # (F,) float64, one per scored face in every analysed frame
    media_seconds: float  # of recording analysed; 0 for pictures
    elapsed: float
    error: str | None = None
    # Recordings: per face track, the evidence the alarm rule summed (clipped calibrated
    # logits, in analysed-frame order, rate-weighted as `fusion.rate_weighted` says, so an
    # unweighted CUSUM with the rule's k replays the live one), for choosing thresholds from
    # measured footage.
    track_evidence: tuple[np.ndarray, ...] = ()
    # Recordings: per face track, its scored frames' media times and calibrated logits
    # (unclipped), for cues that read how a track's score moves from frame to frame.
    track_logits: tuple[TrackLogits, ...] = ()
    analysis_rate: float | None = None  # analysed frames per second of media
    why: str | None = None  # why there is no score, as `scan --json` says it

    @property
    def faces_scored(self) -> int:
        return len(self.frame_logits)

    @property
    def is_video(self) -> bool:
        return not self.item.is_image

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.item.name,
            "path": str(self.item.path),
            "label": self.item.label.value,
            "family": self.item.family,
            "group": self.item.group,
            "kind": "picture" if self.item.is_image else "video",
            "status": self.status.value,
            "score": round_or_none(self.score),
            "verdict": None if self.verdict is None else self.verdict.value,
            "alarmed": self.alarmed,
            "alarms_raised": self.alarms_raised,
            "faces_scored": self.faces_scored,
            "media_seconds": round(self.media_seconds, 3),
            "elapsed_seconds": round(self.elapsed, 3),
            "error": self.error,
            "frame_logits": [round(float(v), 4) for v in self.frame_logits],
            "track_evidence": [[round(float(v), 4) for v in t] for t in self.track_evidence],
            "track_logits": [t.to_json() for t in self.track_logits],
            "analysis_rate": round_or_none(self.analysis_rate),
            "no_verdict_reason": self.why,
        }


def round_or_none(value: float | None, digits: int = 4) -> float | None:
    return None if value is None else round(float(value), digits)


ProgressCallback = Callable[[int, int, ItemResult], None]


@dataclass(frozen=True, slots=True)
class EvalRun:
    results: list[ItemResult]
    model: ModelInfo
    config: EvalConfig
    elapsed: float


def evaluate(
    items: Sequence[MediaItem],
    engine_factory: EngineFactory,
    config: EvalConfig | None = None,
    on_item: ProgressCallback | None = None,
) -> EvalRun:
    """Analyse every item in order, calling `on_item(done, total, result)` after each. A file
    that cannot be read becomes an ERROR result; model errors propagate."""
    config = config or EvalConfig()
    started = time.perf_counter()
    results: list[ItemResult] = []
    with ItemEvaluator(engine_factory, config) as evaluator:
        for i, item in enumerate(items):
            result = evaluator.evaluate(item)
            results.append(result)
            if on_item is not None:
                on_item(i + 1, len(items), result)
        model = evaluator.engine.info
    return EvalRun(results, model, config, time.perf_counter() - started)


class ItemEvaluator:
    """One engine and one stream analyzer, reused item after item (its tracks reset)."""

    def __init__(self, engine_factory: EngineFactory, config: EvalConfig) -> None:
        self.config = config
        self._stack = ExitStack()
        try:
            self.engine = engine_factory()
            self._stack.callback(self.engine.close)
            # The analyzer `scan` and the service assemble, reused item after item (reset).
            self.analyzer = build_analyzer(
                self.engine,
                AnalysisSettings(
                    decision=config.decision,
                    quality=config.quality,
                    quiet=config.quiet,
                    warmup=True,
                ),
            )
            self._stack.callback(close_analyzer, self.analyzer, config.quiet)
            self.reencoder = (
                self._stack.enter_context(Reencoder(config.reencode_kbps, config.max_seconds))
                if config.reencode_kbps
                else None
            )
        except BaseException:
            self._stack.close()
            raise

    def __enter__(self) -> ItemEvaluator:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        self._stack.close()

    def evaluate(self, item: MediaItem) -> ItemResult:
        started = time.perf_counter()
        try:
            if item.is_image:  # judged by `scan` as well: one frame, one face analysis
                return self._video(item, item.path, started)
            path = self.reencoder.get(item.path) if self.reencoder else item.path
            return self._video(item, path, started)
        except SourceError as exc:
            log.info("%s: %s", item.name, exc)  # the result carries it; the report shows it
            return ItemResult(
                item=item,
                status=ItemStatus.ERROR,
                score=None,
                verdict=None,
                alarmed=False,
                alarms_raised=0,
                frame_logits=np.zeros(0),
                media_seconds=0.0,
                elapsed=time.perf_counter() - started,
                error=str(exc),
            )

    def _video(self, item: MediaItem, path: Path, started: float) -> ItemResult:
        cfg = self.config
        options = SourceOptions(
            live=False,
            stride=cfg.every or 0,
            max_rate=None if cfg.every else cfg.rate,
            max_seconds=cfg.max_seconds,
            crop=item.crop,
        )
        source = AvSource(str(path), options)
        analyzer = self.analyzer
        analyzer.reset()
        temperature = self.engine.info.temperature
        logits: list[float] = []
        traces: dict[int, tuple[list[float], list[float]]] = {}

        def keep_logits(result: FrameResult) -> None:
            for face in result.faces:
                if face.logit is None:
                    continue
                logits.append(face.logit / temperature)
                times, track = traces.setdefault(face.track_id, ([], []))
                times.append(result.time)
                track.append(face.logit / temperature)

        scanned = asyncio.run(scan(source, analyzer, cfg.video, on_result=keep_logits))
        if not logits:
            status = ItemStatus.NO_FACE
        elif scanned.score is None:
            status = ItemStatus.INCONCLUSIVE
        else:
            status = ItemStatus.SCORED
        seconds = scanned.media_seconds
        if scanned.video.still:
            seconds = 0.0
        elif scanned.video.duration:
            seconds = scanned.video.duration
            if cfg.max_seconds is not None:
                seconds = min(seconds, cfg.max_seconds)
        return ItemResult(
            item=item,
            status=status,
            score=scanned.score,
            verdict=scanned.verdict,
            alarmed=any(t.alarmed for t in scanned.tracks),
            alarms_raised=sum(a.type is AlarmChange.RAISED for a in scanned.alerts),
            frame_logits=np.asarray(logits, np.float64),
            media_seconds=seconds,
            elapsed=time.perf_counter() - started,
            track_evidence=tuple(
                rate_weighted(t.evidence, t.times, cfg.decision.k, cfg.decision.reference_rate)
                for t in scanned.tracks
                if t.evidence
            ),
            track_logits=tuple(
                TrackLogits(track_id, np.asarray(times), np.asarray(values))
                for track_id, (times, values) in sorted(traces.items())
            ),
            analysis_rate=scanned.analysis_rate,
            why=None if scanned.no_verdict_reason is None else scanned.no_verdict_reason.value,
        )


def read_picture(path: Path) -> np.ndarray:
    """RGB uint8 picture; `SourceUnreadable` when it cannot be decoded."""
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:
        raise SourceUnreadable(f"cannot decode picture {path}")
    return np.ascontiguousarray(bgr[:, :, ::-1])


# Re-encoding ------------------------------------------------------------------------------


class Reencoder:
    """Re-encoded copies of recordings in a temporary folder, one kept at a time: the two
    halves of a side-by-side recording (consecutive items) share one encode, as they share one
    stream live (the crop is applied after decoding)."""

    def __init__(self, kbps: int, max_seconds: float | None = None) -> None:
        self.kbps = kbps
        self.max_seconds = max_seconds  # what the analysis reads: no need to encode more
        self._folder = tempfile.TemporaryDirectory(prefix="swapwatch-eval-")
        self._current: tuple[Path, Path] | None = None

    def __enter__(self) -> Reencoder:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._folder.cleanup()

    def get(self, source: Path) -> Path:
        if self._current is not None:
            if self._current[0] == source:
                return self._current[1]
            self._current[1].unlink(missing_ok=True)
            self._current = None
        target = Path(self._folder.name) / f"{source.stem}.{self.kbps}k.mp4"
        reencode(source, target, self.kbps, max_seconds=self.max_seconds)
        self._current = (source, target)
        return target


def reencode(
    source: Path,
    target: Path,
    kbps: int,
    preset: str = "veryfast",
    max_seconds: float | None = None,
) -> None:
    """Re-encode the video of `source` to H.264 at about `kbps` as a live encoder sends it
    (rate-capped: bit_rate with maxrate and a one-second buffer; no B-frames or look-ahead;
    keyframes every two seconds, whatever the source's frame types were), at the same
    size and frame rate. An odd side loses its last row or column (4:2:0 H.264 needs even
    sides), cropped rather than rescaled so that no pixel moves or softens. Audio is dropped.
    With `max_seconds`, only the frames of the first `max_seconds` (and one more) are encoded."""
    try:
        with av.open(str(source)) as reader, av.open(str(target), mode="w") as writer:
            if not reader.streams.video:
                raise SourceUnreadable(f"no video stream in {source}")
            video_in = reader.streams.video[0]
            video_in.thread_type = "AUTO"
            rate = Fraction(video_in.average_rate or 30).limit_denominator(1001)
            width = video_in.codec_context.width // 2 * 2
            height = video_in.codec_context.height // 2 * 2
            video_out = writer.add_stream("libx264", rate=rate)
            video_out.width, video_out.height = width, height
            video_out.pix_fmt = "yuv420p"
            # The encoder takes its colour tags from the stream, not the frames: copied, the
            # re-encode decodes with the source's matrix (BT.709 for most HD clips), not BT.601.
            tags_in, tags_out = video_in.codec_context, video_out.codec_context
            tags_out.colorspace = tags_in.colorspace
            tags_out.color_primaries = tags_in.color_primaries
            tags_out.color_trc = tags_in.color_trc
            tags_out.color_range = ColorRange.MPEG
            video_out.bit_rate = kbps * 1000
            video_out.options = {
                "preset": preset,
                "maxrate": f"{kbps}k",
                "bufsize": f"{kbps}k",
                "g": str(max(1, round(2 * rate))),
                # As a live encoder sends (and as training's H.264 step encodes): no B-frames,
                # no look-ahead. x264's macroblock tree over B-frames also reads memory it never
                # wrote, so the file, and every figure measured on it, changed from run to run.
                "tune": "zerolatency",
                # x264's rate control under frame threads depends on timing: one thread makes
                # the re-encode, and so the figures, the same on every run.
                "threads": "1",
            }
            to_even = _EvenCrop()
            limit = None if max_seconds is None else math.ceil(max_seconds * rate) + 1
            for index, frame in enumerate(reader.decode(video_in)):
                if limit is not None and index >= limit:
                    break
                frame = to_even(frame)  # then rescaled only if the size changed mid-stream
                # To the limited range a video stream carries: left full-range (a yuvj420p
                # source), the levels would be read back stretched, blacks and whites clipped.
                out = frame.reformat(
                    width=width,
                    height=height,
                    format="yuv420p",
                    src_color_range=frame.color_range,
                    dst_color_range=ColorRange.MPEG,
                )
                # The encoder picks its own frame types; the source's would force its GOP.
                out.pict_type = PictureType.NONE
                out.pts = index  # constant rate: the encoder's time base is 1 / rate
                out.time_base = Fraction(1) / rate
                for packet in video_out.encode(out):
                    writer.mux(packet)
            for packet in video_out.encode():
                writer.mux(packet)
    except (av.error.FFmpegError, OSError, ValueError) as exc:
        raise SourceUnreadable(f"cannot re-encode {source}: {exc}") from exc


class _EvenCrop:
    """Cuts an odd-sized frame's last column or row: cropped, not rescaled, so that no pixel
    moves or softens. One filter per frame size and format, as a stream may change both."""

    def __init__(self) -> None:
        self._graphs: dict[tuple[int, int, str], av.filter.Graph] = {}

    def __call__(self, frame: av.VideoFrame) -> av.VideoFrame:
        width, height = frame.width // 2 * 2, frame.height // 2 * 2
        if (width, height) == (frame.width, frame.height):
            return frame
        key = (frame.width, frame.height, frame.format.name)
        graph = self._graphs.get(key)
        if graph is None:
            graph = self._graphs[key] = _crop_graph(frame, width, height)
        graph.push(frame)
        return graph.vpull()


def _crop_graph(frame: av.VideoFrame, width: int, height: int) -> av.filter.Graph:
    graph = av.filter.Graph()
    buffer = graph.add_buffer(
        width=frame.width,
        height=frame.height,
        format=frame.format,
        time_base=frame.time_base or Fraction(1, 90000),
    )
    crop = graph.add("crop", f"{width}:{height}:0:0")
    sink = graph.add("buffersink")
    buffer.link_to(crop)
    crop.link_to(sink)
    graph.configure()
    return graph
