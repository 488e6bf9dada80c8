"""Several views of a still picture's face crop, to be scored together.

A recording's verdict averages many frames, each a slightly different view of the face (pose,
light, codec noise); a picture has one, so its score is as noisy as a single frame's, and real
photos fill the upper tail of real scores. Scoring a few views of the same crop (mirrored, a
little closer) and averaging their logits gives a picture some of that averaging, as test-time
augmentation does in published detectors.
"""

from __future__ import annotations

import cv2
import numpy as np

ZOOM = 0.92  # the closer views keep this share of the crop's side, about its centre
VIEWS = 4  # the crop, mirrored, closer, and closer mirrored


def picture_views(crops: np.ndarray) -> np.ndarray:
    """(N, S, S, 3) crops -> (N * VIEWS, S, S, 3), each crop's views next to each other."""
    if crops.ndim != 4 or crops.shape[1] != crops.shape[2]:
        raise ValueError(f"expected (N, S, S, 3) square crops, got {crops.shape}")
    side = crops.shape[1]
    inner = round(side * ZOOM)
    start = (side - inner) // 2
    views = np.empty((len(crops), VIEWS, side, side, crops.shape[3]), crops.dtype)
    for i, crop in enumerate(crops):
        closer = cv2.resize(
            crop[start : start + inner, start : start + inner],
            (side, side),
            interpolation=cv2.INTER_LINEAR,
        )
        views[i, 0] = crop
        views[i, 1] = crop[:, ::-1]
        views[i, 2] = closer
        views[i, 3] = closer[:, ::-1]
    return views.reshape(len(crops) * VIEWS, side, side, crops.shape[3])
