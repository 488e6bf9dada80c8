"""A hand over the face while the landmarks stay on it: the face's colours change.

Under a real hand the landmark model keeps fitting the face it saw a moment before, and the face
detector keeps its confidence (on the shared live-streamer recordings, fingers over a mouth left
the detector's confidence where it was and the track never broke). What a hand does change is
the face's picture: a band of skin, lips and shadow under the landmarks becomes fingers, with
their own colour and shading. So the measure compares the aligned face crop (the detector's own
crop, which follows the landmarks) with the same face's crop from just before, colour by colour.

The picture is the inner part of the aligned crop (the face without background), shrunk to a few
hundred cells. Each cell keeps its chromaticity (r and g over r + g + b: brightness and exposure
changes cancel) minus the face's mean chromaticity (a colour cast over the whole face, such as a
screen's light, cancels too). The change is the mean absolute difference of those values against
the reference: a hand moves a large part of the face away from the face's own colour layout;
talking, blinking and turning move little of it.

Chosen against the face detector's confidence, the landmark model's presence and three other
picture measures by benchmarks/hand_occlusion.py (the rule was written first: the most hand
frames found at the change that only 2 % of frames without a hand reach). The threshold,
`COVER_CHANGE`, is that 2 % point, rounded.
"""

from __future__ import annotations

import cv2
import numpy as np

# The centre of the aligned crop that holds face, not background (the crop is 1.3x the face).
INNER_SHARE = 0.6875
CELLS = 24  # per side
# Measured on 31 recordings (benchmarks/hand_occlusion.py): 2 % of frames without a hand changed
# by more than 0.058 from the face at the prompt; fingers over a mouth, 0.073-0.183 (5th-95th
# percentile, one person).
COVER_CHANGE = 0.06


def face_colours(crop: np.ndarray) -> np.ndarray:
    """The colour layout of a face from its aligned crop (RGB uint8, any square size):
    (CELLS, CELLS, 2) chromaticity relative to the face's mean chromaticity."""
    if crop.ndim != 3 or crop.shape[2] != 3 or crop.shape[0] != crop.shape[1]:
        raise ValueError(f"expected a square RGB crop, got {crop.shape}")
    side = crop.shape[0]
    start = round(side * (1 - INNER_SHARE) / 2)
    inner = crop[start : side - start, start : side - start].astype(np.float32)
    cells = cv2.resize(inner, (CELLS, CELLS), interpolation=cv2.INTER_AREA)
    total = np.maximum(cells.sum(axis=2, keepdims=True), 1.0)
    chroma = (cells / total)[..., :2]
    return np.asarray(chroma - chroma.reshape(-1, 2).mean(axis=0), dtype=np.float32)


def reference_colours(layouts: list[np.ndarray]) -> np.ndarray:
    """The face's layout over several frames (the median: one blink or glitch does not count)."""
    if not layouts:
        raise ValueError("a reference needs at least one layout")
    return np.asarray(np.median(np.stack(layouts), axis=0), dtype=np.float32)


def colour_change(reference: np.ndarray, current: np.ndarray) -> float:
    """How far a face's colour layout moved from its reference (0: the same face, unchanged)."""
    if reference.shape != current.shape:
        raise ValueError(f"layouts differ in shape: {reference.shape} and {current.shape}")
    return float(np.abs(current - reference).sum(axis=2).mean())
