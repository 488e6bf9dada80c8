"""The per-frame injection signals of one stream, fed as frames arrive.

A stream worker (a KYC session's or a plain stream's) calls `update` for every delivered frame,
before any frame is dropped for analysis: the clock and the duplicates are about delivery. The
cost per frame is a 64x36 shrink and a few additions; noise is measured on one frame in
`noise_every`, the fingerprint twice a second. Memory does not grow with the stream's length
(the fingerprint stops at its cap).
"""

from __future__ import annotations

import numpy as np

from swapwatch.kyc.duplicates import DuplicateFrames
from swapwatch.kyc.fingerprint import SessionFingerprint
from swapwatch.kyc.frame_clock import FrameClock
from swapwatch.kyc.readings import SignalReading
from swapwatch.kyc.sensor_noise import NoiseMeter


class StreamSignals:
    """Frame clock, duplicated frames, sensor noise and fingerprint of one stream."""

    def __init__(self, noise_every: int = 5) -> None:
        self.clock = FrameClock()
        self.duplicates = DuplicateFrames()
        self.noise = NoiseMeter(every=noise_every)
        self.fingerprint = SessionFingerprint()

    def update(
        self,
        time_s: float,
        image: np.ndarray,
        face_box: np.ndarray | None = None,
        capture_stamp: int | None = None,
        arrival_s: float | None = None,
    ) -> None:
        """One delivered frame: its media time, RGB picture, main face's box if known, RTP
        capture timestamp (WebRTC) and arrival time (both None on a plain stream)."""
        self.clock.update(capture_stamp, arrival_s)
        self.duplicates.update(image)
        self.noise.update(image, face_box)
        self.fingerprint.update(time_s, image)

    def readings(self) -> list[SignalReading]:
        """Every reading these signals can give now (the replay check needs a store: see
        `swapwatch.kyc.replay_store.replay_reading` with `self.fingerprint.hashes`)."""
        return [
            self.clock.reading(),
            self.duplicates.reading(),
            self.noise.reading(),
            self.noise.face_reading(),
        ]
