"""Real and fake crops of a training pair made equally sharp, so that sharpness teaches nothing.

In the training data most swap stills and some live-swap recordings are much softer than the
real faces they are paired with (median sharpness 0.12-0.52 of their reals' in 9 of 12 swap-still
groups, 0.30-0.87 in 4 of 7 live-swap groups), while every talking head is sharper than its
reals (1.13-1.69; benchmarks/sharpness_shortcut.py). Self-blends too: their frequency change
moves the face centre's sharpness, where the gate measures it, softer in 60 % of draws. A
detector can then read softness as fake: benchmarks/blur_gate.py saw the shipped model push
softened and blurred real faces towards an alarm, and talking heads rank below real faces.
Softening the sharper crop of a pair to its partner's sharpness leaves the manipulation (and,
for a self-blend, a face softer or sharper than its surround) as the pair's difference."""

from __future__ import annotations

import cv2
import numpy as np

from swapwatch.faces.quality import exposure

MAX_FACTOR = 6.0  # the most a crop is shrunk by to reach its partner
STEPS = 10  # bisection steps on the amount of softening
TOLERANCE = 0.05  # relative: close enough to the target to stop early


def soften(crop: np.ndarray, factor: float) -> np.ndarray:
    """A crop as a picture with `factor` times fewer pixels across would give it: shrunk by area
    averaging, enlarged back bilinearly."""
    if factor <= 1.0:
        return crop
    height, width = crop.shape[:2]
    small = cv2.resize(
        crop,
        (max(1, round(width / factor)), max(1, round(height / factor))),
        interpolation=cv2.INTER_AREA,
    )
    return cv2.resize(small, (width, height), interpolation=cv2.INTER_LINEAR)


def sharpness(crop: np.ndarray) -> float:
    """The quality gate's sharpness of an inference-sized crop (swapwatch.faces.quality)."""
    return exposure(crop)[1]


def softened(crop: np.ndarray, amount: float) -> np.ndarray:
    """`crop` (uint8) softened by `amount` in [1, MAX_FACTOR], continuously from 1 (the crop).

    Any resampling of a picture (even by a factor of 1.01) costs it much of its finest detail, so
    `soften` cannot make the small changes a close partner needs: up to 2 the crop is mixed with
    its 2-times softening instead, then softened by the factor beyond."""
    if crop.dtype != np.uint8:
        raise ValueError(f"softened takes uint8 crops, not {crop.dtype}")
    if amount <= 1.0:
        return crop
    if amount >= 2.0:
        return soften(crop, amount)
    weight = amount - 1.0
    mixed = (1.0 - weight) * crop.astype(np.float32) + weight * soften(crop, 2.0)
    return np.clip(np.round(mixed), 0, 255).astype(np.uint8)


def soften_to(crop: np.ndarray, target: float, current: float | None = None) -> np.ndarray:
    """`crop` softened until its sharpness is within TOLERANCE of `target`, or the closest of the
    tries (at most MAX_FACTOR); unchanged where it is not sharper than `target`. `current`: its
    sharpness, where the caller has measured it."""
    current = sharpness(crop) if current is None else current
    if current <= target:
        return crop
    best = softened(crop, MAX_FACTOR)
    best_error = sharpness(best) - target
    if best_error >= 0:  # even the most it is softened leaves it sharper
        return best
    best_error = abs(best_error)
    low, high = 1.0, MAX_FACTOR
    for _ in range(STEPS):
        middle = (low + high) / 2
        candidate = softened(crop, middle)
        value = sharpness(candidate)
        if abs(value - target) < best_error:
            best, best_error = candidate, abs(value - target)
        if best_error <= TOLERANCE * target:
            break
        if value > target:
            low = middle
        else:
            high = middle
    return best


def match_sharpness(real: np.ndarray, fake: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(real, fake) with the sharper of the two softened to the other's sharpness."""
    real_sharpness, fake_sharpness = sharpness(real), sharpness(fake)
    if real_sharpness > fake_sharpness:
        return soften_to(real, fake_sharpness, real_sharpness), fake
    return real, soften_to(fake, real_sharpness, fake_sharpness)
