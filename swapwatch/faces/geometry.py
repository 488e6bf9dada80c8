"""Crop geometry: one rotated square, used for the landmark ROI and for the aligned face crop.

The aligned crop produced by `aligned_square` + `warp` is the only crop geometry in swapwatch:
training and inference both call it, so the detector sees faces framed identically.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

# Landmark indices in the 468-point MediaPipe face mesh (subject's right = image left).
RIGHT_EYE_OUTER, RIGHT_EYE_INNER = 33, 133
LEFT_EYE_OUTER, LEFT_EYE_INNER = 263, 362
NOSE_TIP = 1
RIGHT_CHEEK, LEFT_CHEEK = 234, 454
FOREHEAD, CHIN = 10, 152

# How much wider than the face the aligned crop is: enough background to see the blend boundary.
ALIGNED_MARGIN = 1.3
# MediaPipe's own framing for the landmark model input.
LANDMARK_ROI_MARGIN = 1.5


@dataclass(frozen=True, slots=True)
class RotatedSquare:
    """A square region of an image: centre (x, y) in pixels, side in pixels, angle in radians."""

    cx: float
    cy: float
    side: float
    angle: float  # rotation of the square's x axis from the image x axis, counter-clockwise-down

    def to_output(self, size: int) -> np.ndarray:
        """2x3 affine matrix mapping image pixels to an output square of `size` pixels."""
        scale = size / self.side
        cos, sin = math.cos(self.angle) * scale, math.sin(self.angle) * scale
        # Rotate by -angle about the centre, scale, then move the centre to the output centre.
        half = size / 2.0
        return np.array(
            [
                [cos, sin, half - cos * self.cx - sin * self.cy],
                [-sin, cos, half + sin * self.cx - cos * self.cy],
            ],
            dtype=np.float64,
        )

    def corners(self) -> np.ndarray:
        """The four corners in image pixels (4, 2)."""
        h = self.side / 2.0
        cos, sin = math.cos(self.angle), math.sin(self.angle)
        local = np.array([[-h, -h], [h, -h], [h, h], [-h, h]])
        rot = np.array([[cos, -sin], [sin, cos]])
        return np.asarray(local @ rot.T + [self.cx, self.cy])

    def bounds(self) -> np.ndarray:
        """Axis-aligned box (x0, y0, x1, y1) around the square."""
        c = self.corners()
        return np.array([c[:, 0].min(), c[:, 1].min(), c[:, 0].max(), c[:, 1].max()])


def eye_angle(right_eye: np.ndarray, left_eye: np.ndarray) -> float:
    """Angle of the line from the subject's right eye (image left) to the left eye."""
    d = np.asarray(left_eye, dtype=np.float64) - np.asarray(right_eye, dtype=np.float64)
    return math.atan2(float(d[1]), float(d[0]))


def square_around(points: np.ndarray, angle: float, margin: float) -> RotatedSquare:
    """The smallest square at `angle` holding `points`, grown by `margin` about its centre."""
    pts = np.asarray(points, dtype=np.float64)[:, :2]
    cos, sin = math.cos(angle), math.sin(angle)
    # Coordinates in the square's own frame.
    u = pts[:, 0] * cos + pts[:, 1] * sin
    v = -pts[:, 0] * sin + pts[:, 1] * cos
    u0, u1, v0, v1 = u.min(), u.max(), v.min(), v.max()
    uc, vc = (u0 + u1) / 2.0, (v0 + v1) / 2.0
    cx, cy = uc * cos - vc * sin, uc * sin + vc * cos
    side = max(u1 - u0, v1 - v0) * margin
    return RotatedSquare(cx=cx, cy=cy, side=max(side, 1.0), angle=angle)


def face_extent(landmarks: np.ndarray) -> tuple[float, float]:
    """Width and height of the face in pixels, measured along the eye line."""
    pts = np.asarray(landmarks, dtype=np.float64)[:, :2]
    angle = landmarks_angle(landmarks)
    cos, sin = math.cos(angle), math.sin(angle)
    u = pts[:, 0] * cos + pts[:, 1] * sin
    v = -pts[:, 0] * sin + pts[:, 1] * cos
    return float(u.max() - u.min()), float(v.max() - v.min())


def landmarks_angle(landmarks: np.ndarray) -> float:
    return eye_angle(landmarks[RIGHT_EYE_OUTER, :2], landmarks[LEFT_EYE_OUTER, :2])


def aligned_square(landmarks: np.ndarray, margin: float = ALIGNED_MARGIN) -> RotatedSquare:
    """The canonical detector crop of a face from its 468 landmarks (eyes level)."""
    return square_around(landmarks, landmarks_angle(landmarks), margin)


def landmark_roi_from_landmarks(landmarks: np.ndarray) -> RotatedSquare:
    """Where to look for the same face in the next frame (MediaPipe's tracking framing)."""
    return square_around(landmarks, landmarks_angle(landmarks), LANDMARK_ROI_MARGIN)


def landmark_roi_from_detection(box: np.ndarray, keypoints: np.ndarray) -> RotatedSquare:
    """Landmark-model framing from a detector box (x0, y0, x1, y1) and its six keypoints."""
    x0, y0, x1, y1 = (float(v) for v in box)
    angle = eye_angle(keypoints[0], keypoints[1])
    side = max(x1 - x0, y1 - y0) * LANDMARK_ROI_MARGIN
    return RotatedSquare(cx=(x0 + x1) / 2.0, cy=(y0 + y1) / 2.0, side=side, angle=angle)


def warp(image: np.ndarray, square: RotatedSquare, size: int) -> np.ndarray:
    """Cut `square` out of `image` as a size x size picture (borders replicate the edge)."""
    matrix = square.to_output(size)
    return cv2.warpAffine(
        image, matrix, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE
    )


def to_image(points: np.ndarray, square: RotatedSquare, size: int) -> np.ndarray:
    """Map points given in a warped crop's pixels back to image pixels."""
    inverse = cv2.invertAffineTransform(square.to_output(size))
    pts = np.asarray(points, dtype=np.float64)
    xy = pts[:, :2] @ inverse[:, :2].T + inverse[:, 2]
    if pts.shape[1] == 2:
        return xy
    z = pts[:, 2:3] * (square.side / size)
    return np.concatenate([xy, z], axis=1)


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU matrix between boxes a (N, 4) and b (M, 4), both x0, y0, x1, y1."""
    a = np.asarray(a, dtype=np.float64).reshape(-1, 4)
    b = np.asarray(b, dtype=np.float64).reshape(-1, 4)
    x0 = np.maximum(a[:, None, 0], b[None, :, 0])
    y0 = np.maximum(a[:, None, 1], b[None, :, 1])
    x1 = np.minimum(a[:, None, 2], b[None, :, 2])
    y1 = np.minimum(a[:, None, 3], b[None, :, 3])
    inter = np.clip(x1 - x0, 0, None) * np.clip(y1 - y0, 0, None)
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-9), 0.0)
