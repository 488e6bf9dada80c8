"""The operating point of the whole verdict, set on real items: for recordings the video
threshold and the CUSUM `h` together, for pictures a threshold of their own.

A recording is called fake when its video score reaches the threshold or any of its face
tracks alarms (its CUSUM reaches `h`); a picture when its one face's score reaches the picture
threshold. Each medium's settings are chosen on its own held-out items whose label is known:
among the settings that call at most `target` of that medium's real items fake, the one that
catches the most of its fakes (ties: the one calling fewest of its reals fake, then the higher
threshold, then the higher `h`, which leave more margin). A medium with few real items must
also keep every real item within the target (see `choose`). A picture's score is one crop's, a
recording's a trimmed mean over many frames, so their real scores spread differently; and with
thousands of real pictures beside a few dozen real recordings, one shared point could call many
real recordings fake while the pooled rate stayed under the target. Each rate comes with its
one-sided 95 % Clopper-Pearson upper bound, which says how far the true rate may lie above the
measured one on this many items.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from swapwatch.evaluation.operating_point import highest_alarming_cusum

THRESHOLDS = tuple(round(0.30 + 0.01 * i, 2) for i in range(70))  # 0.30 .. 0.99
H_GRID = tuple(float(h) for h in range(10, 201, 2))


@dataclass(frozen=True, slots=True)
class Delivery:
    """What the verdict rule needs of one item as delivered one way (plain, a poor call)."""

    score: float | None  # None: no verdict (never called fake)
    peak_cusum: float  # highest CUSUM a track reached after its minimum frames; 0 for pictures


@dataclass(frozen=True, slots=True)
class Outcome:
    """One recording or picture, with how it fared in each delivery condition. A real one
    counts as called fake if it is called fake in any of them: the rate is per recording, as
    a user counts false alarms, and its bound is over the number of recordings."""

    fake: bool
    deliveries: tuple[Delivery, ...]
    picture: bool = False  # a still picture: judged by the picture threshold


def peak_cusum(tracks: Sequence[np.ndarray], k: float, min_frames: int) -> float:
    """The highest CUSUM any track of an item reached where it could alarm."""
    peaks = [highest_alarming_cusum(np.asarray(t, np.float64), k, min_frames) for t in tracks]
    return max(peaks, default=0.0)


def clopper_pearson_upper(errors: int, total: int, confidence: float = 0.95) -> float | None:
    """One-sided upper confidence bound of a rate observed as errors / total."""
    if total == 0:
        return None
    if errors >= total:
        return 1.0
    # Bisection on the binomial CDF: the rate p at which P(X <= errors) = 1 - confidence.
    alpha = 1.0 - confidence
    lo, hi = errors / total, 1.0
    for _ in range(60):
        mid = (lo + hi) / 2
        if _binomial_cdf(errors, total, mid) > alpha:
            lo = mid
        else:
            hi = mid
    return hi


def _binomial_cdf(k: int, n: int, p: float) -> float:
    if p <= 0:
        return 1.0
    if p >= 1:
        return 0.0 if k < n else 1.0
    log_p, log_q = math.log(p), math.log1p(-p)
    terms = [
        math.lgamma(n + 1)
        - math.lgamma(i + 1)
        - math.lgamma(n - i + 1)
        + i * log_p
        + (n - i) * log_q
        for i in range(k + 1)
    ]
    top = max(terms)
    return math.exp(top) * sum(math.exp(t - top) for t in terms)


def called_fake(outcome: Outcome, threshold: float, h: float) -> list[bool]:
    """Per delivery: called fake by the score or by an alarm."""
    return [
        d.score is not None and (d.score >= threshold or d.peak_cusum >= h)
        for d in outcome.deliveries
    ]


def _reals_called_fake(reals: Sequence[Outcome], threshold: float, h: float) -> int:
    return sum(any(called_fake(o, threshold, h)) for o in reals)


def _fakes_caught(fakes: Sequence[Outcome], threshold: float, h: float) -> float:
    """Share of fake deliveries caught."""
    calls = [c for o in fakes for c in called_fake(o, threshold, h)]
    return float(np.mean(calls)) if calls else 0.0


# A medium with fewer real items than this is not trusted alone: the target would allow at
# most two of them called fake, and the choice would follow their noise.
MIN_OWN_REALS = 60


def choose(outcomes: Sequence[Outcome], target: float = 0.05) -> dict[str, Any]:
    """Each medium's settings for at most `target` of its real items called fake, catching the
    most of its fake deliveries: `threshold` and `h` for recordings (with their figures at the
    top level), `picture_threshold` and `pictures` for pictures. A medium with fewer than
    MIN_OWN_REALS real items must also keep every real item, of either medium judged at the
    same threshold, within the target, so its few reals can only make its point stricter. None
    values where no setting on the grid meets the target, or where a medium has no reals."""
    all_reals = [o for o in outcomes if not o.fake]
    if not all_reals:
        raise ValueError("an operating point is set on real items: the list has none")
    media = {}
    for name, is_picture, h_grid in (("recordings", False, H_GRID), ("pictures", True, ())):
        reals = [o for o in all_reals if o.picture == is_picture]
        fakes = [o for o in outcomes if o.fake and o.picture == is_picture]
        groups = [reals] if len(reals) >= MIN_OWN_REALS else [reals, all_reals]
        media[name] = _best(groups, fakes, target, h_grid) if reals else {"threshold": None}
    recordings, pictures = media["recordings"], media["pictures"]
    pictures.pop("h", None)
    return {
        "target": target,
        "threshold": recordings.pop("threshold"),
        "h": recordings.pop("h", None),
        **{key.replace("items", "recordings"): value for key, value in recordings.items()},
        "picture_threshold": pictures.pop("threshold"),
        "pictures": {key.replace("items", "pictures"): v for key, v in pictures.items()},
    }


def _best(
    groups: Sequence[Sequence[Outcome]],
    fakes: Sequence[Outcome],
    target: float,
    h_grid: Sequence[float],
) -> dict[str, Any]:
    """The (threshold, h) pair keeping every group of reals within the target and catching the
    most `fakes`; the first group is the medium's own reals, whose figures are reported.
    Pictures search thresholds alone (h infinite)."""
    reals = groups[0]
    allowed = [math.floor(target * len(g) + 1e-9) for g in groups]
    best: tuple[float, int, float, float] | None = None  # caught, -reals called fake, t, h
    for h in (*h_grid, math.inf):
        first_caught: float | None = None
        for threshold in THRESHOLDS:  # ascending: each calls fewer items fake
            called = [_reals_called_fake(g, threshold, h) for g in groups]
            if any(c > a for c, a in zip(called, allowed, strict=True)):
                continue
            caught = _fakes_caught(fakes, threshold, h)
            if first_caught is None:
                first_caught = caught
            elif caught < first_caught:
                break  # past the highest threshold that catches as many
            candidate = (caught, -called[0], threshold, h)
            if best is None or candidate > best:
                best = candidate
    if best is None:
        return {"threshold": None, "h": None, "real_items": len(reals)}
    caught, minus_errors, threshold, h = best
    errors = -minus_errors
    deliveries = sum(len(o.deliveries) for o in fakes)
    return {
        "threshold": threshold,
        "h": None if math.isinf(h) else h,
        "real_items": len(reals),
        "reals_called_fake": errors,
        "real_called_fake_rate": round(errors / len(reals), 4),
        "real_called_fake_upper_95": round(clopper_pearson_upper(errors, len(reals)) or 0, 4),
        "chosen_on": "own reals" if len(groups) == 1 else "own reals and every real item",
        "fake_items": len(fakes),
        "fake_deliveries": deliveries,
        "fake_deliveries_caught": round(caught * deliveries),
        "fake_caught_rate": round(caught, 4) if fakes else None,
    }
