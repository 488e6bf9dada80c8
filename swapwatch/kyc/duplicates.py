"""Signal (c), second half: duplicated frames.

A virtual camera runs at its own rate and repeats its latest picture when its source is slower
(a 25 fps video through a 30 fps virtual camera repeats one frame in six); a looped or stalled
injection repeats pictures too. A real sensor never delivers the same picture twice: its noise
alone makes consecutive frames differ. Compared cheaply: each frame's luma is shrunk to
THUMB_SIZE (area averaging), and its mean absolute difference from the previous one is compared
with the typical difference between frames (a running average of the frames that were not
duplicates): a repeat that went through an encoder differs from its original by the encoder's
residual (measured 0.08-0.12 grey levels, against ~1.1 between consecutive frames of a moving,
noisy test scene at CRF 18). A frame is a duplicate when its difference is below SAME_SHARE of
the typical one while the scene moves (typical difference at least MOVING_FROM grey levels).
A still scene cannot show a repeat: through an encoder a still, noisy camera picture gives
consecutive frames that differ by under 0.02 grey levels (measured at CRF 30), as a repeated
picture does, so nothing counts until the scene moves.

O(1) memory: the previous thumbnail, a running average and two counters.
"""

from __future__ import annotations

import cv2
import numpy as np

from swapwatch.kyc.readings import Contribution, SignalReading

THUMB_SIZE = (64, 36)
MOVING_FROM = 0.3  # typical mean absolute difference, grey levels
SAME_SHARE = 0.25  # of the typical difference between consecutive frames
TYPICAL_WEIGHT = 0.1  # of each new difference in the running average
JUMP_FACTOR = 3.0  # a difference counts in the average as at most this times the typical one
WEAK_FROM = 0.05  # share of frames that repeat the previous one
STRONG_FROM = 0.15
MIN_FRAMES = 30


def luma_thumbnail(image: np.ndarray) -> np.ndarray:
    """The picture's luma (from RGB uint8, or already grey) shrunk to THUMB_SIZE, float32."""
    grey = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY) if image.ndim == 3 else image
    return cv2.resize(grey, THUMB_SIZE, interpolation=cv2.INTER_AREA).astype(np.float32)


class DuplicateFrames:
    """Fed every delivered frame in order."""

    def __init__(self) -> None:
        self._previous: np.ndarray | None = None
        self._typical: float | None = None
        self.frames = 0
        self.duplicates = 0

    def update(self, image: np.ndarray) -> bool:
        """One frame (RGB uint8 or grey); True if it repeats the previous picture."""
        thumb = luma_thumbnail(image)
        same = False
        if self._previous is not None:
            difference = float(np.abs(thumb - self._previous).mean())
            typical = self._typical
            same = (
                typical is not None and typical >= MOVING_FROM and difference < SAME_SHARE * typical
            )
            # Every frame moves the typical difference, one jump (a cut, a hand across the
            # face, the camera switching modes) by at most JUMP_FACTOR times it: counting only
            # frames that were not repeats let one jump raise it for good, after which every
            # ordinary frame read as a repeat (91 % of a session's frames in the browser test).
            if typical is None:
                self._typical = difference
            else:
                step = min(difference, JUMP_FACTOR * typical) - typical
                self._typical = typical + TYPICAL_WEIGHT * step
        self._previous = thumb
        self.frames += 1
        self.duplicates += int(same)
        return same

    @property
    def share(self) -> float | None:
        return self.duplicates / (self.frames - 1) if self.frames > 1 else None

    def reading(self) -> SignalReading:
        name, unit, threshold = "duplicated_frames", "share of frames", WEAK_FROM
        share = self.share
        if share is None or self.frames < MIN_FRAMES:
            return SignalReading(
                name,
                None if share is None else round(share, 4),
                unit,
                threshold,
                Contribution.NONE,
                f"{self.frames} frames, {MIN_FRAMES} needed",
            )
        said = f"{self.duplicates} of {self.frames - 1} frames repeat the one before"
        if share >= STRONG_FROM:
            contribution = Contribution.STRONG
        elif share >= WEAK_FROM:
            contribution = Contribution.WEAK
        else:
            contribution = Contribution.NONE
        return SignalReading(name, round(share, 4), unit, threshold, contribution, said)
