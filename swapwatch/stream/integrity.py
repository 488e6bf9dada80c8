"""Is a file a whole camera video? What FFmpeg opens is not always one: a text file reads as an
`ansi` video, and a damaged file may decode a few frames and then end as if it were done. Either
would pass as a clean result (no face, `inconclusive`) if nothing checked."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from swapwatch.errors import SourceUnreadable, UnsupportedSource

# FFmpeg renders text and text art as video (the tty demuxer and its kin): never a camera.
TEXT_DEMUXERS = frozenset({"tty", "bintext", "xbin", "adf", "idf"})
TEXT_CODECS = frozenset({"ansi", "bintext", "xbin", "idf"})
# Decoding may end a little short of the frame count a file announces (an edit list hides a few
# leading frames; a last frame cut off); below this share of it, decoding stopped early.
MIN_DECODED_SHARE = 0.9
# The decoded frames must also reach the end of the announced duration, give or take this share
# of it or one and a half frame intervals (edit lists trim at the start, so the end still lines
# up; a rounded container duration is off by less than a frame). Two whole frames missing at the
# end of a short clip is a cut file, not rounding.
MAX_MISSING_END_SHARE = 0.02
MAX_MISSING_END_FRAMES = 1.5
AV_TIME_BASE = 1_000_000  # the unit of FFmpeg's container duration


def check_camera_video(url: str, demuxer: str, codec: str) -> None:
    """Refuse what FFmpeg reads as video but is text."""
    if demuxer in TEXT_DEMUXERS or codec in TEXT_CODECS:
        raise UnsupportedSource(f"not a video: {url} is text (FFmpeg reads it as {codec!r})")


@dataclass(frozen=True, slots=True)
class Announced:
    """What a file's video stream says it holds, where it says it."""

    frames: int | None
    duration: float | None  # the stream's own, not the container's (audio may run longer)
    fps: float | None

    @classmethod
    def of(cls, stream: Any) -> Announced:
        frames = int(stream.frames) if stream.frames and stream.frames > 0 else None
        duration = None
        if stream.duration is not None and stream.time_base is not None:
            duration = float(stream.duration * stream.time_base)
        elif len(stream.container.streams) == 1 and stream.container.duration is not None:
            # Matroska/WebM gives only the file's duration: with no other stream, it is this one's.
            duration = stream.container.duration / AV_TIME_BASE
        fps = float(stream.average_rate) if stream.average_rate else None
        return cls(frames, duration if duration and math.isfinite(duration) else None, fps)

    def check(self, url: str, decoded: int, span: float) -> None:
        """Refuse a file whose decoding ended early: `decoded` frames covering `span` seconds
        from the first frame's start to the last one's end."""
        if self.frames is not None and decoded < MIN_DECODED_SHARE * self.frames:
            raise SourceUnreadable(
                f"corrupt or truncated video: {url} ended after {decoded} of its "
                f"{self.frames} frames"
            )
        if self.duration is not None and self.fps:
            slack = max(MAX_MISSING_END_FRAMES / self.fps, MAX_MISSING_END_SHARE * self.duration)
            if span < self.duration - slack:
                raise SourceUnreadable(
                    f"corrupt or truncated video: {url} ended at {span:.2f}s of its "
                    f"{self.duration:.2f}s"
                )
