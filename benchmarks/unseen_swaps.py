"""Detection of a swap method no model here trained on: classic landmark swaps between people.

    .venv/bin/python benchmarks/unseen_swaps.py [--model FILE.onnx ...] [--mesonet FILE.h5 |
        --no-mesonet] [--swaps 400] [--seed 0] [--out benchmarks/results/unseen_swaps.json]

The faces are the held-out real faces of ../shared/data: the validation groups, which the
detector never trains on (training uses them to choose its checkpoint and calibrate). Each fake
puts one person's face on another's frame (swapwatch.evaluation.faceswap: piecewise-affine warp,
Lab colour transfer, Poisson blending inside an ellipse): a different method from the
self-blends and the live tool's swaps the detector learned from. The donor is, of 48 random faces
of other groups, the one whose landmarks lie closest to the target's (the same pose, as swap
tools need).

Each fake is scored next to the real crop it was made on, as it is and both re-encoded alike as
the last frame of a short H.264 or VP8 clip at a live bitrate. Printed and written: frame AUC
(fakes against every real), the share of pairs whose fake scores above its own real, and the
AUC per target group.
"""

from __future__ import annotations

import argparse
import hashlib
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cv2
import numpy as np

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data"

from machine import write_results  # noqa: E402

from swapwatch.datasets.crops import CropCache, centre_window  # noqa: E402
from swapwatch.datasets.lists import read_list, split_by_group  # noqa: E402
from swapwatch.engines import Engine, ModelInfo, create_engine  # noqa: E402
from swapwatch.evaluation.faceswap import face_swap  # noqa: E402
from swapwatch.evaluation.metrics import roc_auc  # noqa: E402
from swapwatch.models import DEFAULT_DETECTOR  # noqa: E402
from swapwatch.training.augment import Reencode  # noqa: E402
from swapwatch.training.train import TrainConfig  # noqa: E402

DONOR_CANDIDATES = 48  # drawn from the other groups; the closest in landmark layout is used
# A 640x360 call at 300 kbit/s and 30 fps spends about 0.04 bits per pixel.
LIVE_BPP = 0.04
SHIFTS = ((0.7, -0.4), (-0.3, 0.6))  # camera shake of the two lead-in frames, pixels
CONDITIONS: dict[str, Callable[[np.ndarray], np.ndarray] | None] = {
    "plain": None,
    "h264": Reencode("h264", LIVE_BPP, SHIFTS),
    "vp8": Reencode("vp8", LIVE_BPP, SHIFTS),
}


def held_out_faces(manifest: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[str]]:
    """(crops, landmarks, group index, group names) of every real face in the validation groups."""
    items = read_list(manifest)
    defaults = TrainConfig(out=Path("."))
    _, validation = split_by_group(items, defaults.validation_fraction, defaults.split_seed)
    cache = CropCache()
    crops, landmarks, groups = [], [], []
    names = sorted({i.group for i in validation if not i.is_fake})
    for item in validation:
        if item.is_fake:
            continue
        faces = cache.get(item)
        crops.append(faces.crops)
        landmarks.append(faces.landmarks)
        groups.append(np.full(len(faces), names.index(item.group)))
    cache.close()
    print(f"held-out real faces: {sum(map(len, crops))} in groups {names}", file=sys.stderr)
    return np.concatenate(crops), np.concatenate(landmarks), np.concatenate(groups), names


