"""The 468-point MediaPipe face mesh model, run directly in LiteRT."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from swapwatch.errors import ModelError
from swapwatch.faces.geometry import RotatedSquare, to_image, warp
from swapwatch.models import FACE_LANDMARK_MODEL

INPUT_SIZE = 192
NUM_LANDMARKS = 468


@dataclass(frozen=True, slots=True)
class FaceMesh:
    """Landmarks of one face in image pixels, and how sure the model is that a face is there."""

    points: np.ndarray  # (468, 3) float32: x, y in pixels; z in pixels, relative depth
    presence: float  # probability in [0, 1] that the ROI holds a face


class LandmarkModel:
    """Runs face_landmark.tflite on a rotated square region of a frame."""

    def __init__(self, model_path: Path = FACE_LANDMARK_MODEL, threads: int = 1) -> None:
        from ai_edge_litert.interpreter import Interpreter

        if not model_path.is_file():
            raise ModelError(f"face landmark model missing: {model_path}")
        self._interpreter = Interpreter(model_path=str(model_path), num_threads=threads)
        self._interpreter.allocate_tensors()
        (inp,) = self._interpreter.get_input_details()
        if tuple(inp["shape"]) != (1, INPUT_SIZE, INPUT_SIZE, 3):
            raise ModelError(f"unexpected landmark model input {inp['shape']}")
        self._input_index = inp["index"]
        outputs = {
            int(np.prod(o["shape"])): o["index"] for o in self._interpreter.get_output_details()
        }
        try:
            self._points_index = outputs[NUM_LANDMARKS * 3]
            self._presence_index = outputs[1]
        except KeyError as exc:
            raise ModelError("landmark model has unexpected outputs") from exc
        self._buffer = np.zeros((1, INPUT_SIZE, INPUT_SIZE, 3), np.float32)

    def run(self, image: np.ndarray, roi: RotatedSquare) -> FaceMesh:
        """Landmarks of the face inside `roi` of an RGB uint8 image."""
        patch = warp(image, roi, INPUT_SIZE)
        np.multiply(patch, 1.0 / 255.0, out=self._buffer[0], casting="unsafe")
        self._interpreter.set_tensor(self._input_index, self._buffer)
        self._interpreter.invoke()
        raw = self._interpreter.get_tensor(self._points_index).reshape(NUM_LANDMARKS, 3)
        logit = float(self._interpreter.get_tensor(self._presence_index).reshape(()))
        points = to_image(raw, roi, INPUT_SIZE).astype(np.float32)
        presence = float(1.0 / (1.0 + np.exp(-np.clip(logit, -30.0, 30.0))))
        return FaceMesh(points=points, presence=presence)
