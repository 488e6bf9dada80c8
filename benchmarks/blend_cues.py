"""Which way each blending cue pushes the detector: one cue at a time, on held-out real faces.

    .venv/bin/python benchmarks/blend_cues.py [--model FILE.onnx ...] [--faces 400] [--seed 0]
        [--out benchmarks/results/blend_cues.json]

A swapped face differs from its frame in sharpness (softer where a generator's output is
upscaled onto a large face, crisper where it is downscaled onto a small one) and in colour. Each
fake here is a held-out real crop with its own face blended back inside the landmark hull
(deformed and feathered as in training), changed in one way only and not moved:

- softer: Gaussian blur, sigma 1 px;
- sharper: unsharp masking, sigma 1 px, amount 1;
- colour: a fixed shift of the channels (+12, -8, +5).

A frame AUC under 0.5 means the detector takes that kind of paste for more real than the real
face: a blind spot in one direction, not merely a weak cue. These blends resemble the training
fakes, so high figures show only that a cue is learned both ways, not that swaps are caught.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cv2
import numpy as np

REPO = Path(__file__).resolve().parents[1]

from machine import write_results  # noqa: E402
from unseen_swaps import DATA, held_out_faces, model_provenance, score, summarise  # noqa: E402

from swapwatch.engines import create_engine  # noqa: E402
from swapwatch.models import DEFAULT_DETECTOR  # noqa: E402
from swapwatch.training.selfblend import (  # noqa: E402
    SelfBlendConfig,
    deform_mask,
    face_size,
    hull_mask,
)


def softer(face: np.ndarray) -> np.ndarray:
    return np.asarray(cv2.GaussianBlur(face, (0, 0), 1.0))


def sharper(face: np.ndarray) -> np.ndarray:
    return np.asarray(face + (face - cv2.GaussianBlur(face, (0, 0), 1.0)))


def colour(face: np.ndarray) -> np.ndarray:
    return face + np.array([12.0, -8.0, 5.0], np.float32)


CUES: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "softer": softer,
    "sharper": sharper,
    "colour": colour,
}


def blend_with(
    crop: np.ndarray, landmarks: np.ndarray, cue: Callable[[np.ndarray], np.ndarray], seed: int
) -> np.ndarray:
    """`crop` with its face replaced by `cue(crop)` inside a feathered, deformed hull."""
    image = crop.astype(np.float32)
    mask = deform_mask(
        hull_mask(landmarks, crop.shape[:2]),
        face_size(landmarks),
        np.random.default_rng(seed),
        SelfBlendConfig(),
    )[..., None]
    fake = mask * np.clip(cue(image), 0, 255) + (1.0 - mask) * image
    out: np.ndarray = np.clip(np.round(fake), 0, 255).astype(np.uint8)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, action="append", help="default: the bundled one")
    parser.add_argument("--list", type=Path, default=DATA / "manifest.csv")
    parser.add_argument("--faces", type=int, default=400)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--out", type=Path, default=REPO / "benchmarks" / "results" / "blend_cues.json"
    )
    args = parser.parse_args()

    crops, landmarks, groups, names = held_out_faces(args.list)
    rng = np.random.default_rng(args.seed)
    chosen = rng.choice(len(crops), min(args.faces, len(crops)), replace=False)
    fakes = {
        name: np.stack([blend_with(crops[i], landmarks[i], cue, int(i)) for i in chosen])
        for name, cue in CUES.items()
    }
    results: dict[str, dict[str, Any]] = {}
    provenance: dict[str, dict[str, Any]] = {}
    for model in args.model or [DEFAULT_DETECTOR]:
        engine = create_engine("onnxruntime", model, device="cpu", threads=1)
        try:
            provenance[str(model)] = model_provenance(model, engine.info)
            real = score(engine, crops[chosen])
            for name, fake in fakes.items():
                summary = summarise(real, score(engine, fake), groups[chosen], names)
                results.setdefault(str(model), {})[name] = summary
                print(f"{model.name:32s} {name:8s} frame AUC {summary['frame_auc']:.3f}")
        finally:
            engine.close()
    write_results(
        args.out, "blend_cues", {"models": provenance, "faces": len(chosen), "results": results}
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