def make_swaps(
    crops: np.ndarray, landmarks: np.ndarray, groups: np.ndarray, count: int, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """(target indices, fakes): `count` swaps onto faces drawn alike from every held-out crop, so
    a group weighs as much as it has faces."""
    rng = np.random.default_rng(seed)
    layout = landmarks.reshape(len(landmarks), -1)
    targets: list[int] = []
    fakes: list[np.ndarray] = []
    while len(fakes) < count:
        target = int(rng.integers(len(crops)))
        others = np.flatnonzero(groups != groups[target])
        candidates = rng.choice(others, min(DONOR_CANDIDATES, len(others)), replace=False)
        distance = np.abs(layout[candidates] - layout[target]).mean(axis=1)
        donor = int(candidates[np.argmin(distance)])
        try:
            swap = face_swap(crops[target], landmarks[target], crops[donor], landmarks[donor])
        except ValueError:
            continue
        targets.append(target)
        fakes.append(swap.fake)
    return np.asarray(targets), np.stack(fakes)


def score(engine: Engine, crops: np.ndarray) -> np.ndarray:
    side = engine.info.cut_size  # the engine shrinks to a smaller input itself
    windows = centre_window(crops)
    if windows.shape[1] != side:
        windows = np.stack(
            [cv2.resize(w, (side, side), interpolation=cv2.INTER_AREA) for w in windows]
        )
    return np.concatenate(
        [
            engine.infer(np.ascontiguousarray(windows[i : i + 32]))
            for i in range(0, len(windows), 32)
        ]
    )


def frame_auc(real: np.ndarray, fake: np.ndarray) -> float | None:
    auc = roc_auc(np.r_[real, fake], np.r_[np.zeros(len(real)), np.ones(len(fake))])
    return None if auc is None else round(auc, 4)


def summarise(
    real: np.ndarray, fake: np.ndarray, target_groups: np.ndarray, names: list[str]
) -> dict[str, Any]:
    """`real[i]` and `fake[i]` are the logits of one target before and after its swap."""
    return {
        "frame_auc": frame_auc(real, fake),
        "fake_above_its_real": round(float(np.mean(fake > real)), 4),
        "median_logit": {
            "real": round(float(np.median(real)), 3),
            "fake": round(float(np.median(fake)), 3),
        },
        "auc_by_target_group": {
            names[g]: frame_auc(real[target_groups == g], fake[target_groups == g])
            for g in np.unique(target_groups)
        },
    }


def model_provenance(path: Path, info: ModelInfo) -> dict[str, Any]:
    """What tells one model file from another: its digest and the run that trained it."""
    return {
        "sha256": hashlib.sha256(Path(path).read_bytes()).hexdigest(),
        "training_command": info.training.get("command") if info.training else None,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, action="append", help="default: the bundled one")
    parser.add_argument("--list", type=Path, default=DATA / "manifest.csv")
    parser.add_argument(
        "--mesonet", type=Path, default=DATA / "baselines" / "mesonet" / "Meso4_DF.h5"
    )
    parser.add_argument("--no-mesonet", action="store_true")
    parser.add_argument("--swaps", type=int, default=400)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--out", type=Path, default=REPO / "benchmarks" / "results" / "unseen_swaps.json"
    )
    args = parser.parse_args()

    crops, landmarks, groups, names = held_out_faces(args.list)
    targets, fakes = make_swaps(crops, landmarks, groups, args.swaps, args.seed)
    reals = crops[targets]
    models = args.model or [DEFAULT_DETECTOR]

    def engine_of(model: Path) -> Callable[[], Engine]:
        return lambda: create_engine("onnxruntime", model, device="cpu", threads=1)

    detectors: list[tuple[str, Callable[[], Engine]]] = [(str(m), engine_of(m)) for m in models]
    if not args.no_mesonet:
        from swapwatch.evaluation.mesonet import MesoNetEngine

        detectors.append(("mesonet:" + args.mesonet.stem, lambda: MesoNetEngine(args.mesonet)))

    results: dict[str, dict[str, Any]] = {}
    provenance: dict[str, dict[str, Any]] = {}
    for condition, degrade in CONDITIONS.items():
        if degrade is None:
            real_in, fake_in = reals, fakes
        else:
            real_in = np.stack([degrade(c) for c in reals])
            fake_in = np.stack([degrade(c) for c in fakes])
        for name, factory in detectors:
            engine = factory()
            if name in map(str, models):
                provenance.setdefault(name, model_provenance(Path(name), engine.info))
            try:
                summary = summarise(
                    score(engine, real_in), score(engine, fake_in), groups[targets], names
                )
            finally:
                engine.close()
            results.setdefault(name, {})[condition] = summary
            print(
                f"{Path(name).name:32s} {condition:6s} frame AUC {summary['frame_auc']:.3f}  "
                f"fake above its real {summary['fake_above_its_real']:.1%}",
                flush=True,
            )
    write_results(
        args.out,
        "unseen_swaps",
        {
            "models": provenance,
            "swaps": len(fakes),
            "distinct_targets": len(np.unique(targets)),
            "targets_by_group": {
                names[g]: int(n)
                for g, n in zip(*np.unique(groups[targets], return_counts=True), strict=True)
            },
            "live_bpp": LIVE_BPP,
            "results": results,
        },
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
