"""The face in its own upright frame, from its 468 landmarks: which way is up, where the brows
and the chin are. Self-blend masks (training) and graphics swaps (evaluation) are drawn in it."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from swapwatch.faces.geometry import CHIN

# MediaPipe face mesh indices (468-point topology).
EYEBROWS = np.array(
    [46, 53, 52, 65, 55, 70, 63, 105, 66, 107, 276, 283, 282, 295, 285, 300, 293, 334, 296, 336]
)


def face_axes(landmarks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Unit vectors (across, up) of the face: up points from the chin to the eyebrows."""
    pts = landmarks[:, :2].astype(np.float64)
    up = pts[EYEBROWS].mean(axis=0) - pts[CHIN]
    norm = float(np.hypot(*up))
    up = up / norm if norm > 0 else np.array([0.0, -1.0])
    return np.array([-up[1], up[0]]), up


@dataclass(frozen=True, slots=True)
class InnerFace:
    """The inner face in its own upright frame: levels along `up`, positions along `across`."""

    across: np.ndarray  # unit vector, image coordinates
    up: np.ndarray  # unit vector, chin to brows
    centre_across: float  # middle of the landmarks' extent across the face
    half_width: float  # 40 % of that extent: cheek to cheek, without the ears
    brows: float  # level of the highest eyebrow point
    chin: float  # level of the chin

    def point(self, across: float, level: float) -> np.ndarray:
        return np.asarray(across * self.across + level * self.up)


def inner_face(landmarks: np.ndarray) -> InnerFace:
    pts = landmarks[:, :2].astype(np.float64)
    across, up = face_axes(landmarks)
    x, y = pts @ across, pts @ up
    return InnerFace(
        across=across,
        up=up,
        centre_across=0.5 * float(x.min() + x.max()),
        half_width=0.4 * float(np.ptp(x)),
        brows=float(y[EYEBROWS].max()),
        chin=float(y[CHIN]),
    )
