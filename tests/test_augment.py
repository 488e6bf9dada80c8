from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

import cv2
import numpy as np
import pytest
from media import astronaut_face

from swapwatch.training.augment import (
    AugmentConfig,
    BeautyFilter,
    Codec,
    Jpeg,
    LivePathAugment,
    LowLight,
    MotionBlur,
    Occlusion,
    Reencode,
    Resize,
    beautify,
    colour_jitter,
    horizontal_flip,
    jpeg,
    low_light,
    motion_blur,
    occlude,
    reencode,
    reencode_frames,
    rescale,
)

SIDE = 224
PATCH = (slice(92, 132), slice(92, 132))  # where the "fake" differs, centred
SHIFTS = ((0.6, -0.4), (-0.3, 0.5))
EVERYTHING = AugmentConfig(
    flip_p=1.0,
    colour_p=1.0,
    beauty_p=1.0,
    occlusion_p=1.0,
    motion_blur_p=1.0,
    low_light_p=1.0,
    jpeg_p=1.0,
    scale_p=1.0,
    reencode_p=1.0,
)

Step = Callable[[np.ndarray, np.random.Generator], np.ndarray]


@pytest.fixture(scope="module")
def face() -> np.ndarray:
    return np.asarray(cv2.resize(astronaut_face(), (SIDE, SIDE), interpolation=cv2.INTER_AREA))


@pytest.fixture(scope="module")
def fake(face: np.ndarray) -> np.ndarray:
    """The face with a colour-shifted square in the middle, standing in for a self-blend."""
    out = face.astype(np.int16)
    out[PATCH] += np.array([40, -30, 20], np.int16)
    return np.clip(out, 0, 255).astype(np.uint8)


def only(*steps: str, **settings: Any) -> AugmentConfig:
    """No augmentation but the named steps, which always run."""
    always: dict[str, Any] = dict.fromkeys(steps, 1.0)
    return replace(AugmentConfig.none(), **always, **settings)


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return float(10.0 * np.log10(255.0**2 / mse))


def sharpness(image: np.ndarray) -> float:
    grey = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
    return float(cv2.Laplacian(grey, cv2.CV_64F).var())


STEPS: dict[str, Step] = {
    "h264": lambda image, rng: reencode(image, rng, "h264"),
    "vp8": lambda image, rng: reencode(image, rng, "vp8"),
    "rescale": rescale,
    "low_light": low_light,
    "motion_blur": motion_blur,
    "occlude": occlude,
    "jpeg": jpeg,
    "colour_jitter": colour_jitter,
    "beautify": beautify,
    "flip": lambda image, rng: horizontal_flip(image),
    "everything": lambda image, rng: LivePathAugment(EVERYTHING)([image], rng)[0],
}


LAYOUTS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "224": lambda face: face,
    "odd": lambda face: np.ascontiguousarray(face[:101, :87]),
    "strided view": lambda face: face[::-1, ::2][:, :100],
}


@pytest.mark.parametrize("layout", list(LAYOUTS))
@pytest.mark.parametrize("name", list(STEPS))
def test_steps_keep_shape_and_dtype_and_leave_the_input_alone(
    face: np.ndarray, name: str, layout: str
) -> None:
    image = LAYOUTS[layout](face.copy())
    before = image.copy()
    out = STEPS[name](image, np.random.default_rng(0))
    assert out.shape == image.shape and out.dtype == np.uint8
    assert out.flags.c_contiguous
    assert not np.shares_memory(out, image)
    np.testing.assert_array_equal(image, before)
    assert not np.array_equal(out, image)


def test_the_same_seed_gives_the_same_output(face: np.ndarray) -> None:
    augment = LivePathAugment(EVERYTHING)
    first = augment([face], np.random.default_rng(3))[0]
    again = augment([face], np.random.default_rng(3))[0]
    other = augment([face], np.random.default_rng(4))[0]
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, other)


@pytest.mark.parametrize("vp8_share", [0.0, 1.0], ids=["h264", "vp8"])
def test_identical_inputs_give_identical_outputs(face: np.ndarray, vp8_share: float) -> None:
    augment = LivePathAugment(replace(EVERYTHING, vp8_share=vp8_share))
    for seed in range(3):
        a, b = augment([face, face.copy()], np.random.default_rng(seed))
        np.testing.assert_array_equal(a, b)


