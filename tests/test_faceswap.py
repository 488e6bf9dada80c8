"""The classic landmark swap that benchmarks/unseen_swaps.py measures the detector on."""

from __future__ import annotations

from collections.abc import Iterator

import cv2
import numpy as np
import pytest
from media import Placement, face_landmarks, render_frame

from swapwatch.evaluation.faceswap import face_swap, match_colours, triangulate, warp_face
from swapwatch.faces.geometry import NOSE_TIP
from swapwatch.training.selfblend import hull_mask

W, H = 640, 480


@pytest.fixture(scope="module")
def faces() -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]]:
    """A target and a donor: the same face elsewhere in the frame, larger, in colder light."""
    target = render_frame(W, H, [Placement(0.5, 0.5, 300, sway=0)], 0)
    donor = render_frame(W, H, [Placement(0.45, 0.55, 340, sway=0)], 0)
    donor = np.clip(donor.astype(np.int16) + np.array([-25, 0, 30]), 0, 255).astype(np.uint8)
    yield target, face_landmarks(target), donor, face_landmarks(donor)


def test_triangles_cover_the_face_with_every_landmark_a_corner(
    faces: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray],
) -> None:
    _, points, _, _ = faces
    triangles = triangulate(points, (H, W))
    assert triangles.shape[1] == 3 and len(triangles) > len(points)
    # Landmarks that share a pixel position are one vertex; all others are used.
    assert len(np.unique(triangles)) >= 0.95 * len(points)


def test_the_warp_puts_the_donors_landmarks_on_the_targets(
    faces: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray],
) -> None:
    _, target_points, donor, donor_points = faces
    warped, covered = warp_face(donor, donor_points, target_points, (H, W))
    x, y = np.round(target_points[NOSE_TIP, :2]).astype(int)
    assert covered[y, x]
    # The warped donor, found again by the landmark model, has the target's face layout.
    found = face_landmarks(np.where(covered[..., None], warped, 0).astype(np.uint8))
    error = np.linalg.norm(found[:, :2] - target_points[:, :2], axis=1)
    moved = np.linalg.norm(donor_points[:, :2] - target_points[:, :2], axis=1)
    assert np.median(error) < 0.25 * np.median(moved)


def test_the_swap_changes_only_the_face_and_matches_the_targets_colour(
    faces: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray],
) -> None:
    target, target_points, donor, donor_points = faces
    swap = face_swap(target, target_points, donor, donor_points)
    assert swap.fake.shape == target.shape and swap.fake.dtype == np.uint8
    # The pasted region is the inner face: brows to chin, not the whole picture.
    x, y = np.round(target_points[NOSE_TIP, :2]).astype(int)
    hull = hull_mask(target_points, (H, W)) > 0
    assert swap.mask[y, x] and swap.mask.sum() / hull.sum() > 0.3 and not (swap.mask & ~hull).any()
    inside = swap.mask
    assert np.abs(swap.fake[inside].astype(int) - target[inside]).mean() > 2.0
    # The donor's colder light is gone: the pasted face has the target's mean colour.
    warped, _ = warp_face(donor, donor_points, target_points, (H, W))
    target_lab, warped_lab, fake_lab = (
        cv2.cvtColor(x, cv2.COLOR_RGB2LAB)[inside].astype(float).mean(0)
        for x in (target, warped, swap.fake)
    )
    assert np.abs(fake_lab - target_lab).max() < 0.3 * np.abs(warped_lab - target_lab).max()


def test_the_swap_leaves_no_seam_at_the_edge_of_the_pasted_face(
    faces: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray],
) -> None:
    target, target_points, donor, donor_points = faces
    swap = face_swap(target, target_points, donor, donor_points)
    warped, _ = warp_face(donor, donor_points, target_points, (H, W))
    pasted = np.where(swap.mask[..., None], match_colours(warped, target, swap.mask), target)
    # The band just inside the edge: Poisson blending matches it to the picture around it.
    band = swap.mask & ~(cv2.erode(swap.mask.astype(np.uint8), np.ones((7, 7), np.uint8)) > 0)

    def step(picture: np.ndarray) -> float:
        return float(np.abs(picture[band].astype(float) - target[band]).mean())

    assert step(swap.fake) < 0.5 * step(pasted)


def test_pictures_that_are_not_rgb_uint8_are_refused(
    faces: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray],
) -> None:
    target, target_points, donor, donor_points = faces
    with pytest.raises(ValueError, match="uint8"):
        face_swap(target.astype(np.float32), target_points, donor, donor_points)
