"""The analysis of one stream, frame by frame: faces, scores, per-track decisions."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from swapwatch.engines import Engine
from swapwatch.engines.base import detector_logits
from swapwatch.errors import EngineError
from swapwatch.faces.analyzer import FaceAnalyzer
from swapwatch.faces.quality import QualityReport, SkipReason
from swapwatch.fusion import Alert, DecisionConfig, TrackDecision, TrackUpdate
from swapwatch.plugins.signals import Signal, load_signals, parse_signal
from swapwatch.stream.frames import Frame
from swapwatch.timing import NullTimer, StageTimer, timed

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class FaceResult:
    """One tracked face in one frame."""

    track_id: int
    box: tuple[float, float, float, float]
    skip_reason: str | None  # why it was not scored; None when scored
    logit: float | None  # the detector's
    update: TrackUpdate | None  # the track's decision state after this frame, when scored
    signals: tuple[tuple[str, float], ...] = ()  # extra signals' logits, by name
    points: np.ndarray | None = None  # (468, 3) landmarks in frame pixels


@dataclass(frozen=True, slots=True)
class ExtraSignal:
    """A plugin signal and the weight of its logit in a face's evidence."""

    signal: Signal
    weight: float = 1.0


@dataclass(frozen=True, slots=True)
class FrameResult:
    frame_index: int
    time: float
    arrival: float
    faces: tuple[FaceResult, ...]
    crops: np.ndarray  # (N, S, S, 3) aligned crops, row i belongs to faces[i]
    alerts: tuple[Alert, ...]


def signal_logits(signal: Signal, crops: np.ndarray) -> np.ndarray:
    """A plugin's logits, checked: one finite value per crop (a NaN would read as certainty)."""
    values = np.asarray(signal.infer(crops), np.float32).reshape(-1)
    if len(values) != len(crops):
        raise EngineError(
            f"signal {signal.name!r} gave {len(values)} values for {len(crops)} crops"
        )
    finite = np.isfinite(values)
    if not finite.all():
        log.warning("signal %r gave non-finite values; counted as no evidence", signal.name)
        values = np.where(finite, values, np.float32(0.0))
    return values


def extra_signals(specs: Iterable[str]) -> list[ExtraSignal]:
    """Build the signal plugins named as `NAME[:WEIGHT]`."""
    parsed = [parse_signal(text) for text in specs]
    loaded = load_signals(name for name, _ in parsed)
    return [ExtraSignal(signal, weight) for signal, (_, weight) in zip(loaded, parsed, strict=True)]


