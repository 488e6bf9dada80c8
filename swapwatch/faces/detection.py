"""Face detection with MediaPipe's BlazeFace detectors (Tasks API): full range by default,
short range for faces close to the camera."""

from __future__ import annotations

import threading
import traceback
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from swapwatch.errors import ModelError
from swapwatch.models import FACE_DETECTOR_MODEL
from swapwatch.native_logs import native_stderr_silenced

# MediaPipe 1.x's Python bindings set the `argtypes` of its shared ctypes functions again each
# time a task is made and each time an `mp.Image` is, while other threads may be calling those
# same functions: a call then reads converters that were just freed ("argument 2: TypeError:
# 'NoneType' object is not callable", seen when two scans built their analysers at once).
# Every use of those bindings in this process goes through this lock. Only face detection uses
# them (every few frames; the landmark model runs on LiteRT), so streams rarely wait on it.
_BINDINGS = threading.Lock()


@dataclass(frozen=True, slots=True)
class Detections:
    """Faces found in one image, as parallel arrays."""

    boxes: np.ndarray  # (N, 4) float32 x0, y0, x1, y1 in pixels
    scores: np.ndarray  # (N,) float32 in [0, 1]
    keypoints: np.ndarray  # (N, 6, 2) float32 pixels: right eye, left eye, nose, mouth, ears

    def __post_init__(self) -> None:
        n = len(self.boxes)
        if (
            self.boxes.shape != (n, 4)
            or self.scores.shape != (n,)
            or self.keypoints.shape != (n, 6, 2)
        ):
            raise ValueError(
                f"inconsistent detections: boxes {self.boxes.shape}, scores {self.scores.shape}, "
                f"keypoints {self.keypoints.shape}"
            )

    def __len__(self) -> int:
        return len(self.boxes)

    @classmethod
    def empty(cls) -> Detections:
        return cls(
            boxes=np.zeros((0, 4), np.float32),
            scores=np.zeros((0,), np.float32),
            keypoints=np.zeros((0, 6, 2), np.float32),
        )


class FaceDetector:
    """A MediaPipe face detector: the full-range model by default (finds faces down to ~50 px),
    or the short-range one given as `model_path`. Close it when done."""

    def __init__(
        self,
        min_confidence: float = 0.5,
        model_path: Path = FACE_DETECTOR_MODEL,
        quiet: bool = False,
    ) -> None:
        from mediapipe.tasks.python import BaseOptions, vision

        # MediaPipe warns on stderr the first time it sees each image size (buffer alignment).
        self._quiet = quiet
        self._sizes_seen: set[tuple[int, ...]] = set()
        if not model_path.is_file():
            raise ModelError(f"face detector model missing: {model_path}")
        options = vision.FaceDetectorOptions(
            base_options=BaseOptions(model_asset_path=str(model_path)),
            running_mode=vision.RunningMode.IMAGE,
            min_detection_confidence=min_confidence,
        )
        with _BINDINGS:
            self._detector = vision.FaceDetector.create_from_options(options)

    def detect(self, image: np.ndarray) -> Detections:
        """Faces in an RGB uint8 image."""
        import mediapipe as mp

        height, width = image.shape[:2]
        first_of_its_size = image.shape not in self._sizes_seen
        self._sizes_seen.add(image.shape)
        with _BINDINGS, native_stderr_silenced(self._quiet and first_of_its_size):
            # The picture's native buffer is freed through the same bindings: here, under the
            # lock, also when detect raises (its traceback would keep the picture alive).
            picture = mp.Image(image_format=mp.ImageFormat.SRGB, data=np.ascontiguousarray(image))
            try:
                result = self._detector.detect(picture)
            except BaseException as exc:
                traceback.clear_frames(exc.__traceback__)
                raise
            finally:
                del picture
        if not result.detections:
            return Detections.empty()
        boxes, scores, keypoints = [], [], []
        for det in result.detections:
            bb = det.bounding_box
            boxes.append(
                [bb.origin_x, bb.origin_y, bb.origin_x + bb.width, bb.origin_y + bb.height]
            )
            scores.append(det.categories[0].score if det.categories else 0.0)
            kps = [(k.x * width, k.y * height) for k in det.keypoints[:6]]
            kps += [kps[-1] if kps else (0.0, 0.0)] * (6 - len(kps))
            keypoints.append(kps)
        return Detections(
            boxes=np.asarray(boxes, np.float32),
            scores=np.asarray(scores, np.float32),
            keypoints=np.asarray(keypoints, np.float32),
        )

    def close(self) -> None:
        with _BINDINGS:
            self._detector.close()
