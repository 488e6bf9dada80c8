"""Whether the person did what a challenge asked, from the face track frame by frame.

Turns and looking up are measured as the change of head pose (`swapwatch.faces.pose`) from where
the head was when the prompt came: cameras sit above or below screens, so an absolute angle
would fail people for their desk. Moving closer is the growth of the face's height (forehead to
chin, which a turn does not shorten). A hand across the face is either of:
- the face's colours covered (`swapwatch.kyc.occlusion`: the aligned crop against the same face
  at the prompt) for HOLD_OBSERVATIONS frames, then uncovered as long (back below the threshold,
  or below half the largest change since covered): under a real hand the landmarks usually stay
  on the face and the face detector keeps its confidence, so this is the rule that sees real
  hands (benchmarks/hand_occlusion.py);
- the face lost (or the face detector's confidence, where a caller feeds it, below
  DETECTOR_COVERED_BELOW) while the track persists, then the same face back: a hand over the
  whole face.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from swapwatch.faces.geometry import CHIN, FOREHEAD, box_iou
from swapwatch.faces.pose import HeadPose, head_pose
from swapwatch.kyc.challenges import Challenge, ChallengeKind
from swapwatch.kyc.occlusion import colour_change, face_colours, reference_colours

# The head's position at the prompt: the observations of the first BASELINE_S seconds (people
# take longer than this to start moving after a prompt).
BASELINE_S = 0.3
HOLD_OBSERVATIONS = 2  # in a row past the threshold: one landmark glitch is not a turn
SAME_PLACE_IOU = 0.3  # a face back after a cover, under a new track id, where the old one was
DETECTOR_COVERED_BELOW = 0.5  # the face detector's confidence under a hand over the whole face


@dataclass(frozen=True, slots=True)
class FaceObservation:
    """One analysed frame, as the compliance tracker needs it.

    `track_id` and `points` are None when no face is followed in this frame. `detector_score`
    is the face detector's confidence for this face when it ran on this frame (None if it did
    not), 0 when it ran and found no face there. `crop` is the face's aligned crop
    (`swapwatch.faces.geometry.aligned_square`, any size), for the hand-over-face challenge."""

    time_s: float
    track_id: int | None = None
    points: np.ndarray | None = None  # (468, 3) landmarks in pixels
    detector_score: float | None = None
    crop: np.ndarray | None = None  # (S, S, 3) RGB uint8


@dataclass(frozen=True, slots=True)
class ComplianceResult:
    """A challenge's outcome with the value measured against its threshold."""

    challenge: Challenge
    met: bool
    measured: float | None  # the furthest the person went (None: no face to measure)
    met_after_s: float | None  # seconds from the prompt to compliance
    explanation: str

    def to_json(self) -> dict[str, object]:
        return {
            "kind": self.challenge.kind.value,
            "met": self.met,
            "measured": None if self.measured is None else round(self.measured, 3),
            "threshold": self.challenge.threshold,
            "unit": self.challenge.unit,
            "met_after_s": None if self.met_after_s is None else round(self.met_after_s, 3),
            "explanation": self.explanation,
        }


def face_height(points: np.ndarray) -> float:
    """Forehead to chin, pixels."""
    return float(np.hypot(*(points[CHIN, :2] - points[FOREHEAD, :2])))


def _box(points: np.ndarray) -> np.ndarray:
    return np.array(
        [points[:, 0].min(), points[:, 1].min(), points[:, 0].max(), points[:, 1].max()]
    )