class StreamAnalyzer:
    """Holds the face tracker and one decision per track for a single stream.

    `analyse` is CPU work: call it from a worker thread, one frame at a time.

    Extra signals (plugins) see the same crops. Each returns a calibrated log-likelihood ratio,
    and a face's evidence is the detector's logit/T plus each signal's weighted logit: naive-Bayes
    pooling of evidence assumed independent.
    """

    def __init__(
        self,
        engine: Engine,
        decision: DecisionConfig | None = None,
        faces: FaceAnalyzer | None = None,
        timer: StageTimer | None = None,
        signals: Sequence[ExtraSignal] = (),
    ) -> None:
        self.engine = engine
        self.signals = tuple(signals)
        self.decision_config = decision or DecisionConfig()
        self._timer = timer or NullTimer()
        self.faces = faces or FaceAnalyzer(crop_size=engine.info.cut_size, timer=self._timer)
        if self.faces.crop_size != engine.info.cut_size:
            raise ValueError("face crop size and model input size differ")
        self.tracks: dict[int, TrackDecision] = {}
        # Frames are unrelated still pictures: each searched for a face that fills it.
        self.still_pictures = False
        # A KYC session asks for turned heads: faces past the pose gate alone (bright and sharp
        # enough) are scored too, their logit reported, but kept out of the track's decision,
        # whose threshold was set on faces within the gate.
        self.score_past_pose_gate = False

    def analyse(self, frame: Frame) -> FrameResult:
        if self.still_pictures:
            found = self.faces.analyse_picture(frame.image)
            batch, boxes = found.batch, found.boxes_in_picture()
        else:
            batch = self.faces.analyse(frame.image)
            boxes = batch.boxes
        usable = batch.usable
        scored = usable | self._past_pose_gate(batch.quality)
        logits = np.full(len(batch), np.nan, np.float32)
        if scored.any():
            with timed(self._timer, "engine"):
                logits[scored] = detector_logits(self.engine, batch.crops[scored])
        extra: np.ndarray | None = None  # (signals, faces) logits, only when there are signals
        if usable.any() and self.signals:
            extra = np.zeros((len(self.signals), len(batch)), np.float32)
            with timed(self._timer, "signals"):
                for k, item in enumerate(self.signals):
                    extra[k, usable] = signal_logits(item.signal, batch.crops[usable])
        temperature = self.engine.info.temperature
        faces: list[FaceResult] = []
        alerts: list[Alert] = []
        with timed(self._timer, "fusion"):
            for i in range(len(batch)):
                track_id = int(batch.track_ids[i])
                x0, y0, x1, y1 = (float(v) for v in boxes[i])
                box = (x0, y0, x1, y1)
                report = batch.quality[i]
                points = batch.points[i]
                if not usable[i]:
                    assert report.reason is not None
                    logit = float(logits[i]) if scored[i] else None
                    faces.append(
                        FaceResult(track_id, box, report.reason.value, logit, None, points=points)
                    )
                    continue
                decision = self.tracks.get(track_id)
                if decision is None:
                    decision = TrackDecision(self.decision_config, temperature)
                    self.tracks[track_id] = decision
                evidence = float(logits[i])
                named: tuple[tuple[str, float], ...] = ()
                if extra is not None:
                    # The decision divides by T; the signals' logits are already calibrated.
                    named = tuple(
                        (item.signal.name, float(extra[k, i]))
                        for k, item in enumerate(self.signals)
                    )
                    evidence += temperature * sum(
                        item.weight * logit
                        for item, (_, logit) in zip(self.signals, named, strict=True)
                    )
                update = decision.update(evidence, frame.time)
                faces.append(
                    FaceResult(track_id, box, None, float(logits[i]), update, named, points)
                )
                if update.change is not None:
                    alerts.append(
                        Alert(update.change, track_id, frame.time, update.score, update.cusum)
                    )
            if not self.still_pictures:
                self._forget_dropped_tracks()
        return FrameResult(
            frame_index=frame.index,
            time=frame.time,
            arrival=frame.arrival,
            faces=tuple(faces),
            crops=batch.crops,
            alerts=tuple(alerts),
        )

    def _past_pose_gate(self, quality: Sequence[QualityReport]) -> np.ndarray:
        """(N,) bool: faces refused for their pose alone, when those are to be scored."""
        gate = self.faces.quality_config
        return np.array(
            [
                self.score_past_pose_gate
                and q.reason is SkipReason.EXTREME_POSE
                and q.brightness >= gate.min_brightness
                and q.sharpness >= gate.min_sharpness
                for q in quality
            ],
            dtype=bool,
        ).reshape(-1)

    def _forget_dropped_tracks(self) -> None:
        """A track the tracker let go never comes back under its id: its decision goes too."""
        held = self.faces.tracker.track_ids
        for track_id in [t for t in self.tracks if t not in held]:
            del self.tracks[track_id]

    def reset(self) -> None:
        """Forget every face and decision: an unrelated stream or picture follows."""
        self.faces.reset()
        self.tracks = {}

    def state(self) -> dict[str, Any]:
        """The tracker and every track's decision, as JSON; call it between two frames."""
        return {
            "tracker": self.faces.tracker.state(),
            "decisions": {str(t): d.state() for t, d in sorted(self.tracks.items())},
        }

    def restore(self, state: dict[str, Any]) -> None:
        """Take up `state()` of another analyzer of the same stream."""
        self.faces.tracker.restore(state["tracker"])
        self.tracks = {int(t): TrackDecision.restore(d) for t, d in state["decisions"].items()}

    def close(self) -> None:
        self.faces.close()
        for item in self.signals:
            item.signal.close()
