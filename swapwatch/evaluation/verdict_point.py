"""The operating point of the whole verdict, set on real recordings: the video threshold and
the CUSUM `h` together.

A recording is called fake when its video score reaches the threshold or any of its face
tracks alarms (its CUSUM reaches `h`). Both settings are chosen at once, on held-out items whose
label is known: among the pairs that call at most `target` of the real items fake, the one that
catches the most fakes (ties: the higher threshold, then the higher `h`, which leave more
margin). The real-called-fake rate comes with its one-sided 95 % Clopper-Pearson upper bound,
which says how far the true rate may lie above the measured one on this many items.
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


def choose(outcomes: Sequence[Outcome], target: float = 0.05) -> dict[str, Any]:
    """The (threshold, h) pair for at most `target` of the real recordings called fake,
    catching the most fake deliveries; among equals, the one calling fewest reals fake, then
    the higher threshold and h. None values when no pair on the grid meets the target."""
    reals = [o for o in outcomes if not o.fake]
    fakes = [o for o in outcomes if o.fake]
    if not reals:
        raise ValueError("an operating point is set on real items: the list has none")
    allowed = math.floor(target * len(reals) + 1e-9)
    best: tuple[float, int, float, float] | None = None  # caught, -reals called fake, t, h
    for h in (*H_GRID, math.inf):
        first_caught: float | None = None
        for threshold in THRESHOLDS:  # ascending: each calls fewer items fake
            errors = _reals_called_fake(reals, threshold, h)
            if errors > allowed:
                continue
            caught = _fakes_caught(fakes, threshold, h)
            if first_caught is None:
                first_caught = caught
            elif caught < first_caught:
                break  # past the highest threshold that catches as many
            candidate = (caught, -errors, threshold, h)
            if best is None or candidate > best:
                best = candidate
    if best is None:
        return {"threshold": None, "h": None, "target": target}
    caught, minus_errors, threshold, h = best
    errors = -minus_errors
    deliveries = sum(len(o.deliveries) for o in fakes)
    return {
        "target": target,
        "threshold": threshold,
        "h": None if math.isinf(h) else h,
        "real_recordings": len(reals),
        "reals_called_fake": errors,
        "real_called_fake_rate": round(errors / len(reals), 4),
        "real_called_fake_upper_95": round(clopper_pearson_upper(errors, len(reals)) or 0, 4),
        "fake_recordings": len(fakes),
        "fake_deliveries": deliveries,
        "fake_deliveries_caught": round(caught * deliveries),
        "fake_caught_rate": round(caught, 4) if fakes else None,
    }