class ComplianceTracker:
    """Follows one challenge from its prompt to the end of its window. `update` per frame."""

    def __init__(self, challenge: Challenge, prompted_at_s: float) -> None:
        self.challenge = challenge
        self.prompted_at_s = prompted_at_s
        self._track: int | None = None
        self._baseline: list[tuple[float, float, float]] = []  # yaw, pitch, height
        self._reference: tuple[float, float, float] | None = None
        self._extreme: float | None = None
        self._held = 0
        self._met_after_s: float | None = None
        # hand over face
        self._last_box: np.ndarray | None = None
        self._covered = False  # lost, or the detector's confidence fell, at some point
        self._colour_baseline: list[np.ndarray] = []
        self._colour_reference: np.ndarray | None = None
        self._colour_held = 0  # observations in a row on the current side of the threshold
        self._colours_covered = False  # the colours were covered for HOLD_OBSERVATIONS
        self._cover_peak: float | None = None  # the largest change since then
        self._covered_now = False
        self._largest_change: float | None = None
        self._faces_seen = 0

    @property
    def met(self) -> bool:
        return self._met_after_s is not None

    @property
    def covered_now(self) -> bool:
        """The face is under a hand in the latest frame, by its colours (hand challenge only):
        its picture is not the face's, so its swap evidence does not count."""
        return self._covered_now

    def finished(self, now_s: float) -> bool:
        """Met, or its window is over."""
        return self.met or now_s > self.prompted_at_s + self.challenge.window_s

    def update(self, seen: FaceObservation) -> None:
        elapsed = seen.time_s - self.prompted_at_s
        if elapsed < 0 or elapsed > self.challenge.window_s or self.met:
            return
        if self.challenge.kind is ChallengeKind.HAND_OVER_FACE:
            self._update_cover(seen, elapsed)
            return
        if seen.points is None or seen.track_id is None:
            self._held = 0
            return
        if self._track is None:
            self._track = seen.track_id
        elif seen.track_id != self._track:
            return  # another face: the challenge is the first face's
        self._faces_seen += 1
        pose = head_pose(seen.points)
        sample = (pose.yaw, pose.pitch, face_height(seen.points))
        if self._reference is None:
            self._baseline.append(sample)
            if elapsed < BASELINE_S:
                return
            yaw, pitch, height = np.median(self._baseline, axis=0)
            self._reference = (float(yaw), float(pitch), float(height))
        self._measure(sample, pose, elapsed)

    def _measure(self, sample: tuple[float, float, float], pose: HeadPose, elapsed: float) -> None:
        assert self._reference is not None
        yaw0, pitch0, height0 = self._reference
        kind = self.challenge.kind
        if kind is ChallengeKind.TURN_LEFT:
            value = pose.yaw - yaw0
        elif kind is ChallengeKind.TURN_RIGHT:
            value = yaw0 - pose.yaw
        elif kind is ChallengeKind.LOOK_UP:
            value = pose.pitch - pitch0
        else:  # MOVE_CLOSER
            value = sample[2] / height0 if height0 > 0 else math.nan
        if math.isfinite(value):
            self._extreme = value if self._extreme is None else max(self._extreme, value)
        if value >= self.challenge.threshold:
            self._held += 1
            if self._held >= HOLD_OBSERVATIONS:
                self._met_after_s = elapsed
        else:
            self._held = 0

    def _update_cover(self, seen: FaceObservation, elapsed: float) -> None:
        face_here = seen.points is not None and seen.track_id is not None
        if face_here and self._track is None:
            self._track = seen.track_id
        if not face_here:
            self._covered_now = False
            if self._track is not None:  # followed before, gone now: covered (or gone)
                self._covered = True
            return
        assert seen.points is not None
        box = _box(seen.points)
        same_face = seen.track_id == self._track or (
            self._last_box is not None
            and box_iou(box.reshape(1, 4), self._last_box.reshape(1, 4))[0, 0] >= SAME_PLACE_IOU
        )
        if not same_face:
            return
        self._faces_seen += 1
        if seen.crop is not None and self._colours(seen.crop, elapsed):
            self._met_after_s = elapsed
            return
        score = seen.detector_score
        if score is not None and score < DETECTOR_COVERED_BELOW:
            self._covered = True
            return
        if self._covered:
            self._met_after_s = elapsed
        self._last_box = box
        self._track = seen.track_id

    def _colours(self, crop: np.ndarray, elapsed: float) -> bool:
        """Follow the face's colours against its reference; True once covered, then uncovered."""
        layout = face_colours(crop)
        if self._colour_reference is None:
            self._colour_baseline.append(layout)
            if elapsed < BASELINE_S:
                return False
            self._colour_reference = reference_colours(self._colour_baseline)
        change = colour_change(self._colour_reference, layout)
        largest = self._largest_change
        self._largest_change = change if largest is None else max(largest, change)
        threshold = self.challenge.threshold
        if self._colours_covered:
            # Uncovered below half the cover's peak too: the light on a face drifts while a
            # hand is over it, and the face need not come all the way back to its prompt's.
            assert self._cover_peak is not None
            self._cover_peak = max(self._cover_peak, change)
            threshold = max(threshold, self._cover_peak / 2)
        covered = change >= threshold
        if covered != self._covered_now:
            self._colour_held = 0
        self._covered_now = covered
        self._colour_held += 1
        if covered and self._colour_held >= HOLD_OBSERVATIONS and not self._colours_covered:
            self._colours_covered = True
            self._cover_peak = change
        return self._colours_covered and not covered and self._colour_held >= HOLD_OBSERVATIONS

    def result(self) -> ComplianceResult:
        """The outcome so far (final once `finished`)."""
        kind = self.challenge.kind
        measured = self._largest_change if kind is ChallengeKind.HAND_OVER_FACE else self._extreme
        if self.met:
            explanation = f"done after {self._met_after_s:.1f} s"
        elif not self._faces_seen:
            explanation = "no face followed during the challenge"
        elif kind is ChallengeKind.HAND_OVER_FACE:
            explanation = (
                "the face was covered but did not come back"
                if self._covered or self._colours_covered
                else "the face was never covered"
            )
        elif measured is None:
            explanation = "the head's position at the prompt was not measured"
        elif measured >= self.challenge.threshold:
            explanation = (
                f"reached {measured:.2f} of {self.challenge.threshold:g} {self.challenge.unit}, "
                f"but never for {HOLD_OBSERVATIONS} observations in a row"
            )
        else:
            explanation = (
                f"reached {measured:.2f} of {self.challenge.threshold:g} {self.challenge.unit}"
            )
        return ComplianceResult(self.challenge, self.met, measured, self._met_after_s, explanation)
