"""Choosing the CUSUM threshold h from measured footage.

Video frames are correlated, so ln(r * 3600 * H) is only a starting point. We measure instead:
real face tracks are cut into blocks of a few seconds (keeping the correlation inside a block)
and the blocks are drawn at random into many synthetic stream-hours; a false alarm is one CUSUM
excursion that reaches h. Fake tracks give the other side: how soon, and how often, each h
raises the alarm.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


def cusum(evidence: np.ndarray, k: float) -> np.ndarray:
    """S_t = max(0, S_{t-1} + l_t - k) with S_0 = 0, vectorised: X_t minus its running minimum."""
    x = np.concatenate([[0.0], np.cumsum(np.asarray(evidence, np.float64) - k)])
    return (x - np.minimum.accumulate(x))[1:]


def excursion_peaks(statistic: np.ndarray) -> np.ndarray:
    """The highest value of each excursion of a CUSUM path away from zero."""
    positive = statistic > 0
    if not positive.any():
        return np.zeros(0)
    starts = np.flatnonzero(positive & ~np.concatenate([[False], positive[:-1]]))
    peaks = np.maximum.reduceat(statistic, starts)
    return np.asarray(peaks)


def synthetic_stream(
    tracks: Sequence[np.ndarray], frames: int, block: int, rng: np.random.Generator
) -> np.ndarray:
    """`frames` of evidence made of random `block`-frame runs taken from the real tracks."""
    usable = [t for t in tracks if len(t) > 0]
    if not usable:
        raise ValueError("no real evidence to resample")
    lengths = np.array([len(t) for t in usable], np.float64)
    out = np.empty(frames)
    filled = 0
    while filled < frames:
        track = usable[int(rng.choice(len(usable), p=lengths / lengths.sum()))]
        start = int(rng.integers(0, max(1, len(track) - block + 1)))
        piece = track[start : start + block][: frames - filled]
        out[filled : filled + len(piece)] = piece
        filled += len(piece)
    return out


@dataclass(frozen=True, slots=True)
class ThresholdFigures:
    h: float
    false_alarms_per_hour: float
    fake_tracks_alarmed: float | None  # share of fake tracks that reach h
    median_delay_seconds: float | None  # over the fake tracks that alarm


def first_alarm(evidence: np.ndarray, k: float, h: float, min_frames: int) -> int | None:
    path = cusum(evidence, k)
    hits = np.flatnonzero(path >= h)
    hits = hits[hits >= min_frames - 1]
    return int(hits[0]) if len(hits) else None


def sweep(
    real_tracks: Sequence[np.ndarray],
    fake_tracks: Sequence[np.ndarray],
    thresholds: Sequence[float],
    rate_hz: float,
    k: float = 0.5,
    min_frames: int = 10,
    hours: float = 100.0,
    block_seconds: float = 2.0,
    seed: int = 0,
) -> list[ThresholdFigures]:
    """False alarms per stream-hour and detection on fakes, for each threshold."""
    rng = np.random.default_rng(seed)
    frames = int(hours * 3600 * rate_hz)
    stream = synthetic_stream(real_tracks, frames, max(1, int(block_seconds * rate_hz)), rng)
    peaks = excursion_peaks(cusum(stream, k))
    figures = []
    for h in thresholds:
        delays = [first_alarm(t, k, h, min_frames) for t in fake_tracks]
        hit = [d / rate_hz for d in delays if d is not None]
        figures.append(
            ThresholdFigures(
                h=float(h),
                false_alarms_per_hour=float((peaks >= h).sum() / hours),
                fake_tracks_alarmed=len(hit) / len(fake_tracks) if fake_tracks else None,
                median_delay_seconds=float(np.median(hit)) if hit else None,
            )
        )
    return figures


def smallest_threshold(
    figures: Sequence[ThresholdFigures], max_false_alarms_per_hour: float
) -> ThresholdFigures | None:
    """The most sensitive threshold whose measured false-alarm rate is within the budget."""
    within = [f for f in figures if f.false_alarms_per_hour <= max_false_alarms_per_hour]
    return min(within, key=lambda f: f.h) if within else None
