"""Choosing the CUSUM threshold h, and the video-score threshold, from measured footage.

Video frames are correlated, so ln(r * 3600 * H) is only a starting point. We measure instead:
real face tracks are cut into blocks of a few seconds (keeping the correlation inside a block)
and the blocks are drawn at random into many synthetic stream-hours; a false alarm is one CUSUM
excursion that reaches h. Fake tracks give the other side: how soon, and how often, each h
raises the alarm. The synthetic stream is made and read in chunks, so a small false-alarm budget
(many stream-hours) needs no more memory than a large one.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from swapwatch.fusion import DecisionConfig

if TYPE_CHECKING:
    from swapwatch.evaluation.runner import ItemResult

CHUNK_FRAMES = 1 << 20
# The h values every report shows, next to the one recommended for the budget.
SWEEP_THRESHOLDS = (4.0, 6.0, 8.0, 10.0, 12.0, 14.0, 16.0, 20.0, 25.0, 30.0, 40.0, 50.0, 60.0, 80.0)
H_STEP = 0.5  # a recommended h is rounded up to this
VIDEO_STEP = 0.05  # and a video-score threshold to this
# Below this much real face footage, the tail of its evidence is mostly unseen.
ENOUGH_REAL_SECONDS = 600.0
# Budgets that resampled footage can speak to: below one false alarm in 200 stream-hours the
# synthetic stream would have to be longer than the evidence of a few recordings can honestly fill.
BUDGET_RANGE = (0.005, 100.0)


def cusum(evidence: np.ndarray, k: float, start: float = 0.0) -> np.ndarray:
    """S_t = max(0, S_{t-1} + l_t - k) with S_0 = start, vectorised: X_t minus its running
    minimum, where X begins at -start."""
    x = np.concatenate([[-start], np.cumsum(np.asarray(evidence, np.float64) - k)])
    return (x - np.minimum.accumulate(x))[1:]


def excursion_peaks(statistic: np.ndarray) -> np.ndarray:
    """The highest value of each excursion of a CUSUM path away from zero."""
    positive = statistic > 0
    if not positive.any():
        return np.zeros(0)
    starts = np.flatnonzero(positive & ~np.concatenate([[False], positive[:-1]]))
    peaks = np.maximum.reduceat(statistic, starts)
    return np.asarray(peaks)


def streamed_excursion_peaks(chunks: Iterable[np.ndarray], k: float) -> np.ndarray:
    """excursion_peaks(cusum(concatenated chunks, k)), one chunk in memory at a time."""
    found: list[np.ndarray] = []
    state = 0.0  # S at the end of the chunks read so far
    running = 0.0  # peak so far of the excursion still open at that end (0: none open)
    for chunk in chunks:
        if len(chunk) == 0:
            continue
        path = cusum(chunk, k, start=state)
        peaks = excursion_peaks(path)
        if running > 0:
            if path[0] > 0:  # the open excursion goes on into this chunk
                peaks[0] = max(peaks[0], running)
            else:
                found.append(np.array([running]))
        running = 0.0
        if path[-1] > 0:  # the last one is still open: hold it back
            running, peaks = float(peaks[-1]), peaks[:-1]
        found.append(peaks)
        state = float(path[-1])
    if running > 0:
        found.append(np.array([running]))
    return np.concatenate(found) if found else np.zeros(0)


def synthetic_chunks(
    tracks: Sequence[np.ndarray],
    frames: int,
    block: int,
    rng: np.random.Generator,
    chunk_frames: int = CHUNK_FRAMES,
) -> Iterator[np.ndarray]:
    """`frames` of evidence made of random `block`-frame runs of the real tracks (a track is
    drawn in proportion to its length; a shorter track gives all of itself), in chunks."""
    usable = [np.asarray(t, np.float64) for t in tracks if len(t) > 0]
    if not usable:
        raise ValueError("no real evidence to resample")
    pool = np.concatenate(usable)
    lengths = np.array([len(t) for t in usable])
    offsets = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    pieces = np.minimum(lengths, block)
    chance = lengths / lengths.sum()
    mean_piece = float((chance * pieces).sum())
    made = 0
    while made < frames:
        want = min(chunk_frames, frames - made)
        drawn: list[np.ndarray] = []
        total = 0
        while total < want:
            n = math.ceil((want - total) / mean_piece) + 8
            which = rng.choice(len(usable), size=n, p=chance)
            drawn.append(which)
            total += int(pieces[which].sum())
        which = np.concatenate(drawn)
        size = pieces[which]
        starts = offsets[which] + (rng.random(len(which)) * (lengths[which] - size + 1)).astype(
            np.int64
        )
        before = np.concatenate([[0], np.cumsum(size)[:-1]])
        index = np.arange(int(size.sum())) - np.repeat(before - starts, size)
        yield pool[index[:want]]
        made += want


def synthetic_stream(
    tracks: Sequence[np.ndarray], frames: int, block: int, rng: np.random.Generator
) -> np.ndarray:
    """The whole synthetic stream in one array (for small ones)."""
    return np.concatenate(list(synthetic_chunks(tracks, frames, block, rng)))


@dataclass(frozen=True, slots=True)
class ThresholdFigures:
    h: float
    false_alarms_per_hour: float
    fake_tracks_alarmed: float | None  # share of fake tracks that reach h
    median_delay_seconds: float | None  # over the fake tracks that alarm

    def to_json(self) -> dict[str, Any]:
        return {
            "h": self.h,
            "false_alarms_per_hour": round(self.false_alarms_per_hour, 3),
            "fake_tracks_alarmed": _round(self.fake_tracks_alarmed, 3),
            "median_delay_seconds": _round(self.median_delay_seconds, 2),
        }


def first_alarm(evidence: np.ndarray, k: float, h: float, min_frames: int) -> int | None:
    path = cusum(evidence, k)
    hits = np.flatnonzero(path >= h)
    hits = hits[hits >= min_frames - 1]
    return int(hits[0]) if len(hits) else None


def false_alarm_peaks(
    real_tracks: Sequence[np.ndarray],
    rate_hz: float,
    k: float,
    hours: float,
    block_seconds: float = 2.0,
    seed: int = 0,
) -> np.ndarray:
    """Peaks of the CUSUM excursions over `hours` synthetic stream-hours of real evidence."""
    rng = np.random.default_rng(seed)
    frames = int(hours * 3600 * rate_hz)
    block = max(1, int(block_seconds * rate_hz))
    return streamed_excursion_peaks(synthetic_chunks(real_tracks, frames, block, rng), k)


def figures_at(
    h: float,
    peaks: np.ndarray,
    hours: float,
    fake_tracks: Sequence[np.ndarray],
    rate_hz: float,
    k: float,
    min_frames: int,
) -> ThresholdFigures:
    delays = [first_alarm(t, k, h, min_frames) for t in fake_tracks]
    hit = [d / rate_hz for d in delays if d is not None]
    return ThresholdFigures(
        h=float(h),
        false_alarms_per_hour=float((peaks >= h).sum() / hours),
        fake_tracks_alarmed=len(hit) / len(fake_tracks) if fake_tracks else None,
        median_delay_seconds=float(np.median(hit)) if hit else None,
    )


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
    peaks = false_alarm_peaks(real_tracks, rate_hz, k, hours, block_seconds, seed)
    return [figures_at(h, peaks, hours, fake_tracks, rate_hz, k, min_frames) for h in thresholds]


def smallest_threshold(
    figures: Sequence[ThresholdFigures], max_false_alarms_per_hour: float
) -> ThresholdFigures | None:
    """The most sensitive threshold whose measured false-alarm rate is within the budget."""
    within = [f for f in figures if f.false_alarms_per_hour <= max_false_alarms_per_hour]
    return min(within, key=lambda f: f.h) if within else None


def threshold_for_budget(
    peaks: np.ndarray, hours: float, false_alarms_per_hour: float, step: float = H_STEP
) -> float:
    """The smallest h, in `step`s, that at most `false_alarms_per_hour` * `hours` of the
    excursions reach."""
    allowed = math.floor(false_alarms_per_hour * hours + 1e-9)
    if len(peaks) <= allowed:
        return step
    highest_refused = float(np.sort(peaks)[::-1][allowed])
    return (math.floor(highest_refused / step) + 1) * step


@dataclass(frozen=True, slots=True)
class OperatingPointConfig:
    false_alarms_per_hour: float = 0.1  # the budget: per stream-hour of one face
    block_seconds: float = 2.0
    seed: int = 0

    def __post_init__(self) -> None:
        low, high = BUDGET_RANGE
        if not low <= self.false_alarms_per_hour <= high:
            raise ValueError(
                f"false alarms per hour {self.false_alarms_per_hour} is not within {low:g}-{high:g}"
            )
        if not self.block_seconds > 0:
            raise ValueError("block_seconds must be positive")

    @property
    def hours(self) -> float:
        """Synthetic stream-hours: enough that the budget allows 20 excursions, at least 200."""
        return min(4000.0, max(200.0, 20.0 / self.false_alarms_per_hour))


def operating_point(
    results: Sequence[ItemResult],
    decision: DecisionConfig,
    config: OperatingPointConfig | None = None,
) -> dict[str, Any] | None:
    """The CUSUM threshold for a false-alarm budget and the video-score threshold above every
    real recording, from the real recordings among `results` (fakes give the cost); None when
    no real recording has a scored face track."""
    config = config or OperatingPointConfig()
    recordings = [r for r in results if r.is_video and r.track_evidence]
    real = [t for r in recordings if not r.item.is_fake for t in r.track_evidence]
    fake = [t for r in recordings if r.item.is_fake for t in r.track_evidence]
    if not real:
        return None
    rate = float(np.median([r.analysis_rate for r in recordings if r.analysis_rate]))
    k, min_frames, hours = decision.k, decision.min_frames, config.hours
    peaks = false_alarm_peaks(real, rate, k, hours, config.block_seconds, config.seed)
    recommended = threshold_for_budget(peaks, hours, config.false_alarms_per_hour)

    def at(h: float) -> dict[str, Any]:
        return figures_at(h, peaks, hours, fake, rate, k, min_frames).to_json()

    real_seconds = sum(len(t) for t in real) / rate
    return {
        "method": f"real face tracks cut into {config.block_seconds:g} s blocks, drawn at "
        f"random into {hours:g} synthetic stream-hours; a false alarm is a CUSUM excursion "
        f"reaching h (k = {k:g}, at least {min_frames} frames before an alarm)",
        "false_alarm_budget_per_hour": config.false_alarms_per_hour,
        "real_recordings": sum(not r.item.is_fake for r in recordings),
        "real_tracks": len(real),
        "real_track_seconds": round(real_seconds, 1),
        "fake_tracks": len(fake),
        "analysis_rate_hz": round(rate, 2),
        "synthetic_hours": hours,
        "enough_real_footage": real_seconds >= ENOUGH_REAL_SECONDS,
        "recommended_h": recommended,
        "at_recommended_h": at(recommended),
        "current_h": decision.h,
        "at_current_h": at(decision.h),
        "sweep": [at(h) for h in SWEEP_THRESHOLDS],
        "video": video_threshold(results),
    }


def video_threshold(results: Sequence[ItemResult], step: float = VIDEO_STEP) -> dict[str, Any]:
    """The lowest video-score threshold (in `step`s, at most 0.95) that no real recording
    reaches, and how many fake recordings reach it."""
    scored = [r for r in results if r.is_video and r.score is not None]
    real = [r.score for r in scored if not r.item.is_fake and r.score is not None]
    fake = [r.score for r in scored if r.item.is_fake and r.score is not None]
    highest = max(real, default=0.0)
    threshold = min(0.95, (math.floor(highest / step + 1e-9) + 1) * step)
    return {
        "highest_real_score": round(highest, 4),
        "real_recordings": len(real),
        "threshold": round(threshold, 2),
        "fakes_at_or_above": sum(s >= threshold for s in fake),
        "fakes": len(fake),
    }


def _round(value: float | None, digits: int) -> float | None:
    return None if value is None else round(value, digits)
