from __future__ import annotations

from collections.abc import Iterator

import cv2
import numpy as np
import pytest
from media import Placement, face_landmarks, render_frame

from swapwatch.faces.geometry import CHIN, NOSE_TIP
from swapwatch.faces.upright import EYEBROWS
from swapwatch.training.selfblend import (
    MaskShape,
    SelfBlendConfig,
    hull_mask,
    perturb_source,
    region_mask,
    self_blend,
)

W, H = 640, 480


@pytest.fixture(scope="module")
def face() -> Iterator[tuple[np.ndarray, np.ndarray]]:
    image = render_frame(W, H, [Placement(0.5, 0.5, 360, sway=0)], 0)
    yield image, face_landmarks(image)


def test_blend_has_the_frame_shape_and_a_mask_in_range(face: tuple[np.ndarray, np.ndarray]) -> None:
    image, points = face
    blend = self_blend(image, points, np.random.default_rng(0))
    assert blend.fake.shape == image.shape and blend.fake.dtype == np.uint8
    assert blend.mask.shape == image.shape[:2] and blend.mask.dtype == np.float32
    assert blend.mask.min() >= 0.0 and blend.mask.max() <= 1.0


def test_blend_changes_the_face_and_nothing_outside_the_mask(
    face: tuple[np.ndarray, np.ndarray],
) -> None:
    image, points = face
    for seed in range(5):
        blend = self_blend(image, points, np.random.default_rng(seed))
        outside = blend.mask == 0
        assert outside.mean() > 0.5  # the face is a part of the frame, not all of it
        np.testing.assert_array_equal(blend.fake[outside], image[outside])
        nose = tuple(np.round(points[NOSE_TIP, :2]).astype(int))
        assert blend.mask[nose[1], nose[0]] >= 0.24  # always blended, at least at the lowest ratio
        inside = blend.mask >= 0.5 * blend.mask.max()
        diff = np.abs(blend.fake.astype(int) - image.astype(int))[inside].mean()
        assert diff > 1.0


def test_the_mask_boundary_is_soft(face: tuple[np.ndarray, np.ndarray]) -> None:
    image, points = face
    blend = self_blend(image, points, np.random.default_rng(3))
    ramp = (blend.mask > 0.05) & (blend.mask < 0.95 * blend.mask.max())
    assert ramp.sum() > 0.1 * (blend.mask > 0.05).sum()


def test_the_same_seed_gives_the_same_blend_and_another_seed_does_not(
    face: tuple[np.ndarray, np.ndarray],
) -> None:
    image, points = face
    a = self_blend(image, points, np.random.default_rng(42))
    b = self_blend(image, points, np.random.default_rng(42))
    c = self_blend(image, points, np.random.default_rng(43))
    np.testing.assert_array_equal(a.fake, b.fake)
    np.testing.assert_array_equal(a.mask, b.mask)
    assert not np.array_equal(a.mask, c.mask)


def test_hull_mask_covers_the_landmarks_only(face: tuple[np.ndarray, np.ndarray]) -> None:
    image, points = face
    mask = hull_mask(points, image.shape[:2])
    xs, ys = np.round(points[:, 0]).astype(int), np.round(points[:, 1]).astype(int)
    assert mask[ys, xs].mean() > 0.95
    assert mask[0, 0] == 0 and mask[-1, -1] == 0


def test_deformation_scales_with_its_setting(face: tuple[np.ndarray, np.ndarray]) -> None:
    image, points = face
    hull_only = ((MaskShape.HULL, 1.0),)
    calm = SelfBlendConfig(max_deform=0.0, max_grow=0.0, shapes=hull_only)
    hull = hull_mask(points, image.shape[:2]) > 0

    def region(config: SelfBlendConfig | None) -> np.ndarray:
        mask = self_blend(image, points, np.random.default_rng(5), config).mask
        return mask >= 0.5 * mask.max()  # independent of the drawn blend ratio

    assert (region(calm) ^ hull).mean() < (region(SelfBlendConfig(shapes=hull_only)) ^ hull).mean()


def test_each_mask_region_covers_the_inner_face_and_the_below_brows_one_spares_the_forehead(
    face: tuple[np.ndarray, np.ndarray],
) -> None:
    image, points = face
    shape = image.shape[:2]
    hull = hull_mask(points, shape) > 0
    brows_top = int(np.ceil(points[EYEBROWS, 1].min()))
    forehead = hull.copy()
    forehead[brows_top - 2 :] = False  # the face is upright: the forehead is above the brows
    assert forehead.sum() > 0
    below_jaw = ~hull
    below_jaw[: int(points[CHIN, 1]) - 20] = False  # beside and under the jaw, outside the face
    covered = {}
    for region in MaskShape:
        mask = region_mask(points, shape, region) > 0
        nose, chin = points[NOSE_TIP, :2].round().astype(int), points[CHIN, :2].round().astype(int)
        assert mask[nose[1], nose[0]] and mask[chin[1] - 3, chin[0]]
        eyes = points[[33, 263], :2].round().astype(int)  # outer eye corners
        assert mask[eyes[:, 1], eyes[:, 0]].all()
        covered[region] = ((mask & forehead).sum() / forehead.sum(), (mask & below_jaw).sum())
    assert covered[MaskShape.HULL][0] == 1.0  # the whole forehead, nothing beyond the face
    assert covered[MaskShape.HULL][1] == 0
    assert covered[MaskShape.BELOW_BROWS] == (0.0, 0)
    assert covered[MaskShape.BOX][0] < 0.5 and covered[MaskShape.BOX][1] > 0  # jaw corners


