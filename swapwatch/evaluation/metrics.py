"""Detection metrics in ISO/IEC 30107-3 vocabulary, and a bootstrap that resamples groups.

Convention: a higher score means more likely fake; label 1 is a fake (attack presentation),
0 a real (bona fide presentation). A sample is classified as an attack when its score is at or
above the threshold, as `scan` gives a fake verdict at video score >= 0.5.

    APCER  attack presentation classification error rate: share of fakes classified as real
    BPCER  bona fide presentation classification error rate: share of reals classified as fake

Metrics that need a class the input lacks (AUC of reals only, APCER with no fake) are None rather
than an error, so a bootstrap resample or a real-only family simply has no value there. Malformed
input (lengths that differ, NaN scores, labels other than 0/1) raises `ValueError`.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike

# Targets compared with a small tolerance: 0.05 * 20 fakes must allow exactly one error.
_TOLERANCE = 1e-9


def check_scores(scores: ArrayLike, labels: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """(float64 scores, bool is-fake) as 1-D arrays; raises ValueError for malformed input."""
    s = np.asarray(scores, dtype=np.float64)
    y = np.asarray(labels)
    if s.ndim != 1 or y.ndim != 1 or len(s) != len(y):
        raise ValueError(f"scores and labels must be 1-D of one length, got {s.shape}, {y.shape}")
    if not np.all(np.isfinite(s)):
        raise ValueError("scores must be finite numbers")
    if y.dtype != np.bool_:
        if len(y) and not np.all((y == 0) | (y == 1)):
            raise ValueError("labels must be 0 (real) or 1 (fake)")
        y = y == 1
    return s, y


def roc_auc(scores: ArrayLike, labels: ArrayLike) -> float | None:
    """Area under the ROC curve: the chance that a random fake scores above a random real,
    ties counting one half (the Mann-Whitney U statistic over n_fake * n_real). None when a
    class is missing."""
    s, y = check_scores(scores, labels)
    return _auc(np.sort(s[y]), np.sort(s[~y]))


def _auc(fakes: np.ndarray, reals: np.ndarray) -> float | None:
    """AUC from sorted fake and real scores."""
    if len(fakes) == 0 or len(reals) == 0:
        return None
    below = np.searchsorted(reals, fakes, side="left")
    tied = np.searchsorted(reals, fakes, side="right") - below
    return float((below.sum() + 0.5 * tied.sum()) / (len(fakes) * len(reals)))


def stratified_auc(
    scores: ArrayLike, labels: ArrayLike, covariate: ArrayLike, strata: int
) -> tuple[float | None, int]:
    """(AUC within strata, pairs counted): `strata` equal-count bins of `covariate`, and the
    share of (real, fake) pairs of one bin that the score orders rightly, ties one half, over
    all such pairs. Where fakes and reals differ in the covariate (softness, say), the plain
    AUC rewards reading it; within a bin it can no longer order a pair."""
    s, y = check_scores(scores, labels)
    order = np.argsort(np.asarray(covariate, np.float64), kind="stable")
    right = pairs = 0.0
    for members in np.array_split(order, strata):
        fakes, reals = np.sort(s[members][y[members]]), np.sort(s[members][~y[members]])
        auc = _auc(fakes, reals)
        if auc is not None:
            right += auc * len(fakes) * len(reals)
            pairs += len(fakes) * len(reals)
    return (right / pairs if pairs else None), int(pairs)


def classification_errors(
    classified_attack: ArrayLike, labels: ArrayLike
) -> tuple[float | None, float | None]:
    """(APCER, BPCER) of given decisions (True: classified as an attack, i.e. fake)."""
    decided = np.asarray(classified_attack, dtype=bool)
    _, y = check_scores(np.zeros(len(decided)), labels)
    apcer = float(np.mean(~decided[y])) if y.any() else None
    bpcer = float(np.mean(decided[~y])) if (~y).any() else None
    return apcer, bpcer


def error_rates(
    scores: ArrayLike, labels: ArrayLike, threshold: float
) -> tuple[float | None, float | None]:
    """(APCER, BPCER) when scores at or above `threshold` are classified as attacks."""
    s, y = check_scores(scores, labels)
    return classification_errors(s >= threshold, y)


def apcer(scores: ArrayLike, labels: ArrayLike, threshold: float) -> float | None:
    """Share of fakes scored below `threshold` (classified bona fide); None without fakes."""
    return error_rates(scores, labels, threshold)[0]


def bpcer(scores: ArrayLike, labels: ArrayLike, threshold: float) -> float | None:
    """Share of reals scored at or above `threshold` (classified attack); None without reals."""
    return error_rates(scores, labels, threshold)[1]


@dataclass(frozen=True, slots=True)
class OperatingPoint:
    """A threshold and the error rates there. `threshold` is inf when nothing is an attack."""

    threshold: float
    apcer: float
    bpcer: float


@dataclass(frozen=True, slots=True)
class DetCurve:
    """APCER and BPCER at every threshold where either changes: each distinct score, and inf.

    APCER rises and BPCER falls along the (ascending) thresholds; the first point has APCER 0
    and BPCER 1, the last (inf) APCER 1 and BPCER 0.
    """

    thresholds: np.ndarray
    apcer: np.ndarray
    bpcer: np.ndarray
    auc: float
    attacks: int
    bona_fide: int

    @classmethod
    def build(cls, scores: ArrayLike, labels: ArrayLike) -> DetCurve | None:
        """None unless both classes are present."""
        s, y = check_scores(scores, labels)
        return cls._from_sorted(np.sort(s[y]), np.sort(s[~y]))

    @classmethod
    def _from_sorted(cls, fakes: np.ndarray, reals: np.ndarray) -> DetCurve | None:
        auc = _auc(fakes, reals)
        if auc is None:
            return None
        thresholds = np.append(np.unique(np.concatenate([fakes, reals])), np.inf)
        fakes_below = np.searchsorted(fakes, thresholds, side="left")
        reals_below = np.searchsorted(reals, thresholds, side="left")
        return cls(
            thresholds=thresholds,
            apcer=fakes_below / len(fakes),
            bpcer=1.0 - reals_below / len(reals),
            auc=auc,
            attacks=len(fakes),
            bona_fide=len(reals),
        )

    def eer(self) -> OperatingPoint:
        """Equal error rate: where APCER = BPCER, linearly interpolated between the two
        neighbouring operating points that straddle the crossing (threshold likewise)."""
        gap = self.apcer - self.bpcer  # -1 at the first threshold, +1 at inf
        i = int(np.argmax(gap >= 0))
        if gap[i] == 0:
            return OperatingPoint(
                float(self.thresholds[i]), float(self.apcer[i]), float(self.bpcer[i])
            )
        j = i - 1
        w = float(-gap[j] / (gap[i] - gap[j]))
        rate = float(self.apcer[j] + w * (self.apcer[i] - self.apcer[j]))
        t_lo, t_hi = float(self.thresholds[j]), float(self.thresholds[i])
        threshold = t_lo + w * (t_hi - t_lo) if np.isfinite(t_hi) else t_lo
        return OperatingPoint(threshold, rate, rate)

    def at_apcer(self, target: float) -> OperatingPoint:
        """The lowest BPCER with APCER <= target (ISO/IEC 30107-3 reports e.g. BPCER at
        APCER 5%, 'BPCER20')."""
        # APCER rises with the threshold, BPCER falls: take the highest threshold allowed.
        i = int(np.flatnonzero(self.apcer <= target + _TOLERANCE)[-1])
        return self._point(i)

    def at_bpcer(self, target: float) -> OperatingPoint:
        """The lowest APCER with BPCER <= target."""
        i = int(np.flatnonzero(self.bpcer <= target + _TOLERANCE)[0])
        return self._point(i)

    def _point(self, i: int) -> OperatingPoint:
        return OperatingPoint(float(self.thresholds[i]), float(self.apcer[i]), float(self.bpcer[i]))


def equal_error_rate(scores: ArrayLike, labels: ArrayLike) -> OperatingPoint | None:
    """EER and its threshold (see `DetCurve.eer`); None when a class is missing."""
    curve = DetCurve.build(scores, labels)
    return None if curve is None else curve.eer()


def bpcer_at_apcer(scores: ArrayLike, labels: ArrayLike, target: float) -> OperatingPoint | None:
    """Operating point with the lowest BPCER whose APCER is at most `target`."""
    curve = DetCurve.build(scores, labels)
    return None if curve is None else curve.at_apcer(target)


def apcer_at_bpcer(scores: ArrayLike, labels: ArrayLike, target: float) -> OperatingPoint | None:
    """Operating point with the lowest APCER whose BPCER is at most `target`."""
    curve = DetCurve.build(scores, labels)
    return None if curve is None else curve.at_bpcer(target)


# Bootstrap over groups ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Interval:
    """A percentile bootstrap confidence interval."""

    low: float
    high: float
    resamples: int  # resamples on which the statistic was defined (others are left out)


def group_resamples(
    groups: Sequence[Hashable], resamples: int = 1000, seed: int = 0
) -> Iterator[np.ndarray]:
    """Sample indices of `resamples` bootstrap replicates: each draws as many groups as there
    are, with replacement, and takes every sample of each drawn group (repeats included).

    Samples of one group (an identity, one recording) are correlated, so resampling them one by
    one would give intervals far too narrow.
    """
    if resamples < 0:
        raise ValueError("resamples must be >= 0")
    index: dict[Hashable, list[int]] = {}
    for i, g in enumerate(groups):
        index.setdefault(g, []).append(i)
    members = [np.asarray(m, dtype=np.intp) for m in index.values()]
    if not members:
        return
    rng = np.random.default_rng(seed)
    for _ in range(resamples):
        drawn = rng.integers(0, len(members), size=len(members))
        yield np.concatenate([members[g] for g in drawn])


def percentile_interval(
    values: Sequence[float | None], confidence: float = 0.95
) -> Interval | None:
    """The central `confidence` interval of the defined values; None when none is."""
    if not 0 < confidence < 1:
        raise ValueError("confidence must be between 0 and 1")
    defined = np.asarray([v for v in values if v is not None and np.isfinite(v)], np.float64)
    if len(defined) == 0:
        return None
    tail = 100.0 * (1.0 - confidence) / 2.0
    low, high = np.percentile(defined, [tail, 100.0 - tail])
    return Interval(float(low), float(high), len(defined))


def group_bootstrap(
    statistic: Callable[[np.ndarray], float | None],
    groups: Sequence[Hashable],
    resamples: int = 1000,
    seed: int = 0,
    confidence: float = 0.95,
) -> Interval | None:
    """Percentile interval of `statistic(indices)` over group resamples (`group_resamples`).

    `statistic` gets an index array into the samples (with repeats) and may return None where
    it is undefined on a resample (e.g. no fake drawn); such resamples are left out.
    """
    values = [statistic(idx) for idx in group_resamples(groups, resamples, seed)]
    return percentile_interval(values, confidence)
