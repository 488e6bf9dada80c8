"""Self-blended fakes from real faces.

The idea (Shiohara & Yamasaki, "Detecting Deepfakes with Self-Blended Images", CVPR 2022): a face
swap leaves a blending boundary and a mismatch between the pasted face and its surroundings. Both
can be produced from a single real picture by blending a slightly altered copy of the face back
into itself. A detector trained to tell such blends from the untouched picture learns the traces
common to swap methods rather than the fingerprints of one generator.

This implementation is our own, written from that description:
- source: a copy of the frame with its face slightly moved and scaled, then its colours shifted
  and/or its frequencies altered. The two cues are drawn independently so that each can be the
  only one, and the frequency change is as often sharper as softer: a swap's face is softer than
  its frame where the generator's output is upscaled onto a large face, sharper where it is
  downscaled onto a small one, and a detector that learns only "softer inside" calls the second
  kind real;
- mask: one of the regions swap tools paste (the convex hull of all face landmarks; the hull from
  the eyebrows down, as "full face" masks leave the forehead alone; a box about the inner face, as
  tools that paste an aligned square back do), deformed by a smooth random displacement field,
  grown or shrunk, blurred with a random kernel, and scaled by a random blend ratio;
- fake = mask * source + (1 - mask) * target, with the untouched frame as target.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

import cv2
import numpy as np

from swapwatch.faces.upright import EYEBROWS, face_axes, inner_face

# Blend ratios and how often each is drawn: full-strength blends dominate, as swaps paste fully.
BLEND_RATIOS = np.array([0.25, 0.5, 0.75, 1.0])
BLEND_WEIGHTS = np.array([0.1, 0.15, 0.25, 0.5])


class MaskShape(enum.Enum):
    HULL = "hull"  # every landmark: forehead to chin
    BELOW_BROWS = "below-brows"  # eyebrows to chin
    BOX = "box"  # a rectangle upright in the face, brows to chin, cheek to cheek


@dataclass(frozen=True, slots=True)
class SelfBlendConfig:
    max_shift: float = 0.03  # of the face size, source displacement
    max_scale: float = 0.05  # source scale change, +- fraction
    max_colour_shift: float = 20.0  # per channel, 0-255 units
    colour_p: float = 0.8  # how often the source's colours change
    frequency_p: float = 0.85  # how often its frequencies change (always, when colours do not)
    sharpen_share: float = 0.5  # of frequency changes, the share that sharpens (others soften)
    max_deform: float = 0.06  # of the face size, mask boundary displacement
    max_grow: float = 0.08  # of the face size, mask dilation/erosion
    # (region, weight): how often each mask region is drawn (weights normalised when drawn).
    shapes: tuple[tuple[MaskShape, float], ...] = (
        (MaskShape.HULL, 0.5),
        (MaskShape.BELOW_BROWS, 0.25),
        (MaskShape.BOX, 0.25),
    )

    def __post_init__(self) -> None:
        regions = [region for region, _ in self.shapes]
        weights = [weight for _, weight in self.shapes]
        if not all(isinstance(region, MaskShape) for region in regions):
            raise ValueError(f"shapes regions must be MaskShape members, got {regions}")
        if len(set(regions)) != len(regions):
            raise ValueError("shapes names a region twice")
        if not weights or min(weights) < 0 or sum(weights) <= 0:
            raise ValueError("shapes needs at least one positive weight and none negative")
        for name in ("colour_p", "frequency_p", "sharpen_share"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be within [0, 1]")


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


def below_brows_mask(landmarks: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Hull of the landmarks no higher in the face than its highest eyebrow point."""
    pts = landmarks[:, :2]
    _, up = face_axes(landmarks)
    height = pts @ up
    return hull_mask(landmarks[height <= height[EYEBROWS].max() + 1e-6], shape)


