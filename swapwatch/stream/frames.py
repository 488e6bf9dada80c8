"""Typed values that cross the source boundary."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True, slots=True)
class Frame:
    """One decoded picture, RGB, with where it sits in the media and when it arrived."""

    image: np.ndarray  # H x W x 3, uint8, RGB
    index: int  # position in decode order, 0-based, counting every decoded frame
    time: float  # media time in seconds from the start of the stream
    arrival: float  # time.monotonic() when decoding finished

    def __post_init__(self) -> None:
        if self.image.ndim != 3 or self.image.shape[2] != 3 or self.image.dtype != np.uint8:
            raise ValueError(
                f"Frame.image must be HxWx3 uint8, got {self.image.shape} {self.image.dtype}"
            )


@dataclass(frozen=True, slots=True)
class VideoInfo:
    """What the source told us about its video stream when it opened."""

    url: str
    width: int
    height: int
    fps: float | None
    codec: str
    duration: float | None  # seconds; None for live or unknown
    live: bool
    hardware_decoding: bool = False
    still: bool = False  # a single picture (JPEG, PNG, WebP...), not a recording


@dataclass(slots=True)
class SourceCounters:
    """Running totals kept by a source; read them at any time."""

    decoded: int = 0  # every frame the decoder produced
    delivered: int = 0  # frames handed to the analysis
    skipped: int = 0  # frames left out on purpose (file stride or live rate cap)
    dropped: int = 0  # live frames overwritten because analysis lagged
    decode_errors: int = 0  # corrupt packets the decoder skipped over
