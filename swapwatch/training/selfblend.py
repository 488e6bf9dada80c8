"""Self-blended fakes from real faces.

The idea (Shiohara & Yamasaki, "Detecting Deepfakes with Self-Blended Images", CVPR 2022): a face
swap leaves a blending boundary and a mismatch between the pasted face and its surroundings. Both
can be produced from a single real picture by blending a slightly altered copy of the face back
into itself. A detector trained to tell such blends from the untouched picture learns the traces
common to swap methods rather than the fingerprints of one generator.

This implementation is our own, written from that description:
- source: a copy of the frame with its colours shifted, its frequencies altered (blurred or
  sharpened, or resampled), and its face slightly moved and scaled;
- mask: the convex hull of the face landmarks, deformed by a smooth random displacement field,
  grown or shrunk, blurred with a random kernel, and scaled by a random blend ratio;
- fake = mask * source + (1 - mask) * target, with the untouched frame as target.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

# Blend ratios and how often each is drawn: full-strength blends dominate, as swaps paste fully.
BLEND_RATIOS = np.array([0.25, 0.5, 0.75, 1.0])
BLEND_WEIGHTS = np.array([0.1, 0.15, 0.25, 0.5])


@dataclass(frozen=True, slots=True)
class SelfBlendConfig:
    max_shift: float = 0.03  # of the face size, source displacement
    max_scale: float = 0.05  # source scale change, +- fraction
    max_colour_shift: float = 20.0  # per channel, 0-255 units
    max_deform: float = 0.06  # of the face size, mask boundary displacement
    max_grow: float = 0.08  # of the face size, mask dilation/erosion


@dataclass(frozen=True, slots=True)
class SelfBlend:
    fake: np.ndarray  # H x W x 3 uint8, the blended picture
    mask: np.ndarray  # H x W float32 in [0, 1], where and how much the source was blended in


def face_size(landmarks: np.ndarray) -> float:
    pts = landmarks[:, :2]
    return float(max(np.ptp(pts[:, 0]), np.ptp(pts[:, 1])))


def hull_mask(landmarks: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Filled convex hull of the landmarks, float32 0/1, of `shape` (H, W)."""
    mask = np.zeros(shape, np.uint8)
    hull = cv2.convexHull(np.round(landmarks[:, :2]).astype(np.int32))
    cv2.fillConvexPoly(mask, hull, 1)
    return mask.astype(np.float32)


def deform_mask(
    mask: np.ndarray, size: float, rng: np.random.Generator, config: SelfBlendConfig
) -> np.ndarray:
    """Move the mask boundary by a smooth random field, grow or shrink it, then blur it."""
    h, w = mask.shape
    amplitude = config.max_deform * size
    coarse = rng.uniform(-1.0, 1.0, (2, 5, 5)).astype(np.float32) * amplitude
    dx = cv2.resize(coarse[0], (w, h), interpolation=cv2.INTER_CUBIC)
    dy = cv2.resize(coarse[1], (w, h), interpolation=cv2.INTER_CUBIC)
    grid_x, grid_y = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    warped = cv2.remap(
        mask,
        grid_x + dx,
        grid_y + dy,
        cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_CONSTANT,
        borderValue=0,
    )
    grow = round(rng.uniform(-1.0, 1.0) * config.max_grow * size)
    if grow:
        kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * abs(grow) + 1,) * 2)
        warped = cv2.dilate(warped, kernel) if grow > 0 else cv2.erode(warped, kernel)
    sigma = rng.uniform(0.02, 0.08) * size
    soft = cv2.GaussianBlur(warped, (0, 0), sigmaX=max(sigma, 0.5))
    # Blurring lowers the inside too; renormalise so the centre of the face is fully blended.
    peak = float(soft.max())
    if peak > 0:
        soft = np.clip(soft / peak, 0.0, 1.0)
    return soft


def perturb_source(
    image: np.ndarray, landmarks: np.ndarray, rng: np.random.Generator, config: SelfBlendConfig
) -> np.ndarray:
    """A copy of the frame that differs in colour, frequency content and face placement."""
    size = face_size(landmarks)
    out = image.astype(np.float32)
    # Colour: per-channel shift, then brightness and contrast.
    out += rng.uniform(-1.0, 1.0, 3).astype(np.float32) * config.max_colour_shift
    contrast = rng.uniform(0.85, 1.15)
    out = (out - out.mean()) * contrast + out.mean() + rng.uniform(-12.0, 12.0)
    # Frequency: blur, sharpen or resample, each changes the spectrum differently.
    choice = rng.integers(0, 3)
    if choice == 0:
        out = cv2.GaussianBlur(out, (0, 0), sigmaX=rng.uniform(0.5, 1.5))
    elif choice == 1:
        blurred = cv2.GaussianBlur(out, (0, 0), sigmaX=1.0)
        out = out + rng.uniform(0.3, 1.0) * (out - blurred)
    else:
        h, w = out.shape[:2]
        factor = rng.uniform(0.4, 0.8)
        small = cv2.resize(
            out, (max(1, int(w * factor)), max(1, int(h * factor))), interpolation=cv2.INTER_AREA
        )
        out = cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)
    # Placement: a small scale about the face centre and a small shift.
    centre = landmarks[:, :2].mean(axis=0)
    scale = 1.0 + rng.uniform(-1.0, 1.0) * config.max_scale
    shift = rng.uniform(-1.0, 1.0, 2) * config.max_shift * size
    matrix = np.array(
        [
            [scale, 0.0, (1 - scale) * centre[0] + shift[0]],
            [0.0, scale, (1 - scale) * centre[1] + shift[1]],
        ]
    )
    placed: np.ndarray = cv2.warpAffine(
        out,
        matrix,
        (out.shape[1], out.shape[0]),
        flags=cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_REFLECT,
    )
    return np.asarray(np.clip(placed, 0, 255), dtype=np.uint8)


def self_blend(
    image: np.ndarray,
    landmarks: np.ndarray,
    rng: np.random.Generator,
    config: SelfBlendConfig | None = None,
) -> SelfBlend:
    """Blend an altered copy of the face in `image` (RGB uint8) back into it."""
    config = config or SelfBlendConfig()
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError("image must be H x W x 3 uint8")
    size = face_size(landmarks)
    mask = deform_mask(hull_mask(landmarks, image.shape[:2]), size, rng, config)
    mask *= float(rng.choice(BLEND_RATIOS, p=BLEND_WEIGHTS))
    source = perturb_source(image, landmarks, rng, config)
    alpha = mask[..., None]
    fake = alpha * source.astype(np.float32) + (1.0 - alpha) * image.astype(np.float32)
    return SelfBlend(fake=np.clip(np.round(fake), 0, 255).astype(np.uint8), mask=mask)
