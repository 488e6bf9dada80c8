"""How the detector's evidence changes with the light a face is filmed in, on held-out faces.

    .venv/bin/python benchmarks/lighting.py [--model FILE.onnx ...] [--seed 0]
        [--out benchmarks/results/lighting.json]

Every face crop of the validation groups of ../shared/data, real and recorded swap, is relit the
way a webcam would film it under another light, and scored. The light is changed in linear
light (sRGB decoded), then the picture is encoded again:
- dim: a fifth of the light, the sensor's shot and read noise, and the camera's gain bringing
  it back to half the original light (auto-exposure that runs out of range);
- very dim: a twelfth of the light, gain to a third of the original;
- dim, denoised: dim, then a denoiser as a webcam's processing has before encoding: colour
  blurred (sigma 2 px), brightness smoothed where it is flat (bilateral);
- dim, live swap: dim for every picture, but a swapped face pasted in clean (the same exposure
  without the noise) inside a feathered landmark hull, as a live tool's generator draws it
  after the camera;
- warm lamp / cool window: the colour of a 2800 K lamp or of 8000 K blue daylight, which the
  camera's white balance corrects only half-way (no gain, so no added noise, here and below);
- side light: the light falling from 1.4x at one edge of the crop to 0.3x at the other (about
  1.2x and 0.5x at the cheeks);
- dark, no gain: a third of the light, as a backlit face the camera exposes for the background;
- overexposed: 2.2x the light, highlights clipped.
Then the quality gate's brightness and sharpness checks (`faces.quality.exposure`) decide which
crops would be scored, as on the live path. Per condition: the share of real and of swapped
crops the gate passes, and of those, frame AUC, the mean evidence (logit / T, clipped: what the
CUSUM adds up) of real and of swapped faces, and the share of real faces that push towards
"fake". A condition that lifts real evidence above 0 makes false alarms in such rooms; one that
sinks swapped evidence hides swaps.

Except in "dim, live swap", the light changes over the swapped picture, as a re-filmed screen
or a grain filter would. The conditions are applied to the face crop, not to the whole frame
before cropping. They are written here, not taken from the training augmentation (which has
its own low light and colour casts), so that they are not the training distribution again.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import cv2
import numpy as np

REPO = Path(__file__).resolve().parents[1]

from machine import write_results  # noqa: E402
from pose_evidence import held_out_crops  # noqa: E402
from unseen_swaps import DATA, frame_auc, model_provenance, score  # noqa: E402

from swapwatch.datasets.crops import centre_window  # noqa: E402
from swapwatch.engines import create_engine  # noqa: E402
from swapwatch.faces.quality import QualityConfig, exposure  # noqa: E402
from swapwatch.fusion.rule import DecisionConfig  # noqa: E402
from swapwatch.models import DEFAULT_DETECTOR  # noqa: E402

FULL_WELL = 4000.0  # electrons at full exposure: a small webcam pixel
READ_NOISE = 4.0  # electrons
Relight = Callable[[np.ndarray, np.random.Generator], np.ndarray]


def to_linear(srgb: np.ndarray) -> np.ndarray:
    x = srgb.astype(np.float32) / 255.0
    return np.where(x <= 0.04045, x / 12.92, ((x + 0.055) / 1.055) ** 2.4)


def to_srgb(linear: np.ndarray) -> np.ndarray:
    x = np.clip(linear, 0.0, 1.0)
    encoded = np.where(x <= 0.0031308, 12.92 * x, 1.055 * np.power(x, 1 / 2.4) - 0.055)
    out: np.ndarray = np.round(encoded * 255.0).astype(np.uint8)
    return out


def sensor(linear: np.ndarray, light: float, gain: float, rng: np.random.Generator) -> np.ndarray:
    """`light` times the exposure, shot and read noise, then `gain`."""
    electrons = rng.poisson(np.clip(linear * light, 0.0, 1.0) * FULL_WELL).astype(np.float32)
    electrons += rng.normal(0.0, READ_NOISE, linear.shape).astype(np.float32)
    return electrons / FULL_WELL * gain


def dim(light: float, gain: float) -> Relight:
    """Less light, and the camera's gain amplifying the sensor noise."""
    return lambda srgb, rng: to_srgb(sensor(to_linear(srgb), light, gain, rng))


