"""Signal (c), second half: duplicated frames.

A virtual camera runs at its own rate and repeats its latest picture when its source is slower
(a 25 fps video through a 30 fps virtual camera repeats one frame in six); a looped or stalled
injection repeats pictures too. A real sensor never delivers the same picture twice: its noise
alone makes consecutive frames differ. Compared cheaply: each frame's luma is shrunk to
THUMB_SIZE (area averaging), and its mean absolute difference from the previous one is taken.

A frame repeats the one before when both hold:
- the pictures are the same beyond what a camera's noise allows: the difference is below
  REPEAT_BELOW grey levels. A repeat that went through an encoder differs from its original by
  the encoder's residual (0.08-0.12 measured at CRF 18; 0.00-0.12 for the repeats in the
  recordings of ../shared/data), while consecutive frames of a real studio camera with a
  person holding still differ by 0.12-0.37 (MEAD, benchmarks/kyc_still_scenes.py);
- the scene otherwise moves, right there: the repeat is one frame or a run of at most MAX_RUN
  (a source at a third of the camera's rate) between two differences of at least MOVING_FROM,
  each at least 1 / SAME_SHARE times the repeat's. Through an encoder a still, noisy camera
  picture gives consecutive frames that differ by 0.00-0.02 grey levels (measured at CRF 23
  and 30), as a repeated picture does, so only motion around a frame tells a repeat: a person
  who pauses makes a longer run of small differences, which says nothing, and a head that
  sways by whole pixels through an encoder alternates one-pixel steps (0.6 grey levels) with
  unchanged frames, hence MOVING_FROM above a one-pixel step. The repeats in the recordings lie
  between differences of 0.7-14.
The earlier rule compared each difference with a running average of past ones: after a fast
movement the average stayed high, and ordinary frames (1-8 grey levels apart) read as repeats,
as did the first frames of every pause (real studio recordings 4-6 %, real streamers at 10 Hz up
to 14 %; benchmarks/README.md).

O(1) memory: the previous thumbnail, the difference before the current run, and counters.
"""

from __future__ import annotations

import cv2
import numpy as np

from swapwatch.kyc.readings import Contribution, SignalReading

THUMB_SIZE = (64, 36)
REPEAT_BELOW = 0.15  # mean absolute difference, grey levels: the same picture
MOVING_FROM = 1.0  # the differences around a repeat, grey levels
SAME_SHARE = 0.25  # a repeat's difference against the smaller of those around it
MAX_RUN = 2  # repeated frames in a row that still count (a longer run is a still scene)
WEAK_FROM = 0.05  # share of frames that repeat the previous one
STRONG_FROM = 0.15
MIN_FRAMES = 30


def luma_thumbnail(image: np.ndarray) -> np.ndarray:
    """The picture's luma (from RGB uint8, or already grey) shrunk to THUMB_SIZE, float32."""
    grey = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY) if image.ndim == 3 else image
    return cv2.resize(grey, THUMB_SIZE, interpolation=cv2.INTER_AREA).astype(np.float32)


class DuplicateFrames:
    """Fed every delivered frame in order. A repeat is known once the frame after it has
    come (the scene must move on), so `duplicates` lags by up to MAX_RUN + 1 frames."""

    def __init__(self) -> None:
        self._previous: np.ndarray | None = None
        self._before: float | None = None  # the last difference that was not a repeat's
        self._run = 0  # differences below REPEAT_BELOW since then
        self._run_max = 0.0
        self.frames = 0
        self.duplicates = 0

    def update(self, image: np.ndarray) -> None:
        """One frame (RGB uint8 or grey)."""
        thumb = luma_thumbnail(image)
        if self._previous is not None:
            self._difference(float(np.abs(thumb - self._previous).mean()))
        self._previous = thumb
        self.frames += 1

    def _difference(self, difference: float) -> None:
        if difference < REPEAT_BELOW:
            self._run += 1
            self._run_max = max(self._run_max, difference)
            return
        before, run = self._before, self._run
        if before is not None and 1 <= run <= MAX_RUN:
            around = min(before, difference)
            if around >= MOVING_FROM and self._run_max < SAME_SHARE * around:
                self.duplicates += run
        self._before, self._run, self._run_max = difference, 0, 0.0

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
