"""A picture already in memory as a source: one RGB frame, no file and no decoder."""

from __future__ import annotations

import time

import numpy as np

from swapwatch.errors import EndOfStream, UnsupportedSource
from swapwatch.stream.frames import Frame, SourceCounters, VideoInfo
from swapwatch.stream.source import FrameSource


class StillSource(FrameSource):
    """Yields `image` (H x W x 3, uint8, RGB) once, as a still picture named `name`."""

    def __init__(self, image: np.ndarray, name: str = "<picture>") -> None:
        if not isinstance(image, np.ndarray):
            raise UnsupportedSource(f"a picture must be a numpy array, not {type(image).__name__}")
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise UnsupportedSource(
                f"a picture must be an H x W x 3 uint8 RGB array, got shape {image.shape} "
                f"of {image.dtype}"
            )
        if image.shape[0] == 0 or image.shape[1] == 0:
            raise UnsupportedSource(f"an empty picture: shape {image.shape}")
        self.name = name
        self.counters = SourceCounters()
        self._image = np.ascontiguousarray(image)
        self._sent = False
        self._closed = False

    async def start(self) -> VideoInfo:
        height, width = self._image.shape[:2]
        return VideoInfo(
            url=self.name,
            width=width,
            height=height,
            fps=None,
            codec="rgb24",
            duration=None,
            live=False,
            still=True,
        )

    async def recv(self) -> Frame:
        if self._sent or self._closed:
            raise EndOfStream(f"end of {self.name}")
        self._sent = True
        self.counters.decoded += 1
        self.counters.delivered += 1
        return Frame(image=self._image, index=0, time=0.0, arrival=time.monotonic())

    async def aclose(self) -> None:
        self._closed = True
