"""Signal (e), first half: a perceptual fingerprint of a session's frames.

Each sampled frame gets a 64-bit DCT perceptual hash (pHash): its luma shrunk to 32x32, the
8x8 lowest frequencies of its 2-D DCT without the constant term, each bit set where the
coefficient is above their median. A re-encode, a rescale or a little noise changes a few bits;
another moment of the scene changes many. Frames are sampled by media time (every
SAMPLE_EVERY_S seconds), so a replay at another frame rate samples the same moments.

Two sessions match when, at some shift of one against the other, most of the newer session's
samples lie within MATCH_BITS of the older one's samples at the same time: a replay repeats not
only the person and the room but the order and timing of every movement, which a live person
following a new random challenge sequence cannot. A session that hardly moves (its samples all
alike) cannot be told from a second honest attempt in the same room, and is not matched.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

SAMPLE_EVERY_S = 0.5
MAX_SAMPLES = 240  # two minutes: a KYC session is shorter; a plain stream keeps its first
MATCH_BITS = 8  # Hamming distance of one re-encoded frame to itself: measured 0-6
MATCH_SHARE = 0.6  # of the overlapping samples
MIN_OVERLAP = 8  # samples (4 s)
# A session's samples must span this many bits among themselves (some movement) to be matched.
MIN_SPREAD_BITS = 12
_BIT_WEIGHTS = (1 << np.arange(64, dtype=np.uint64)).astype(np.uint64)


def phash(image: np.ndarray) -> int:
    """The 64-bit DCT perceptual hash of a picture (RGB uint8 or grey)."""
    grey = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY) if image.ndim == 3 else image
    small = cv2.resize(grey, (32, 32), interpolation=cv2.INTER_AREA).astype(np.float32)
    low = cv2.dct(small)[:8, :8].reshape(-1)[1:]
    bits = np.concatenate([[False], low > np.median(low)])
    return int((bits.astype(np.uint64) * _BIT_WEIGHTS).sum())


def hamming(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Bitwise distances between two arrays of 64-bit hashes (broadcast)."""
    diff = np.bitwise_xor(a.astype(np.uint64), b.astype(np.uint64))
    return np.bitwise_count(diff).astype(np.int64)


class SessionFingerprint:
    """Fed every frame with its media time; keeps a hash every SAMPLE_EVERY_S seconds."""

    def __init__(self) -> None:
        self._hashes: list[int] = []
        self._next_s: float | None = None

    def update(self, time_s: float, image: np.ndarray) -> None:
        if len(self._hashes) >= MAX_SAMPLES:
            return
        if self._next_s is not None and time_s < self._next_s:
            return
        self._hashes.append(phash(image))
        start = time_s if self._next_s is None else self._next_s
        # Sample on a fixed grid from the first frame, so frame rates do not shift the grid.
        steps = int((time_s - start) / SAMPLE_EVERY_S) + 1
        self._next_s = start + steps * SAMPLE_EVERY_S

    @property
    def hashes(self) -> np.ndarray:
        return np.array(self._hashes, dtype=np.uint64)


@dataclass(frozen=True, slots=True)
class Alignment:
    """How well one fingerprint lies on another at its best shift."""

    share: float  # of the overlapping samples within MATCH_BITS
    overlap: int  # samples compared
    shift: int  # samples of the older session skipped before the newer one's first

    @property
    def matched(self) -> bool:
        return self.overlap >= MIN_OVERLAP and self.share >= MATCH_SHARE


def spread_bits(hashes: np.ndarray) -> int:
    """The largest distance between any sample and the session's first: how much it moved."""
    return int(hamming(hashes, hashes[:1]).max()) if len(hashes) else 0


def align(newer: np.ndarray, older: np.ndarray) -> Alignment:
    """The best shift of `newer` along `older` (either may start later than the other)."""
    best = Alignment(0.0, 0, 0)
    for shift in range(-(len(newer) - MIN_OVERLAP), len(older) - MIN_OVERLAP + 1):
        lo_new, lo_old = max(0, -shift), max(0, shift)
        overlap = min(len(newer) - lo_new, len(older) - lo_old)
        if overlap < MIN_OVERLAP:
            continue
        close = hamming(newer[lo_new : lo_new + overlap], older[lo_old : lo_old + overlap])
        share = float((close <= MATCH_BITS).mean())
        if share > best.share or (share == best.share and overlap > best.overlap):
            best = Alignment(share, overlap, shift)
    return best
