"""Where the bundled MediaPipe model files live."""

from __future__ import annotations

from pathlib import Path

MEDIAPIPE_DIR = Path(__file__).resolve().parent.parent / "models" / "mediapipe"
FACE_DETECTOR_MODEL = MEDIAPIPE_DIR / "face_detection_full_range_sparse.tflite"
CLOSE_FACE_DETECTOR_MODEL = MEDIAPIPE_DIR / "face_detection_short_range.tflite"
FACE_LANDMARK_MODEL = MEDIAPIPE_DIR / "face_landmark.tflite"