def test_the_configured_mask_regions_are_the_ones_drawn(
    face: tuple[np.ndarray, np.ndarray],
) -> None:
    image, points = face
    hull = hull_mask(points, image.shape[:2]) > 0

    def outside_hull(shapes: tuple[tuple[MaskShape, float], ...]) -> float:
        calm = SelfBlendConfig(max_deform=0.0, max_grow=0.0, shapes=shapes)
        mask = self_blend(image, points, np.random.default_rng(0), calm).mask
        return float(((mask >= 0.5 * mask.max()) & ~hull).mean())

    # The box reaches past the jaw line at its lower corners; the hull never leaves itself.
    box, hull_only = ((MaskShape.BOX, 1.0),), ((MaskShape.HULL, 1.0),)
    assert outside_hull(box) > 10 * outside_hull(hull_only) + 1e-4
    for bad in [
        ((MaskShape.HULL, 0.0),),
        (("box", 1.0),),
        ((MaskShape.BOX, 1), (MaskShape.BOX, 1)),
    ]:
        with pytest.raises(ValueError, match="shapes"):
            SelfBlendConfig(shapes=bad)  # type: ignore[arg-type]


def detail(image: np.ndarray, mask: np.ndarray) -> float:
    """Mean absolute Laplacian inside the mask: how much fine detail the face holds."""
    grey = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY).astype(np.float32)
    return float(np.abs(cv2.Laplacian(grey, cv2.CV_32F))[mask > 0].mean())


UNMOVED = {"max_shift": 0.0, "max_scale": 0.0}


def test_sharpening_and_softening_go_their_own_way(face: tuple[np.ndarray, np.ndarray]) -> None:
    image, points = face
    inside = hull_mask(points, image.shape[:2])
    base = detail(image, inside)

    def ratios(sharpen_share: float) -> list[float]:
        config = SelfBlendConfig(colour_p=0.0, sharpen_share=sharpen_share, **UNMOVED)
        return [
            detail(perturb_source(image, points, np.random.default_rng(s), config), inside) / base
            for s in range(20)
        ]

    assert min(ratios(1.0)) > 1.1
    assert max(ratios(0.0)) < 0.9


def test_the_source_is_about_as_often_sharper_than_the_frame_as_softer(
    face: tuple[np.ndarray, np.ndarray],
) -> None:
    """With the default cues and the move: a detector trained only on softer pasted faces calls a
    crisper paste real (the move's resampling alone once made every source softer)."""
    image, points = face
    inside = hull_mask(points, image.shape[:2])
    base = detail(image, inside)
    sharper = [
        detail(perturb_source(image, points, np.random.default_rng(s), SelfBlendConfig()), inside)
        > base
        for s in range(100)
    ]
    assert 0.35 < np.mean(sharper) < 0.65


def test_the_frequency_changes_whenever_the_colour_does_not(
    face: tuple[np.ndarray, np.ndarray],
) -> None:
    image, points = face
    inside = hull_mask(points, image.shape[:2])
    base = detail(image, inside)
    config = SelfBlendConfig(colour_p=0.0, frequency_p=0.0, **UNMOVED)
    for seed in range(10):
        source = perturb_source(image, points, np.random.default_rng(seed), config)
        assert abs(detail(source, inside) / base - 1.0) > 0.1


def test_each_cue_can_be_the_only_one(face: tuple[np.ndarray, np.ndarray]) -> None:
    image, points = face
    inside = hull_mask(points, image.shape[:2]) > 0
    frame_colour = image.reshape(-1, 3).mean(axis=0)
    base = detail(image, inside)
    for seed in range(5):
        frequency_only = perturb_source(
            image, points, np.random.default_rng(seed), SelfBlendConfig(colour_p=0.0, **UNMOVED)
        )
        np.testing.assert_allclose(
            frequency_only.reshape(-1, 3).mean(axis=0), frame_colour, atol=1.0
        )
        assert abs(detail(frequency_only, inside) / base - 1.0) > 0.1
        colour_only = perturb_source(
            image,
            points,
            np.random.default_rng(seed),
            SelfBlendConfig(colour_p=1.0, frequency_p=0.0, **UNMOVED),
        )
        assert np.abs(colour_only.reshape(-1, 3).mean(axis=0) - frame_colour).max() > 1.0
        assert abs(detail(colour_only, inside) / base - 1.0) < 0.2  # contrast scales detail


@pytest.mark.parametrize("setting", ["colour_p", "frequency_p", "sharpen_share"])
def test_cue_rates_outside_zero_to_one_are_refused(setting: str) -> None:
    with pytest.raises(ValueError, match=setting):
        SelfBlendConfig(**{setting: 1.5})


def test_rejects_images_that_are_not_rgb_uint8(face: tuple[np.ndarray, np.ndarray]) -> None:
    image, points = face
    with pytest.raises(ValueError, match="uint8"):
        self_blend(image.astype(np.float32), points, np.random.default_rng(0))
