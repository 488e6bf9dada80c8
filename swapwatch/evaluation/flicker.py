"""Score flicker: how far a face track's detector reading jumps between neighbouring frames.

A cue across frames beside the level the EMA and the CUSUM read (benchmarks/README,
`temporal_cues.py`): swaps are published to flicker as the blend's quality changes from frame to
frame. Measured on the yardstick's stored traces; the product does not use it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

# Seconds between two scored frames that still count as neighbours: at the yardstick's 15 Hz,
# one analysed frame missed (0.133 s) but not two (0.2 s, which rounding would put either side).
MAX_GAP = 0.17
MIN_STEPS = 10  # neighbouring pairs a track needs for a flicker
# Jumps below this are below any decision's resolution; a still face's reading (a picture shown
# as video) changes by less, and each such track would otherwise set its own far-off value.
FLOOR = 0.01
LOGIT_CLIP = 10.0


def flicker(times: Sequence[float], logits: Sequence[float]) -> float | None:
    """Log of the median absolute change of the calibrated logit between scored frames at most
    MAX_GAP apart, the median floored at FLOOR; None with fewer than MIN_STEPS such pairs."""
    t = np.asarray(times, np.float64)
    v = np.asarray(logits, np.float64)
    if t.shape != v.shape or t.ndim != 1:
        raise ValueError("times and logits must be two lists of the same length")
    near = np.diff(t) <= MAX_GAP
    if near.sum() < MIN_STEPS:
        return None
    steps = np.abs(np.diff(v))[near]
    return math.log(max(float(np.median(steps)), FLOOR))


def video_logit(score: float) -> float:
    """The logit of a video score (a probability), clipped to +-LOGIT_CLIP."""
    p = min(max(score, 1e-12), 1 - 1e-12)
    return max(-LOGIT_CLIP, min(LOGIT_CLIP, math.log(p / (1 - p))))


def standardised(values: Sequence[float], reference: Sequence[float]) -> np.ndarray:
    """`values` as z-scores against the mean and standard deviation of `reference`."""
    ref = np.asarray(reference, np.float64)
    if len(ref) < 2 or not ref.std() > 0:
        raise ValueError("a z-score needs at least two different reference values")
    z: np.ndarray = (np.asarray(values, np.float64) - ref.mean()) / ref.std()
    return z
