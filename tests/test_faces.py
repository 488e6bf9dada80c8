from __future__ import annotations

from collections.abc import Iterator

import cv2
import numpy as np
import pytest
from media import Placement, render_frame

from swapwatch.faces.analyzer import FaceAnalyzer
from swapwatch.faces.geometry import (
    LEFT_CHEEK,
    NOSE_TIP,
    RIGHT_CHEEK,
    RotatedSquare,
    aligned_square,
    box_iou,
    to_image,
    warp,
)
from swapwatch.faces.quality import SkipReason, yaw_ratio

W, H = 1280, 720


@pytest.fixture(scope="module")
def analyzer() -> Iterator[FaceAnalyzer]:
    a = FaceAnalyzer()
    yield a
    a.close()


def fresh(analyzer: FaceAnalyzer) -> FaceAnalyzer:
    """A new analyzer per scene: track ids start at 1."""
    return FaceAnalyzer(crop_size=analyzer.crop_size)


def test_one_face_is_found_where_it_is(analyzer: FaceAnalyzer) -> None:
    a = fresh(analyzer)
    try:
        batch = a.analyse(render_frame(W, H, [Placement(0.5, 0.5, 300, sway=0)], 0.0))
    finally:
        a.close()
    assert len(batch) == 1 and batch.usable.all()
    x0, y0, x1, y1 = batch.boxes[0]
    assert x0 < W / 2 < x1 and y0 < H / 2 + 60 and y1 > H / 2 - 60
    assert batch.crops.shape == (1, 224, 224, 3)


def test_two_faces_keep_their_track_ids_through_a_clip() -> None:
    scene = [Placement(0.27, 0.5, 300, sway=12), Placement(0.75, 0.5, 280, sway=12)]
    a = FaceAnalyzer()
    try:
        seen: dict[int, list[float]] = {}
        for i in range(45):
            batch = a.analyse(render_frame(W, H, scene, i / 15))
            for track_id, box in zip(batch.track_ids, batch.boxes, strict=True):
                seen.setdefault(int(track_id), []).append(float(box[0] + box[2]) / 2)
    finally:
        a.close()
    assert sorted(seen) == [1, 2]
    assert all(len(xs) == 45 for xs in seen.values())
    left, right = sorted(seen.values(), key=lambda xs: xs[0])
    assert max(left) < W / 2 < min(right)  # an id never jumps to the other face


def test_a_face_hidden_briefly_comes_back_with_the_same_id() -> None:
    scene = [Placement(0.5, 0.5, 300, sway=0)]
    a = FaceAnalyzer()
    try:
        ids = [a.analyse(render_frame(W, H, scene, 0)).track_ids.tolist() for _ in range(5)]
        ids += [a.analyse(render_frame(W, H, [], 0)).track_ids.tolist() for _ in range(3)]
        ids += [a.analyse(render_frame(W, H, scene, 0)).track_ids.tolist() for _ in range(3)]
    finally:
        a.close()
    assert ids[:8] == [[1]] * 5 + [[]] * 3
    # Back within the idle detection interval, under its old id, and never as a new face.
    assert ids[8:] in ([[1]] * 3, [[], [1], [1]])


def test_a_new_face_entering_gets_a_new_id() -> None:
    a = FaceAnalyzer()
    try:
        first = a.analyse(render_frame(W, H, [Placement(0.27, 0.5, 300, sway=0)], 0))
        both = [Placement(0.27, 0.5, 300, sway=0), Placement(0.75, 0.5, 300, sway=0)]
        later = [a.analyse(render_frame(W, H, both, 0)) for _ in range(6)][-1]
    finally:
        a.close()
    assert first.track_ids.tolist() == [1]
    assert sorted(later.track_ids.tolist()) == [1, 2]