def box_mask(landmarks: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """A rectangle upright in the face: inner 80 % of its width, chin to just above the brows."""
    face = inner_face(landmarks)
    top = face.brows + 0.05 * (face.brows - face.chin)
    corners = [
        face.point(face.centre_across + sx * face.half_width, level)
        for sx, level in ((-1, face.chin), (1, face.chin), (1, top), (-1, top))
    ]
    mask = np.zeros(shape, np.uint8)
    cv2.fillConvexPoly(mask, np.round(np.array(corners)).astype(np.int32), 1)
    return mask.astype(np.float32)


def region_mask(landmarks: np.ndarray, shape: tuple[int, int], region: MaskShape) -> np.ndarray:
    """The 0/1 region of `region` kind, of `shape` (H, W)."""
    if region is MaskShape.BELOW_BROWS:
        return below_brows_mask(landmarks, shape)
    if region is MaskShape.BOX:
        return box_mask(landmarks, shape)
    if region is MaskShape.HULL:
        return hull_mask(landmarks, shape)
    raise ValueError(f"unknown mask region {region!r}")


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


def perturb_colour(image: np.ndarray, rng: np.random.Generator, max_shift: float) -> np.ndarray:
    """Per-channel shift, then contrast and brightness; float32 in, float32 out."""
    out = image + rng.uniform(-1.0, 1.0, 3).astype(np.float32) * max_shift
    contrast = rng.uniform(0.85, 1.15)
    return np.asarray((out - out.mean()) * contrast + out.mean() + rng.uniform(-12.0, 12.0))


def soften(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Blur, or resample through a smaller size: a face rendered or pasted at lower resolution."""
    if rng.random() < 0.5:
        return np.asarray(cv2.GaussianBlur(image, (0, 0), sigmaX=rng.uniform(0.5, 1.5)))
    h, w = image.shape[:2]
    factor = rng.uniform(0.4, 0.8)
    small = cv2.resize(
        image, (max(1, int(w * factor)), max(1, int(h * factor))), interpolation=cv2.INTER_AREA
    )
    return np.asarray(cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR))


def sharpen(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Unsharp masking at a random scale and strength: a face crisper than its frame."""
    blurred = cv2.GaussianBlur(image, (0, 0), sigmaX=rng.uniform(0.6, 2.0))
    return np.asarray(image + rng.uniform(0.3, 1.5) * (image - blurred))


def perturb_source(
    image: np.ndarray, landmarks: np.ndarray, rng: np.random.Generator, config: SelfBlendConfig
) -> np.ndarray:
    """A copy of the frame that differs in placement, and in colour and/or frequency content.

    The face is moved first: resampling softens it a little, and the frequency change that
    follows decides, not that side effect, whether the source ends softer or sharper."""
    size = face_size(landmarks)
    centre = landmarks[:, :2].mean(axis=0)
    scale = 1.0 + rng.uniform(-1.0, 1.0) * config.max_scale
    shift = rng.uniform(-1.0, 1.0, 2) * config.max_shift * size
    matrix = np.array(
        [
            [scale, 0.0, (1 - scale) * centre[0] + shift[0]],
            [0.0, scale, (1 - scale) * centre[1] + shift[1]],
        ]
    )
    out: np.ndarray = cv2.warpAffine(
        image.astype(np.float32),
        matrix,
        (image.shape[1], image.shape[0]),
        flags=cv2.INTER_CUBIC,
        borderMode=cv2.BORDER_REFLECT,
    )
    colour = rng.random() < config.colour_p
    if colour:
        out = perturb_colour(out, rng, config.max_colour_shift)
    if not colour or rng.random() < config.frequency_p:
        out = sharpen(out, rng) if rng.random() < config.sharpen_share else soften(out, rng)
    return np.asarray(np.clip(np.round(out), 0, 255), dtype=np.uint8)


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
    weights = np.array([weight for _, weight in config.shapes], np.float64)
    region = config.shapes[int(rng.choice(len(weights), p=weights / weights.sum()))][0]
    mask = deform_mask(region_mask(landmarks, image.shape[:2], region), size, rng, config)
    mask *= float(rng.choice(BLEND_RATIOS, p=BLEND_WEIGHTS))
    source = perturb_source(image, landmarks, rng, config)
    alpha = mask[..., None]
    fake = alpha * source.astype(np.float32) + (1.0 - alpha) * image.astype(np.float32)
    return SelfBlend(fake=np.clip(np.round(fake), 0, 255).astype(np.uint8), mask=mask)
