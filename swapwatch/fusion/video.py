"""Video-level score and verdict for `scan`, from the evidence of the main face tracks."""

from __future__ import annotations

import enum
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


class Verdict(enum.Enum):
    FAKE = "fake"
    REAL = "real"
    INCONCLUSIVE = "inconclusive"


@dataclass(frozen=True, slots=True)
class VideoConfig:
    # Video score at or above which the verdict is fake: the calibrated midpoint, 0.08 above the
    # highest held-out real recording's score with the shipped detector (benchmarks/accuracy.py).
    threshold: float = 0.5
    picture_threshold: float | None = None  # a still picture's own; None: `threshold`
    min_frames: int = 10  # scored frames a track needs to count, or
    min_seconds: float = 1.0  # a second's worth of them at the analysis rate, if fewer
    main_track_fraction: float = 0.2  # of the longest track's scored frames
    trim: float = 0.1  # fraction cut from each end before averaging

    def __post_init__(self) -> None:
        if not 0 < self.threshold < 1:
            raise ValueError(f"video threshold {self.threshold} is not within (0, 1)")
        if self.picture_threshold is not None and not 0 < self.picture_threshold < 1:
            raise ValueError(f"picture threshold {self.picture_threshold} is not within (0, 1)")
        if self.min_frames < 1 or not 0 <= self.main_track_fraction <= 1:
            raise ValueError("min_frames >= 1 and main_track_fraction 0-1 required")
        if not self.min_seconds > 0:
            raise ValueError(f"min_seconds {self.min_seconds} must be positive")
        if not 0 <= self.trim < 0.5:
            raise ValueError(f"trim {self.trim} is not within 0-0.5")

    def threshold_for(self, still: bool) -> float:
        """The score at which a still picture (`still`) or a recording is called fake."""
        if still and self.picture_threshold is not None:
            return self.picture_threshold
        return self.threshold


@dataclass(frozen=True, slots=True)
class TrackEvidence:
    track_id: int
    evidence: Sequence[float]  # calibrated l_t of every scored frame
    alarmed: bool


def trimmed_mean(values: np.ndarray, trim: float) -> float:
    """Mean after cutting `trim` of the values from each end."""
    ordered = np.sort(values)
    cut = int(len(ordered) * trim)
    kept = ordered[cut : len(ordered) - cut] if len(ordered) > 2 * cut else ordered
    return float(kept.mean())


def track_score(evidence: Sequence[float], trim: float = 0.1) -> float | None:
    """Probability of manipulation for one track: robust mean of its frame probabilities."""
    if len(evidence) == 0:
        return None
    probabilities = 1.0 / (1.0 + np.exp(-np.asarray(evidence, np.float64)))
    return trimmed_mean(probabilities, trim)


def frames_needed(config: VideoConfig, analysis_rate: float | None, still: bool) -> int:
    """Scored frames a track needs to count: one for a still picture; for a recording
    `min_frames`, or a second's worth at the analysis rate where that is fewer (a face seen
    for a second of a 5 fps video counts)."""
    if still:
        return 1
    if analysis_rate is None or not analysis_rate > 0:
        return config.min_frames
    return max(1, min(config.min_frames, math.ceil(analysis_rate * config.min_seconds - 1e-9)))


def main_tracks(
    tracks: Sequence[TrackEvidence],
    config: VideoConfig,
    analysis_rate: float | None = None,
    still: bool = False,
) -> list[TrackEvidence]:
    """Tracks long enough to speak for the video (not a face glimpsed in passing)."""
    if not tracks:
        return []
    longest = max(len(t.evidence) for t in tracks)
    needed = max(frames_needed(config, analysis_rate, still), config.main_track_fraction * longest)
    return [t for t in tracks if len(t.evidence) >= needed]


def video_decision(
    tracks: Sequence[TrackEvidence],
    config: VideoConfig,
    analysis_rate: float | None = None,
    still: bool = False,
) -> tuple[float | None, Verdict]:
    """(score, verdict): the most suspicious main track decides; an alarm anywhere is fake."""
    main = main_tracks(tracks, config, analysis_rate, still)
    if not main:
        return None, Verdict.INCONCLUSIVE
    scores = [track_score(t.evidence, config.trim) for t in main]
    score = max(s for s in scores if s is not None)
    if score >= config.threshold_for(still) or any(t.alarmed for t in tracks):
        return score, Verdict.FAKE
    return score, Verdict.REAL
