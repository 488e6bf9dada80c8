"""The latest state of each face track of a stream, folded from frame results."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from swapwatch.stream.pipeline import FrameResult

TRACK_TIMEOUT_S = 5.0  # media seconds a track stays after it was last seen


@dataclass(slots=True)
class TrackStatus:
    track_id: int
    first_seen: float = 0.0  # media time
    last_seen: float = 0.0
    score: float = 0.0  # display probability (EMA) after the latest scored frame
    cusum: float = 0.0
    alarm: bool = False
    frames_scored: int = 0
    skip_reason: str | None = None  # why the latest frame was not scored

    def to_json(self) -> dict[str, Any]:
        """As the service shows it."""
        return {
            "track_id": self.track_id,
            "score": round(self.score, 4),
            "verdict": "fake" if self.alarm else "real" if self.frames_scored else "unknown",
            "alarm": self.alarm,
            "frames_scored": self.frames_scored,
            "skip_reason": self.skip_reason,
        }


class TrackTable:
    """Face tracks by id; a track not seen for `timeout` media seconds is forgotten."""

    def __init__(self, timeout: float = TRACK_TIMEOUT_S) -> None:
        self.timeout = timeout
        self.tracks: dict[int, TrackStatus] = {}

    def fold(self, result: FrameResult) -> None:
        """Take one frame's faces."""
        for face in result.faces:
            track = self.tracks.get(face.track_id)
            if track is None:
                track = self.tracks[face.track_id] = TrackStatus(face.track_id, result.time)
            track.last_seen = result.time
            track.skip_reason = face.skip_reason
            if (update := face.update) is not None:
                track.score, track.cusum, track.alarm = update.score, update.cusum, update.alarm
                track.frames_scored += 1
        gone = [t for t, s in self.tracks.items() if result.time - s.last_seen > self.timeout]
        for track_id in gone:
            del self.tracks[track_id]

    @property
    def alarm(self) -> bool:
        return any(t.alarm for t in self.tracks.values())

    def sorted(self) -> list[TrackStatus]:
        return sorted(self.tracks.values(), key=lambda t: t.track_id)

    def state(self) -> list[dict[str, Any]]:
        return [asdict(t) for t in self.sorted()]

    def restore(self, state: list[dict[str, Any]]) -> None:
        self.tracks = {int(t["track_id"]): TrackStatus(**t) for t in state}
