"""Multi-face tracking with stable ids.

The detector runs every few frames (or when nothing is tracked); between detections each face is
followed by re-running the landmark model on a region framed from its previous landmarks, as
MediaPipe's face mesh does. Detections are matched to tracks by box overlap; a face that vanishes
keeps its id for a short while so that a brief occlusion does not start a new track.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from swapwatch.faces.detection import Detections, FaceDetector
from swapwatch.faces.geometry import (
    RotatedSquare,
    box_iou,
    landmark_roi_from_detection,
    landmark_roi_from_landmarks,
)
from swapwatch.faces.landmarks import LandmarkModel
from swapwatch.timing import NullTimer, StageTimer, timed


@dataclass(frozen=True, slots=True)
class TrackerConfig:
    detect_every: int = 5  # analysed frames between detector runs while faces are tracked
    detect_every_idle: int = 2  # ... while no face is tracked (a new face waits at most this)
    min_presence: float = 0.5  # landmark model's face probability below which a track is lost
    match_iou: float = 0.3  # box overlap for a detection to belong to a track
    duplicate_iou: float = 0.5  # two tracks overlapping more than this are one face
    max_lost_frames: int = 15  # analysed frames a lost track keeps its id for re-detection
    max_faces: int = 8


@dataclass(frozen=True, slots=True)
class TrackedFace:
    """A face followed in the current frame."""

    track_id: int
    points: np.ndarray  # (468, 3) landmarks in pixels
    box: np.ndarray  # (4,) axis-aligned box around the landmarks
    presence: float
    age: int  # frames this track has been seen in, including this one


@dataclass(slots=True)
class _Track:
    track_id: int
    roi: RotatedSquare
    box: np.ndarray
    age: int = 0
    lost_for: int = 0


def _landmark_box(points: np.ndarray) -> np.ndarray:
    return np.array(
        [points[:, 0].min(), points[:, 1].min(), points[:, 0].max(), points[:, 1].max()],
        dtype=np.float32,
    )


class FaceTracker:
    """Finds and follows faces frame to frame. `update` is the one verb."""

    def __init__(
        self,
        detector: FaceDetector,
        landmarks: LandmarkModel,
        config: TrackerConfig | None = None,
        timer: StageTimer | None = None,
    ) -> None:
        self._timer = timer or NullTimer()
        self._detector = detector
        self._landmarks = landmarks
        self.config = config or TrackerConfig()
        self.reset()

    def reset(self) -> None:
        """Forget every track, as for a new stream; the next frame runs the detector."""
        self._tracks: list[_Track] = []
        self._next_id = 1
        self._since_detection = 1 << 30

    def state(self) -> dict[str, Any]:
        """Everything needed to follow the same faces under the same ids elsewhere (JSON)."""
        return {
            "next_id": self._next_id,
            "since_detection": self._since_detection,
            "tracks": [
                {
                    "track_id": t.track_id,
                    "roi": {k: float(v) for k, v in asdict(t.roi).items()},
                    "box": [float(v) for v in t.box],
                    "age": t.age,
                    "lost_for": t.lost_for,
                }
                for t in self._tracks
            ],
        }

    def restore(self, state: dict[str, Any]) -> None:
        """Take up the tracks and the id counter of `state()`."""
        self._next_id = int(state["next_id"])
        self._since_detection = int(state["since_detection"])
        self._tracks = [
            _Track(
                track_id=int(t["track_id"]),
                roi=RotatedSquare(**t["roi"]),
                box=np.array(t["box"], dtype=np.float32),
                age=int(t["age"]),
                lost_for=int(t["lost_for"]),
            )
            for t in state["tracks"]
        ]

    @property
    def track_ids(self) -> frozenset[int]:
        """Ids of the tracks held, followed or briefly lost."""
        return frozenset(t.track_id for t in self._tracks)

    def update(self, image: np.ndarray) -> list[TrackedFace]:
        """Faces in this frame (RGB uint8), each with its track id."""
        following = any(t.lost_for == 0 for t in self._tracks)
        interval = self.config.detect_every if following else self.config.detect_every_idle
        if self._since_detection >= interval - 1:
            with timed(self._timer, "detection"):
                detections = self._detector.detect(image)
            self._adopt(detections)
            self._since_detection = 0
        else:
            self._since_detection += 1
        with timed(self._timer, "landmarks"):
            faces = self._follow(image)
        faces = self._without_duplicates(faces)
        self._tracks = [t for t in self._tracks if t.lost_for <= self.config.max_lost_frames]
        return faces

    def _adopt(self, detections: Detections) -> None:
        """Match detections to tracks; unmatched detections start (or revive) tracks."""
        if not len(detections):
            return
        order = np.argsort(-detections.scores)
        boxes, keypoints = detections.boxes[order], detections.keypoints[order]
        iou = box_iou(boxes, np.array([t.box for t in self._tracks]).reshape(-1, 4))
        taken: set[int] = set()
        for i in range(len(boxes)):
            j = int(np.argmax(iou[i])) if iou.shape[1] else -1
            if j >= 0 and iou[i, j] >= self.config.match_iou and j not in taken:
                taken.add(j)
                track = self._tracks[j]
                if track.lost_for:  # a lost face reappears where it was: same id
                    track.roi = landmark_roi_from_detection(boxes[i], keypoints[i])
                    track.lost_for = 0
                continue
            if sum(1 for t in self._tracks if t.lost_for == 0) >= self.config.max_faces:
                break
            self._next_id += 1
            self._tracks.append(
                _Track(
                    track_id=self._next_id - 1,
                    roi=landmark_roi_from_detection(boxes[i], keypoints[i]),
                    box=boxes[i].astype(np.float32),
                )
            )

    def _follow(self, image: np.ndarray) -> list[TrackedFace]:
        """Run the landmark model on every followed track; mark the ones whose face is gone."""
        faces: list[TrackedFace] = []
        for track in self._tracks:
            if track.lost_for:
                track.lost_for += 1
                continue
            mesh = self._landmarks.run(image, track.roi)
            if mesh.presence < self.config.min_presence:
                track.lost_for = 1
                continue
            track.box = _landmark_box(mesh.points)
            track.roi = landmark_roi_from_landmarks(mesh.points)
            track.age += 1
            faces.append(
                TrackedFace(
                    track_id=track.track_id,
                    points=mesh.points,
                    box=track.box,
                    presence=mesh.presence,
                    age=track.age,
                )
            )
        return faces

    def _without_duplicates(self, faces: list[TrackedFace]) -> list[TrackedFace]:
        """Two tracks that converged on one face: the older one keeps it."""
        if len(faces) < 2:
            return faces
        iou = box_iou(np.stack([f.box for f in faces]), np.stack([f.box for f in faces]))
        by_age = sorted(range(len(faces)), key=lambda i: (-faces[i].age, faces[i].track_id))
        dropped: set[int] = set()
        for rank, i in enumerate(by_age):
            if i in dropped:
                continue
            dropped.update(j for j in by_age[rank + 1 :] if iou[i, j] > self.config.duplicate_iou)
        if not dropped:
            return faces
        gone = {faces[j].track_id for j in dropped}
        self._tracks = [t for t in self._tracks if t.track_id not in gone]
        return [f for j, f in enumerate(faces) if j not in dropped]