def camera_denoise(srgb: np.ndarray) -> np.ndarray:
    """A webcam's denoiser: strong on colour noise, milder on brightness, sparing edges."""
    luma, red, blue = cv2.split(cv2.cvtColor(srgb, cv2.COLOR_RGB2YCrCb))
    luma = cv2.bilateralFilter(luma, 5, 12, 3)
    red, blue = (cv2.GaussianBlur(c, (0, 0), 2.0) for c in (red, blue))
    return cv2.cvtColor(cv2.merge((luma, red, blue)), cv2.COLOR_YCrCb2RGB)


def denoised(condition: Relight) -> Relight:
    return lambda srgb, rng: camera_denoise(condition(srgb, rng))


def face_mask(points: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Where a swap tool pastes its face: inside the landmark hull, edges feathered."""
    mask: np.ndarray = np.zeros(shape, np.float32)
    cv2.fillConvexPoly(mask, cv2.convexHull(np.round(points[:, :2]).astype(np.int32)), 1.0)
    mask = cv2.erode(mask, np.ones((7, 7), np.uint8))
    return cv2.GaussianBlur(mask, (0, 0), 4.0)[..., None]


def scaled(gains: np.ndarray | float) -> Relight:
    """Light changed without gain: the picture keeps the noise it was filmed with."""
    return lambda srgb, rng: to_srgb(to_linear(srgb) * gains)


def tinted(colour: tuple[float, float, float], corrected: float = 0.5) -> Relight:
    """Light of `colour` (linear RGB gains), white balance undoing `corrected` of it."""
    gains = np.asarray(colour, np.float32)
    left = (gains / gains.max()) ** (1.0 - corrected)
    return scaled(left / left[1])  # the camera keeps green's level


def side_light(bright: float = 1.4, dark: float = 0.3) -> Relight:
    def apply(srgb: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        ramp = np.linspace(bright, dark, srgb.shape[1], dtype=np.float32)
        if rng.random() < 0.5:
            ramp = ramp[::-1]
        return scaled(ramp[None, :, None])(srgb, rng)

    return apply


DIM_LIGHT, DIM_GAIN = 1 / 5, 2.5  # half the original light in the end
DIM = dim(DIM_LIGHT, DIM_GAIN)
CONDITIONS: dict[str, Relight | None] = {
    "as filmed": None,
    "dim": DIM,
    "very dim": dim(1 / 12, 4.0),
    "dim, denoised": denoised(DIM),
    "warm lamp": tinted((1.0, 0.44, 0.12)),  # 2800 K in linear sRGB
    "cool window": tinted((0.78, 0.9, 1.0)),  # about 8000 K
    "side light": side_light(),
    "dark, no gain": scaled(1 / 3),
    "overexposed": scaled(2.2),
}


def relight(crops: np.ndarray, condition: Relight | None, seed: int) -> np.ndarray:
    if condition is None:
        return crops
    rng = np.random.default_rng(seed)
    lit = np.empty_like(crops)
    for i, crop in enumerate(crops):
        lit[i] = condition(crop, rng)
    return lit


def dim_scene_live_swap(
    crops: np.ndarray, landmarks: np.ndarray, fake: np.ndarray, seed: int
) -> np.ndarray:
    """ "dim" as a live swap would meet it: every picture takes the sensor's noise, but a
    swapped face is drawn by the tool's generator after the camera, so it is pasted in clean
    (the same exposure without the added noise) over the noisy frame."""
    noisy = relight(crops, DIM, seed)
    exposed = scaled(DIM_LIGHT * DIM_GAIN)  # the noisy picture's mean
    for i in np.flatnonzero(fake):
        clean = exposed(crops[i], np.random.default_rng(seed))
        mask = face_mask(landmarks[i], crops.shape[1:3])
        noisy[i] = np.round(mask * clean + (1.0 - mask) * noisy[i]).astype(np.uint8)
    return noisy


def conditions(
    crops: np.ndarray, landmarks: np.ndarray, fake: np.ndarray, seed: int
) -> Iterator[tuple[str, np.ndarray]]:
    """Each condition's crops in turn, made when asked for."""
    for name, condition in CONDITIONS.items():
        yield name, relight(crops, condition, seed)
    yield "dim, live swap", dim_scene_live_swap(crops, landmarks, fake, seed)


def gate_passes(crops: np.ndarray, gate: QualityConfig) -> np.ndarray:
    """The brightness and sharpness gates on what the model sees (the size, pose and frame
    gates do not change with the light)."""
    measured = [exposure(window) for window in centre_window(crops)]
    return np.array([b >= gate.min_brightness and s >= gate.min_sharpness for b, s in measured])


def summarise(evidence: np.ndarray, fake: np.ndarray, passed: np.ndarray) -> dict[str, Any]:
    real, swapped = evidence[passed & ~fake], evidence[passed & fake]

    def mean(values: np.ndarray) -> float | None:
        return round(float(values.mean()), 3) if len(values) else None

    return {
        "real_passed": round(float(passed[~fake].mean()), 3),
        "swapped_passed": round(float(passed[fake].mean()), 3),
        "frame_auc": frame_auc(real, swapped) if len(real) and len(swapped) else None,
        "real_mean_evidence": mean(real),
        "swapped_mean_evidence": mean(swapped),
        "real_pushing_fake": round(float((real > 0).mean()), 3) if len(real) else None,
    }


def describe(row: dict[str, Any]) -> str:
    def shown(value: float | None, form: str) -> str:
        return "-" if value is None else format(value, form)

    return (
        f"passed real {row['real_passed']:.0%} swapped {row['swapped_passed']:.0%}  "
        f"AUC {shown(row['frame_auc'], '.4f')}  "
        f"real mean {shown(row['real_mean_evidence'], '+.2f')}, "
        f"{shown(row['real_pushing_fake'], '.0%')} > 0  "
        f"swapped mean {shown(row['swapped_mean_evidence'], '+.2f')}"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, action="append", help="default: the bundled one")
    parser.add_argument("--list", type=Path, default=DATA / "manifest.csv")
    parser.add_argument("--seed", type=int, default=0, help="of the sensor noise")
    parser.add_argument(
        "--out", type=Path, default=REPO / "benchmarks" / "results" / "lighting.json"
    )
    args = parser.parse_args()

    faces = held_out_crops(args.list)
    crops, fake = faces.crops, faces.fake
    gate = QualityConfig()
    clip = DecisionConfig().evidence_clip
    models = args.model or [DEFAULT_DETECTOR]
    engines = [create_engine("onnxruntime", m, device="cpu", threads=1) for m in models]
    results: dict[str, dict[str, Any]] = {str(m): {} for m in models}
    try:
        provenance = {
            str(m): model_provenance(m, e.info) for m, e in zip(models, engines, strict=True)
        }
        for name, images in conditions(crops, faces.landmarks, fake, args.seed):
            passed = gate_passes(images, gate)
            for model, engine in zip(models, engines, strict=True):
                evidence = np.clip(score(engine, images) / engine.info.temperature, -clip, clip)
                row = results[str(model)][name] = summarise(evidence, fake, passed)
                print(f"{model.name:28s} {name:15s} {describe(row)}")
            del images, passed
    finally:
        for engine in engines:
            engine.close()
    write_results(
        args.out,
        "lighting",
        {
            "models": provenance,
            "faces": {"real": int((~fake).sum()), "swapped": int(fake.sum())},
            "sensor": {"full_well_electrons": FULL_WELL, "read_noise_electrons": READ_NOISE},
            "seed": args.seed,
            "results": results,
        },
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
