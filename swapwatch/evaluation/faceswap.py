"""A classic graphics face swap, to measure the detector on a method it never trained on.

The detector learns from self-blends (one person's face blended back into itself) and from one
live tool's recordings. This makes fakes a third way, from two different people, in the manner of
the landmark-based swaps that predate neural ones (the "FaceSwap" family of FaceForensics++):
- the donor's face is warped onto the target's 468 landmarks, triangle by triangle (piecewise
  affine, one remap for the whole face);
- its colours are moved to the target's in Lab (mean and spread per channel, inside the face);
- it is pasted by Poisson blending (gradient-domain cloning), which leaves no colour seam, the
  trace self-blends teach most directly, inside an ellipse about the inner face: an outline
  none of the self-blend mask regions has.

Our own implementation of those textbook steps on OpenCV primitives.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from swapwatch.faces.upright import inner_face


@dataclass(frozen=True, slots=True)
class Swap:
    fake: np.ndarray  # H x W x 3 uint8: the target picture with the donor's face
    mask: np.ndarray  # H x W bool: where the donor's face was pasted


def triangulate(points: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """(T, 3) indices into `points` of a Delaunay triangulation (points inside `shape`)."""
    h, w = shape
    subdiv = cv2.Subdiv2D((0, 0, w, h))
    inside = (points[:, 0] >= 0) & (points[:, 0] < w) & (points[:, 1] >= 0) & (points[:, 1] < h)
    index_of: dict[tuple[float, float], int] = {}
    for i in np.flatnonzero(inside):
        x, y = float(points[i, 0]), float(points[i, 1])
        if (x, y) not in index_of:
            index_of[(x, y)] = int(i)
            subdiv.insert((x, y))
    triangles = []
    for x1, y1, x2, y2, x3, y3 in subdiv.getTriangleList():
        corners = [index_of.get((float(x), float(y))) for x, y in ((x1, y1), (x2, y2), (x3, y3))]
        if all(c is not None for c in corners):  # not one of the bounding triangle's corners
            triangles.append(corners)
    return np.asarray(triangles, np.int64).reshape(-1, 3)


def warp_face(
    donor: np.ndarray, donor_points: np.ndarray, target_points: np.ndarray, shape: tuple[int, int]
) -> tuple[np.ndarray, np.ndarray]:
    """The donor's face moved onto the target's landmarks: (image of `shape`, covered mask)."""
    h, w = shape
    triangles = triangulate(target_points.astype(np.float32), shape)
    # Which triangle each target pixel lies in (0: none), drawn one triangle at a time.
    owner = np.zeros(shape, np.int32)
    affine = np.zeros((len(triangles) + 1, 2, 3), np.float64)
    for t, corners in enumerate(triangles, start=1):
        dst = target_points[corners, :2].astype(np.float32)
        src = donor_points[corners, :2].astype(np.float32)
        affine[t] = cv2.getAffineTransform(dst, src)  # target pixel -> donor pixel
        cv2.fillConvexPoly(owner, np.round(dst).astype(np.int32), t)
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float64)
    m = affine[owner]
    map_x = (m[..., 0, 0] * xs + m[..., 0, 1] * ys + m[..., 0, 2]).astype(np.float32)
    map_y = (m[..., 1, 0] * xs + m[..., 1, 1] * ys + m[..., 1, 2]).astype(np.float32)
    warped = cv2.remap(donor, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
    return warped, owner > 0


def match_colours(source: np.ndarray, target: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """`source` with the Lab mean and spread of `target`, both measured inside `mask`."""
    src = cv2.cvtColor(source, cv2.COLOR_RGB2LAB).astype(np.float32)
    dst = cv2.cvtColor(target, cv2.COLOR_RGB2LAB).astype(np.float32)
    inside = mask.astype(bool)
    s_mean, s_std = src[inside].mean(axis=0), src[inside].std(axis=0) + 1e-3
    d_mean, d_std = dst[inside].mean(axis=0), dst[inside].std(axis=0) + 1e-3
    moved = np.clip((src - s_mean) * (d_std / s_std) + d_mean, 0, 255).astype(np.uint8)
    return np.asarray(cv2.cvtColor(moved, cv2.COLOR_LAB2RGB))


def face_ellipse(points: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Bool mask of an ellipse upright in the face: brows to chin, 80 % of its width."""
    face = inner_face(points)
    centre = face.point(face.centre_across, 0.5 * (face.brows + face.chin))
    axes = (face.half_width, 0.5 * (face.brows - face.chin))
    angle = float(np.degrees(np.arctan2(face.across[1], face.across[0])))
    mask = np.zeros(shape, np.uint8)
    cv2.ellipse(
        mask,
        (round(float(centre[0])), round(float(centre[1]))),
        (max(1, round(axes[0])), max(1, round(axes[1]))),
        angle,
        0.0,
        360.0,
        1,
        thickness=-1,
    )
    return mask > 0


def face_swap(
    target: np.ndarray, target_points: np.ndarray, donor: np.ndarray, donor_points: np.ndarray
) -> Swap:
    """The target picture (RGB uint8) with the donor's face, eyebrows to chin, blended in."""
    for picture in (target, donor):
        if picture.dtype != np.uint8 or picture.ndim != 3 or picture.shape[2] != 3:
            raise ValueError("pictures must be H x W x 3 uint8")
    shape = target.shape[:2]
    warped, covered = warp_face(donor, donor_points, target_points, shape)
    region = face_ellipse(target_points, shape)
    # A margin inside the warped area: Poisson blending reads one pixel beyond the mask.
    region &= cv2.erode(covered.astype(np.uint8), np.ones((5, 5), np.uint8)) > 0
    region = cv2.erode(region.astype(np.uint8), np.ones((3, 3), np.uint8)) > 0
    # Keep one pixel clear of the picture border: seamlessClone refuses masks that touch it.
    region[[0, -1], :] = False
    region[:, [0, -1]] = False
    ys, xs = np.nonzero(region)
    if len(xs) == 0:
        raise ValueError("the target's face region is empty")
    coloured = match_colours(warped, target, region)
    x0, x1, y0, y1 = xs.min(), xs.max(), ys.min(), ys.max()
    # With both pictures the same size, the centre of the mask's box keeps them aligned.
    centre = (int((x0 + x1 + 1) // 2), int((y0 + y1 + 1) // 2))
    # The solver works channel by channel: RGB in, RGB out.
    blended = cv2.seamlessClone(
        np.ascontiguousarray(coloured),
        np.ascontiguousarray(target),
        region.astype(np.uint8) * 255,
        centre,
        cv2.NORMAL_CLONE,
    )
    # OpenCV's solver also moves pixels of the box around the mask by a level or two; keep them.
    fake = np.where(region[..., None], blended, target)
    return Swap(fake=np.ascontiguousarray(fake), mask=region)