def test_aligned_crop_levels_the_eyes_whatever_the_head_roll(analyzer: FaceAnalyzer) -> None:
    upright = render_frame(W, H, [Placement(0.5, 0.5, 320, sway=0)], 0)
    rotation = cv2.getRotationMatrix2D((W / 2, H / 2), 20, 1.0)
    rolled = cv2.warpAffine(upright, rotation, (W, H))
    crops = []
    for image in (upright, rolled):
        a = fresh(analyzer)
        try:
            batch = a.analyse(image)
        finally:
            a.close()
        assert len(batch) == 1
        crops.append(cv2.cvtColor(batch.crops[0], cv2.COLOR_RGB2GRAY).astype(np.float32))
    centre = slice(56, 168)
    x, y = crops[0][centre, centre].ravel(), crops[1][centre, centre].ravel()
    assert np.corrcoef(x, y)[0, 1] > 0.9


@pytest.mark.parametrize(
    ("transform", "reason"),
    [
        (lambda img: img, None),
        (lambda img: (img * 0.08).astype(np.uint8), SkipReason.TOO_DARK),
        (lambda img: cv2.GaussianBlur(img, (0, 0), 3), SkipReason.TOO_BLURRED),
    ],
    ids=["clean", "dark", "blurred"],
)
def test_quality_gates_say_why_a_face_is_skipped(analyzer: FaceAnalyzer, transform, reason) -> None:  # type: ignore[no-untyped-def]
    image = render_frame(W, H, [Placement(0.5, 0.5, 300, sway=0)], 0)
    a = fresh(analyzer)
    try:
        a.analyse(image)  # track the clean face first; darkness can hide it from the detector
        batch = a.analyse(transform(image))
    finally:
        a.close()
    assert len(batch) == 1
    assert batch.quality[0].reason is reason


def test_small_faces_are_tracked_but_not_scored(analyzer: FaceAnalyzer) -> None:
    a = fresh(analyzer)
    try:
        batch = a.analyse(render_frame(W, H, [Placement(0.5, 0.5, 180, sway=0)], 0))
    finally:
        a.close()
    assert len(batch) == 1
    assert batch.quality[0].reason is SkipReason.TOO_SMALL


@pytest.mark.parametrize(("nose_x", "expected"), [(50.0, 0.0), (10.0, -0.8), (90.0, 0.8)])
def test_yaw_ratio_places_the_nose_between_the_cheeks(nose_x: float, expected: float) -> None:
    points = np.zeros((468, 3), np.float32)
    points[33], points[263] = (30, 40, 0), (70, 40, 0)  # level eyes
    points[RIGHT_CHEEK], points[LEFT_CHEEK] = (0, 50, 0), (100, 50, 0)
    points[NOSE_TIP] = (nose_x, 60, 0)
    assert yaw_ratio(points) == pytest.approx(expected)


def test_warp_and_back_are_inverse() -> None:
    square = RotatedSquare(cx=400, cy=300, side=180, angle=0.4)
    pts = np.array([[10.0, 20.0], [100.0, 50.0], [223.0, 223.0]])
    back = to_image(pts, square, 224)
    m = square.to_output(224)
    again = back @ m[:, :2].T + m[:, 2]
    np.testing.assert_allclose(again, pts, atol=1e-6)


def test_aligned_square_centres_and_frames_the_landmarks() -> None:
    rng = np.random.default_rng(0)
    points = rng.uniform(100, 200, (468, 3))
    points[33, :2], points[263, :2] = (120, 150), (180, 150)
    square = aligned_square(points, margin=1.0)
    crop = warp(np.zeros((400, 400, 3), np.uint8), square, 100)
    assert crop.shape == (100, 100, 3)
    assert square.cx == pytest.approx((points[:, 0].min() + points[:, 0].max()) / 2)
    assert square.side == pytest.approx(max(np.ptp(points[:, 0]), np.ptp(points[:, 1])))


@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [
        ([0, 0, 10, 10], [0, 0, 10, 10], 1.0),
        ([0, 0, 10, 10], [5, 0, 15, 10], 1 / 3),
        ([0, 0, 10, 10], [20, 20, 30, 30], 0.0),
    ],
)
def test_box_iou(a: list[float], b: list[float], expected: float) -> None:
    assert box_iou(np.array([a]), np.array([b]))[0, 0] == pytest.approx(expected)
