"""Faces of one frame, ready to score: tracked, aligned, and quality-gated."""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from swapwatch.faces.detection import FaceDetector
from swapwatch.faces.geometry import RotatedSquare, aligned_square, warp
from swapwatch.faces.landmarks import LandmarkModel
from swapwatch.faces.quality import QualityConfig, QualityReport, assess
from swapwatch.faces.tracking import FaceTracker, TrackerConfig
from swapwatch.models import CLOSE_FACE_DETECTOR_MODEL
from swapwatch.timing import NullTimer, StageTimer, timed


@dataclass(frozen=True, slots=True)
class FaceBatch:
    """Every tracked face of one frame, as parallel arrays (one row per face)."""

    track_ids: np.ndarray  # (N,) int64
    boxes: np.ndarray  # (N, 4) float32, x0, y0, x1, y1 in frame pixels
    crops: np.ndarray  # (N, S, S, 3) uint8 aligned crops
    quality: tuple[QualityReport, ...]
    points: np.ndarray  # (N, 468, 3) float32 landmarks in frame pixels

    def __post_init__(self) -> None:
        n = len(self.track_ids)
        sizes = {len(self.crops), len(self.quality), len(self.points)}
        if self.boxes.shape != (n, 4) or sizes != {n}:
            raise ValueError("FaceBatch arrays disagree in length")

    def __len__(self) -> int:
        return len(self.track_ids)

    @property
    def usable(self) -> np.ndarray:
        """(N,) bool: faces that passed every quality gate."""
        return np.array([q.usable for q in self.quality], dtype=bool)


# Border added around a picture in which no face was found, as a fraction of its longer side.
PICTURE_BORDER = 0.5
BORDER_GREY = 128
# A larger picture is searched again at this longer side (the detector sees 256 px anyway).
PADDED_SEARCH_SIDE = 1280


@dataclass(frozen=True, slots=True)
class PictureFaces:
    """Faces of a still picture and the picture their coordinates refer to: the picture
    itself, or (when the face filled it) a copy scaled by `scale` inside a `border`."""

    batch: FaceBatch
    image: np.ndarray
    border: int = 0
    scale: float = 1.0

    def boxes_in_picture(self) -> np.ndarray:
        """(N, 4) face boxes in the original picture's pixels."""
        return (self.batch.boxes - self.border) / self.scale


def pad_picture(image: np.ndarray) -> tuple[np.ndarray, int, float]:
    """`image`, scaled down to PADDED_SEARCH_SIDE if larger, inside a uniform grey border of
    PICTURE_BORDER times its longer side; with the border and the scale."""
    scale = min(1.0, PADDED_SEARCH_SIDE / max(image.shape[:2]))
    if scale < 1.0:
        size = (round(image.shape[1] * scale), round(image.shape[0] * scale))
        image = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
    border = round(PICTURE_BORDER * max(image.shape[:2]))
    padded = cv2.copyMakeBorder(
        image, border, border, border, border, cv2.BORDER_CONSTANT, value=(BORDER_GREY,) * 3
    )
    return padded, border, scale


class FaceAnalyzer:
    """Detector + landmarks + tracker + alignment + quality gates for one stream."""

    def __init__(
        self,
        crop_size: int = 224,
        tracker: TrackerConfig | None = None,
        quality: QualityConfig | None = None,
        min_detection_confidence: float = 0.5,
        timer: StageTimer | None = None,
        quiet: bool = False,
    ) -> None:
        """`quiet` keeps MediaPipe's and LiteRT's native log lines off stderr."""
        self.crop_size = crop_size
        self._timer = timer or NullTimer()
        self.quality_config = quality or QualityConfig()
        self._min_confidence = min_detection_confidence
        self._quiet = quiet
        self._detector = FaceDetector(min_confidence=min_detection_confidence, quiet=quiet)
        try:
            self._landmarks = LandmarkModel()
        except BaseException:
            self._detector.close()  # here, not by the garbage collector in some other thread
            raise
        self._tracker = FaceTracker(self._detector, self._landmarks, tracker, self._timer)
        # Made on the first picture that needs them: a stream never does.
        self._close_detector: FaceDetector | None = None
        self._close_range: FaceTracker | None = None

    def warmup(self) -> None:
        """Run both face models once, so the first real frame is not slow."""
        blank = np.zeros((360, 640, 3), np.uint8)
        self._detector.detect(blank)
        self._landmarks.run(blank, RotatedSquare(cx=320, cy=180, side=200, angle=0.0))

    def reset(self) -> None:
        """Forget tracked faces (a new stream or an unrelated picture follows)."""
        self._tracker.reset()
        if self._close_range is not None:
            self._close_range.reset()

    @property
    def tracker(self) -> FaceTracker:
        return self._tracker

    def analyse(self, image: np.ndarray) -> FaceBatch:
        return self._analyse_with(self._tracker, image)

    def _analyse_with(self, tracker: FaceTracker, image: np.ndarray) -> FaceBatch:
        faces = tracker.update(image)
        size = self.crop_size
        crops = np.empty((len(faces), size, size, 3), np.uint8)
        reports = []
        with timed(self._timer, "crop"):
            for i, face in enumerate(faces):
                crops[i] = warp(image, aligned_square(face.points), size)
                reports.append(assess(crops[i], face.points, image.shape, self.quality_config))
        return FaceBatch(
            track_ids=np.array([f.track_id for f in faces], dtype=np.int64),
            boxes=np.array([f.box for f in faces], dtype=np.float32).reshape(-1, 4),
            crops=crops,
            quality=tuple(reports),
            points=np.array([f.points for f in faces], dtype=np.float32).reshape(-1, 468, 3),
        )

    def analyse_picture(self, image: np.ndarray, close_range: bool = True) -> PictureFaces:
        """Faces of a still picture, unrelated to any frame before it. A face that fills the
        picture (an ID photo, a tight crop) escapes the full-range detector; when none is
        found the picture is searched again inside a grey border (PICTURE_BORDER of its longer
        side on each side), and, with `close_range`, that bordered copy once more with
        MediaPipe's short-range detector, made for faces within about 2 m of the camera (a
        selfie held close), which the full-range one misses even with the border. Every
        picture gets the same rule, real or fake; the crop then reaches into the border the
        same way for both. Training's cached crops search without `close_range`."""
        self.reset()
        batch = self.analyse(image)
        if len(batch):
            return PictureFaces(batch, image)
        self.reset()
        padded, border, scale = pad_picture(image)
        batch = self.analyse(padded)
        if len(batch) or not close_range:
            return PictureFaces(batch, padded, border, scale)
        self.reset()
        return PictureFaces(
            self._analyse_with(self._close_range_tracker(), padded), padded, border, scale
        )

    def _close_range_tracker(self) -> FaceTracker:
        if self._close_range is None:
            self._close_detector = FaceDetector(
                min_confidence=self._min_confidence,
                model_path=CLOSE_FACE_DETECTOR_MODEL,
                quiet=self._quiet,
            )
            self._close_range = FaceTracker(
                self._close_detector, self._landmarks, self._tracker.config, self._timer
            )
        return self._close_range

    def close(self) -> None:
        try:
            self._detector.close()
        finally:
            if self._close_detector is not None:
                self._close_detector.close()