def _difference_inside_and_outside(
    augment: LivePathAugment, real: np.ndarray, fake: np.ndarray, seed: int, margin: int = 16
) -> tuple[float, float]:
    a, b = augment([real, fake], np.random.default_rng(seed))
    diff = np.abs(a.astype(np.float64) - b.astype(np.float64)).mean(axis=2)
    outside = np.ones(diff.shape, bool)
    rows, cols = PATCH
    outside[rows.start - margin : rows.stop + margin, cols.start - margin : cols.stop + margin] = 0
    return float(diff[PATCH].mean()), float(diff[outside].mean())


@pytest.mark.parametrize(
    "step",
    ["flip_p", "colour_p", "beauty_p", "motion_blur_p", "low_light_p", "jpeg_p", "scale_p"],
)
def test_a_pair_still_differs_only_where_the_inputs_did(
    face: np.ndarray, fake: np.ndarray, step: str
) -> None:
    augment = LivePathAugment(only(step))
    for seed in range(4):
        inside, outside = _difference_inside_and_outside(augment, face, fake, seed)
        assert inside > 5.0
        assert outside <= 0.01 * inside


def test_an_occluder_covers_a_pair_in_the_same_place(face: np.ndarray, fake: np.ndarray) -> None:
    for seed in range(6):
        op = Occlusion.sample(np.random.default_rng(seed), AugmentConfig())
        a, b = op(face), op(fake)
        covered = op.mask(SIDE, SIDE) > 0
        differs = np.zeros((SIDE, SIDE), bool)
        differs[PATCH] = True
        np.testing.assert_array_equal(a[~(covered | differs)], b[~(covered | differs)])
        np.testing.assert_array_equal(a[~covered], face[~covered])


@pytest.mark.parametrize("vp8_share", [0.0, 1.0], ids=["h264", "vp8"])
def test_a_reencoded_pair_differs_mostly_where_the_inputs_did(
    face: np.ndarray, fake: np.ndarray, vp8_share: float
) -> None:
    # Rate control and mode decisions see the whole frame, so some difference leaks out.
    augment = LivePathAugment(only("reencode_p", vp8_share=vp8_share))
    for seed in range(3):
        inside, outside = _difference_inside_and_outside(augment, face, fake, seed)
        assert outside < 0.25 * inside


@pytest.mark.parametrize("codec", ["h264", "vp8"])
def test_reencoding_at_a_low_bitrate_loses_detail(face: np.ndarray, codec: Codec) -> None:
    low = Reencode(codec, 0.01, SHIFTS)(face)
    high = Reencode(codec, 0.5, SHIFTS)(face)
    # A clean, aligned picture at a high rate: the kept frame is not one of the shifted lead-ins.
    assert psnr(high, face) > 30.0
    assert psnr(low, face) < psnr(high, face) - 4.0
    assert sharpness(low) < sharpness(high)


def test_reencode_frames_returns_every_frame(face: np.ndarray) -> None:
    frames = [np.roll(face, k, axis=1) for k in range(4)]
    decoded = reencode_frames(frames, "h264", 0.1 * SIDE * SIDE * 30, fps=30)
    assert len(decoded) == 4
    assert all(f.shape == face.shape and f.dtype == np.uint8 for f in decoded)


def test_the_codec_runs_at_the_reduced_size(face: np.ndarray) -> None:
    plan = LivePathAugment(only("scale_p", "reencode_p")).plan(face.shape, np.random.default_rng(0))
    down, codec, up = plan.ops
    assert isinstance(down, Resize) and isinstance(codec, Reencode) and isinstance(up, Resize)
    assert down.width % 2 == 0 and down.height % 2 == 0 and down.width < SIDE
    assert (up.width, up.height) == (SIDE, SIDE)


def test_low_light_darkens_and_adds_noise() -> None:
    grey = np.full((64, 64, 3), 160, np.uint8)
    config = replace(AugmentConfig(), brightness=(0.3, 0.6))
    for seed in range(5):
        out = low_light(grey, np.random.default_rng(seed), config).astype(np.float64)
        assert out.mean() < 0.65 * 160
        assert out.std() > 0.5


