"""Choosing the CUSUM threshold h, and the video-score threshold, from measured footage.

Video frames are correlated, so ln(r * 3600 * H) (r scored frames per second, H hours between
false alarms) is only a lower bound: it holds for independent frames of log-likelihood evidence.
We measure instead: real face tracks are cut into blocks of a few seconds (keeping the
correlation inside a block) and the blocks are drawn at random into many synthetic stream-hours;
a false alarm is one CUSUM excursion that reaches h. Blocks cut up false evidence that lasts
longer than a block, so the recommendation never goes below what the real tracks themselves
reached either. Fake tracks give the other side: how soon, and how often, each h raises the
alarm. The synthetic stream is made and read in chunks, and only excursions that could matter
are kept, so a small false-alarm budget (many stream-hours) stays within a few hundred MB.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from swapwatch.evaluation.runner import ItemResult, round_or_none
from swapwatch.fusion import DecisionConfig

CHUNK_FRAMES = 1 << 20
# The h values every report shows, next to the one recommended for the budget.
SWEEP_THRESHOLDS = (4.0, 6.0, 8.0, 10.0, 12.0, 14.0, 16.0, 20.0, 25.0, 30.0, 40.0, 50.0, 60.0, 80.0)
H_STEP = 0.5  # a recommended h is rounded up to this
VIDEO_STEP = 0.05  # and a video-score threshold to this
MAX_VIDEO_THRESHOLD = 0.95  # above this, no video threshold is recommended
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


def streamed_excursion_peaks(
    chunks: Iterable[np.ndarray], k: float, keep_above: float = 0.0
) -> np.ndarray:
    """excursion_peaks(cusum(concatenated chunks, k)), one chunk in memory at a time; only the
    peaks at or above `keep_above` are kept."""
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
            elif running >= keep_above:
                found.append(np.array([running]))
        running = 0.0
        if path[-1] > 0:  # the last one is still open: hold it back
            running, peaks = float(peaks[-1]), peaks[:-1]
        found.append(peaks[peaks >= keep_above])
        state = float(path[-1])
    if running > 0 and running >= keep_above:
        found.append(np.array([running]))
    return np.concatenate(found) if found else np.zeros(0)


def synthetic_chunks(
    tracks: Sequence[np.ndarray],
    frames: int,
    block: int,
    rng: np.random.Generator,
    chunk_frames: int = CHUNK_FRAMES,
) -> Iterator[np.ndarray]:
    """`frames` of evidence made of random `block`-frame runs of the real tracks, in chunks. A
    track shorter than a block gives all of itself, and tracks are drawn so that each one's
    share of the stream is its share of the real footage."""
    usable = [np.asarray(t, np.float64) for t in tracks if len(t) > 0]
    if not usable:
        raise ValueError("no real evidence to resample")
    pool = np.concatenate(usable)
    lengths = np.array([len(t) for t in usable])
    offsets = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    pieces = np.minimum(lengths, block)
    draws = lengths / pieces  # a short track is drawn more often, as it gives fewer frames
    chance = draws / draws.sum()
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


def false_alarm_peaks(
    real_tracks: Sequence[np.ndarray],
    rate_hz: float,
    k: float,
    hours: float,
    block_seconds: float = 2.0,
    seed: int = 0,
    keep_above: float = 0.0,
) -> np.ndarray:
    """Peaks (at or above `keep_above`) of the CUSUM excursions over `hours` synthetic
    stream-hours of real evidence."""
    rng = np.random.default_rng(seed)
    frames = int(hours * 3600 * rate_hz)
    block = max(1, int(block_seconds * rate_hz))
    chunks = synthetic_chunks(real_tracks, frames, block, rng)
    return streamed_excursion_peaks(chunks, k, keep_above)


def highest_alarming_cusum(evidence: np.ndarray, k: float, min_frames: int) -> float:
    """The highest S the live rule reaches on this track (from S = 0) where it may alarm."""
    path = cusum(evidence, k)[max(0, min_frames - 1) :]
    return float(path.max(initial=0.0))


def first_alarm(evidence: np.ndarray, k: float, h: float, min_frames: int) -> int | None:
    path = cusum(evidence, k)
    hits = np.flatnonzero(path >= h)
    hits = hits[hits >= min_frames - 1]
    return int(hits[0]) if len(hits) else None


def threshold_for_budget(
    peaks: np.ndarray, hours: float, false_alarms_per_hour: float, step: float = H_STEP
) -> float:
    """The smallest h, in `step`s, that at most `false_alarms_per_hour` * `hours` of the
    excursions reach."""
    allowed = math.floor(false_alarms_per_hour * hours + 1e-9)
    if len(peaks) <= allowed:
        return step
    highest_refused = float(np.partition(peaks, len(peaks) - allowed - 1)[len(peaks) - allowed - 1])
    return step_above(highest_refused, step)


def step_above(value: float, step: float = H_STEP) -> float:
    """The smallest multiple of `step` strictly above `value`."""
    return (math.floor(value / step + 1e-9) + 1) * step


@dataclass(frozen=True, slots=True)
class ThresholdFigures:
    h: float
    false_alarms_per_hour: float  # resampled: excursions reaching h per synthetic stream-hour
    real_tracks_alarmed: int  # measured: real tracks whose own CUSUM reaches h
    fake_tracks_alarmed: float | None  # share of fake tracks that reach h
    median_delay_seconds: float | None  # over the fake tracks that alarm

    def to_json(self) -> dict[str, Any]:
        return {
            "h": self.h,
            "false_alarms_per_hour": round(self.false_alarms_per_hour, 3),
            "real_tracks_alarmed": self.real_tracks_alarmed,
            "fake_tracks_alarmed": round_or_none(self.fake_tracks_alarmed, 3),
            "median_delay_seconds": round_or_none(self.median_delay_seconds, 2),
        }


@dataclass(frozen=True, slots=True)
class TrackSet:
    """The evidence an operating point is chosen from."""

    real: list[np.ndarray]
    fake: list[np.ndarray]
    rate_hz: float  # scored frames per second of media
    k: float
    min_frames: int
    real_recordings: int  # that the real tracks come from
    real_peaks: list[float]  # highest_alarming_cusum of each real track

    def figures_at(self, h: float, peaks: np.ndarray, hours: float) -> ThresholdFigures:
        delays = [first_alarm(t, self.k, h, self.min_frames) for t in self.fake]
        hit = [d / self.rate_hz for d in delays if d is not None]
        return ThresholdFigures(
            h=float(h),
            false_alarms_per_hour=float((peaks >= h).sum() / hours),
            real_tracks_alarmed=sum(p >= h for p in self.real_peaks),
            fake_tracks_alarmed=len(hit) / len(self.fake) if self.fake else None,
            median_delay_seconds=float(np.median(hit)) if hit else None,
        )


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


def track_set(
    results: Sequence[ItemResult], decision: DecisionConfig, fallback_rate_hz: float
) -> TrackSet | None:
    """The face tracks of the recordings among `results`; None when no real one has any."""
    recordings = [r for r in results if r.is_video and r.track_evidence]
    real = [t for r in recordings if not r.item.is_fake for t in r.track_evidence]
    fake = [t for r in recordings if r.item.is_fake for t in r.track_evidence]
    if not real:
        return None
    rates = [r.analysis_rate for r in recordings if r.analysis_rate]
    rate = float(np.median(rates)) if rates else fallback_rate_hz
    k, min_frames = decision.k, decision.min_frames
    return TrackSet(
        real=real,
        fake=fake,
        rate_hz=rate,
        k=k,
        min_frames=min_frames,
        real_recordings=sum(not r.item.is_fake for r in recordings),
        real_peaks=[highest_alarming_cusum(t, k, min_frames) for t in real],
    )


def operating_point(
    results: Sequence[ItemResult],
    decision: DecisionConfig,
    config: OperatingPointConfig | None = None,
    fallback_rate_hz: float = 15.0,
) -> dict[str, Any] | None:
    """The CUSUM threshold for a false-alarm budget and the video-score threshold above every
    real recording, from the real recordings among `results` (fakes give the cost); None when
    no real recording has a scored face track. `fallback_rate_hz` stands for the analysis rate
    when no recording reports one."""
    config = config or OperatingPointConfig()
    tracks = track_set(results, decision, fallback_rate_hz)
    if tracks is None:
        return None
    rate, budget, hours = tracks.rate_hz, config.false_alarms_per_hour, config.hours
    looked_at = sorted({*SWEEP_THRESHOLDS, decision.h})
    keep_above = min(H_STEP, looked_at[0])
    peaks = false_alarm_peaks(
        tracks.real, rate, tracks.k, hours, config.block_seconds, config.seed, keep_above
    )
    own = max(tracks.real_peaks)
    bounds = {
        "resampled": threshold_for_budget(peaks, hours, budget),
        "own_real_tracks": step_above(own),
        "independent_frames": step_above(math.log(rate * 3600.0 / budget)),
    }
    binding = max(bounds, key=lambda name: bounds[name])
    recommended = bounds[binding]

    def at(h: float) -> dict[str, Any]:
        return tracks.figures_at(h, peaks, hours).to_json()

    real_seconds = sum(len(t) for t in tracks.real) / rate
    return {
        "method": f"real face tracks cut into {config.block_seconds:g} s blocks and drawn at "
        f"random into {hours:g} synthetic stream-hours; a false alarm is a CUSUM excursion "
        f"(k = {tracks.k:g}) reaching h on that one long stream, with no track starts: "
        f"conservative for the {decision.policy.value} policy",
        "false_alarm_budget_per_hour": budget,
        "policy": decision.policy.value,
        "real_recordings": tracks.real_recordings,
        "real_tracks": len(tracks.real),
        "real_track_seconds": round(real_seconds, 1),
        "fake_tracks": len(tracks.fake),
        "analysis_rate_hz": round(rate, 2),
        "synthetic_hours": hours,
        "enough_real_footage": real_seconds >= ENOUGH_REAL_SECONDS,
        "highest_real_track_cusum": round(own, 2),
        # The recommendation is the highest of three lower bounds: the resampled budget, above
        # what the real tracks reached themselves, and the independent-frame bound.
        "bounds": bounds,
        "binding": binding,
        "recommended_h": recommended,
        "at_recommended_h": at(recommended),
        "current_h": decision.h,
        "at_current_h": at(decision.h),
        "sweep": [at(h) for h in SWEEP_THRESHOLDS],
        "video": video_threshold(results),
    }


def video_threshold(results: Sequence[ItemResult], step: float = VIDEO_STEP) -> dict[str, Any]:
    """The lowest video-score threshold (in `step`s, at most 0.95) above every real recording's
    score, and how many fake recordings reach it; None when there is no real recording scored,
    or when one scores above 0.95."""
    scored = [r for r in results if r.is_video and r.score is not None]
    real = [r.score for r in scored if not r.item.is_fake and r.score is not None]
    fake = [r.score for r in scored if r.item.is_fake and r.score is not None]
    highest = max(real) if real else None
    threshold = None if highest is None else step_above(highest, step)
    if threshold is not None and threshold > MAX_VIDEO_THRESHOLD + 1e-9:
        threshold = None
    return {
        "highest_real_score": round_or_none(highest, 4),
        "real_recordings": len(real),
        "threshold": round_or_none(threshold, 2),
        "fakes_at_or_above": None if threshold is None else sum(s >= threshold for s in fake),
        "fakes": len(fake),
    }
