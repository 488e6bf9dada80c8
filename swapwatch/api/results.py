"""What the API returns beside `ScanResult`: a picture's faces, a watched stream's summary."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from swapwatch.fusion import Verdict
from swapwatch.fusion.video import track_score
from swapwatch.stream.frames import VideoInfo
from swapwatch.stream.lifecycle import StreamState
from swapwatch.stream.pipeline import FrameResult
from swapwatch.stream.scan import NoVerdictReason, ScanResult
from swapwatch.stream.status import WorkerStatus


@dataclass(frozen=True, slots=True)
class PictureFace:
    """One face found in a picture."""

    box: tuple[float, float, float, float]  # left, top, right, bottom in the picture's pixels
    score: float | None  # probability of manipulation, 0-1; None when it was not scored
    skip_reason: str | None  # why it was not scored (too_small, too_dark, ...); None if scored


@dataclass(frozen=True, slots=True)
class PictureResult:
    """The verdict on one picture and the faces it holds."""

    verdict: Verdict
    score: float | None  # the picture's probability of manipulation; None without a verdict
    no_verdict_reason: NoVerdictReason | None  # why there is no score, when there is none
    faces: tuple[PictureFace, ...]
    scan: ScanResult  # everything `swapwatch scan --json` gives for the same picture

    def to_json(self) -> dict[str, Any]:
        """The `scan --json` object, with each face's box."""
        return self.scan.to_json() | {
            "faces": [
                {
                    "box": [round(v, 1) for v in f.box],
                    "score": None if f.score is None else round(f.score, 4),
                    "skip_reason": f.skip_reason,
                }
                for f in self.faces
            ]
        }

    @classmethod
    def of(cls, scan: ScanResult, frame: FrameResult | None) -> PictureResult:
        """From a scan of the picture and the result of its one frame (None: nothing decoded)."""
        tracks = {t.track_id: t for t in scan.tracks}
        faces = tuple(
            PictureFace(
                box=f.box,
                score=track_score(tracks[f.track_id].evidence, scan.video_config.trim)
                if f.update is not None
                else None,
                skip_reason=f.skip_reason,
            )
            for f in (frame.faces if frame is not None else ())
        )
        return cls(scan.verdict, scan.score, scan.no_verdict_reason, faces, scan)


@dataclass(frozen=True, slots=True)
class WatchSummary:
    """How a watched stream went, once it is over."""

    stream_id: str
    state: StreamState  # ended (the source came to its end) or stopped
    video: VideoInfo | None  # what the source announced; None if it never opened
    frames_decoded: int
    frames_analysed: int
    frames_dropped: int  # live frames left out because analysis lagged
    alarms_raised: int
    reconnects: int

    @classmethod
    def of(cls, stream_id: str, state: StreamState, status: WorkerStatus) -> WatchSummary:
        return cls(
            stream_id,
            state,
            status.video,
            status.frames_in,
            status.frames_analysed,
            status.dropped,
            status.alarms_raised,
            status.reconnects,
        )