def test_low_light_noise_grows_with_the_shot_noise() -> None:
    grey = np.full((64, 64, 3), 200, np.uint8)
    noise = np.random.default_rng(0).standard_normal((64, 64, 3)).astype(np.float32)
    quiet = LowLight(gamma=1.0, gain=0.5, shot=1e-4, read=0.002, noise=noise)(grey)
    loud = LowLight(gamma=1.0, gain=0.5, shot=5e-3, read=0.002, noise=noise)(grey)
    assert loud.std() > 3 * quiet.std()


@pytest.mark.parametrize("length", [3, 8, 15])
def test_motion_blur_lowers_sharpness(face: np.ndarray, length: int) -> None:
    blur = MotionBlur(length, angle=30.0)
    assert blur.kernel().sum() == pytest.approx(1.0)
    assert sharpness(blur(face)) < 0.8 * sharpness(face)


def test_motion_blur_kernel_spans_its_length() -> None:
    kernel = MotionBlur(9, angle=0.0).kernel()
    assert np.count_nonzero(kernel.sum(axis=0) > 0.01) == 9
    assert np.count_nonzero(kernel.sum(axis=1) > 0.01) == 1


def test_occlusion_changes_a_bounded_area(face: np.ndarray) -> None:
    for seed in range(20):
        out = occlude(face, np.random.default_rng(seed))
        changed = np.any(out != face, axis=2).mean()
        assert 0.005 < changed <= 0.27  # up to 25% plus anti-aliased edges


@pytest.mark.parametrize("ellipse", [False, True])
def test_occlusion_mask_has_the_requested_area(ellipse: bool) -> None:
    colours = np.zeros((3, 3, 3), np.uint8)
    op = Occlusion((0.5, 0.5), 0.1, 1.5, 20.0, ellipse, "solid", colours, 0.03)
    assert op.mask(SIDE, SIDE).mean() == pytest.approx(0.1, abs=0.005)


def test_the_beauty_filter_smooths_texture_and_keeps_edges() -> None:
    rng = np.random.default_rng(0)
    # Left half dark, right half bright, both with fine skin-like texture.
    image = np.where(np.arange(SIDE) < SIDE // 2, 60.0, 190.0)[None, :, None].repeat(SIDE, 0)
    image = np.clip(image + rng.normal(0, 6, (SIDE, SIDE, 3)), 0, 255).astype(np.uint8)
    out = BeautyFilter(strength=1.0, sigma_colour=30.0, radius=0.02)(image).astype(np.float64)
    flat = (slice(20, 200), slice(20, 90))
    assert out[flat].std() < 0.5 * image[flat].astype(np.float64).std()
    edge = out[:, SIDE // 2 + 2].mean() - out[:, SIDE // 2 - 3].mean()
    assert edge > 0.9 * (190 - 60)
    half = BeautyFilter(strength=0.5, sigma_colour=30.0, radius=0.02)(image).astype(np.float64)
    assert out[flat].std() < half[flat].std() < image[flat].astype(np.float64).std()


def test_low_jpeg_quality_loses_more(face: np.ndarray) -> None:
    assert psnr(Jpeg(30)(face), face) < psnr(Jpeg(95)(face), face) - 5.0


def test_no_augmentation_returns_copies(face: np.ndarray, fake: np.ndarray) -> None:
    out = LivePathAugment(AugmentConfig.none())([face, fake], np.random.default_rng(0))
    np.testing.assert_array_equal(out[0], face)
    np.testing.assert_array_equal(out[1], fake)
    assert not np.shares_memory(out[0], face)


def test_bad_settings_and_inputs_are_refused(face: np.ndarray) -> None:
    with pytest.raises(ValueError, match="jpeg_p"):
        AugmentConfig(jpeg_p=1.5)
    with pytest.raises(ValueError, match="bpp"):
        AugmentConfig(bpp=(0.2, 0.1))
    augment = LivePathAugment()
    with pytest.raises(ValueError, match="one shape"):
        augment([face, face[:100]], np.random.default_rng(0))
    assert augment([], np.random.default_rng(0)) == []
