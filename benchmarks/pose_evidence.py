"""How the detector's evidence changes with head turn, on the held-out faces of ../shared/data.

    .venv/bin/python benchmarks/pose_evidence.py [--model FILE.onnx ...]
        [--out benchmarks/results/pose_evidence.json]

Every face crop of the validation groups, real and recorded swap, is scored and binned by the
absolute yaw ratio of its landmarks (0 frontal; training crops stop at 0.85, where the quality
gate was). Per bin: the mean evidence (logit / T, clipped: what the CUSUM adds up) of real and
of swapped faces, the share of real faces that push towards "fake" (evidence > 0), frame AUC,
and how many face tracks the bin holds. A turned real face with positive evidence is a false
alarm in the making; a bin filled by a few tracks says more about those people than about the
pose.
"""

from __future__ import annotations

import argparse
import itertools
import sys
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

REPO = Path(__file__).resolve().parents[1]

from machine import write_results  # noqa: E402
from unseen_swaps import DATA, frame_auc, model_provenance, score  # noqa: E402

from swapwatch.datasets.crops import TRAINING_MAX_YAW_RATIO, CropCache  # noqa: E402
from swapwatch.datasets.lists import read_list, split_by_group  # noqa: E402
from swapwatch.engines import create_engine  # noqa: E402
from swapwatch.faces.quality import yaw_ratio  # noqa: E402
from swapwatch.fusion.rule import DecisionConfig  # noqa: E402
from swapwatch.models import DEFAULT_DETECTOR  # noqa: E402
from swapwatch.training.train import TrainConfig  # noqa: E402

YAW_EDGES = (0.0, 0.2, 0.4, 0.6, TRAINING_MAX_YAW_RATIO)  # the cached crops' turns


class HeldOutFaces(NamedTuple):
    """Every face of the validation groups, as parallel arrays."""

    crops: np.ndarray  # (N, CONTEXT_SIZE, CONTEXT_SIZE, 3) uint8
    yaw: np.ndarray  # |yaw ratio|
    fake: np.ndarray  # bool: a recorded swap
    tracks: list[str]  # "<item>/<track id>"
    landmarks: np.ndarray  # (N, 468, 2) in crop pixels


def held_out_crops(manifest: Path) -> HeldOutFaces:
    defaults = TrainConfig(out=Path("."))
    _, validation = split_by_group(
        read_list(manifest), defaults.validation_fraction, defaults.split_seed
    )
    cache = CropCache()
    crops, yaws, fakes, tracks, landmarks = [], [], [], [], []
    for item in validation:
        faces = cache.get(item)
        crops.append(faces.crops)
        landmarks.append(faces.landmarks)
        yaws.append([abs(yaw_ratio(points)) for points in faces.landmarks])
        fakes.append(np.full(len(faces), item.is_fake))
        tracks += [f"{item.name}/{track}" for track in faces.tracks]
    cache.close()
    return HeldOutFaces(
        np.concatenate(crops),
        np.concatenate(yaws),
        np.concatenate(fakes),
        tracks,
        np.concatenate(landmarks),
    )


def by_turn(
    evidence: np.ndarray, yaw: np.ndarray, fake: np.ndarray, tracks: list[str]
) -> list[dict[str, Any]]:
    bins = []
    for lo, hi in itertools.pairwise(YAW_EDGES):
        inside = (yaw >= lo) & ((yaw < hi) | (hi == YAW_EDGES[-1]))
        real, swapped = evidence[inside & ~fake], evidence[inside & fake]
        real_tracks = {tracks[i] for i in np.flatnonzero(inside & ~fake)}
        bins.append(
            {
                "abs_yaw": [lo, round(hi, 2)],
                "real_faces": len(real),
                "real_tracks": len(real_tracks),
                "swapped_faces": len(swapped),
                "real_mean_evidence": round(float(real.mean()), 3) if len(real) else None,
                "swapped_mean_evidence": round(float(swapped.mean()), 3) if len(swapped) else None,
                "real_pushing_fake": round(float((real > 0).mean()), 3) if len(real) else None,
                "frame_auc": frame_auc(real, swapped) if len(real) and len(swapped) else None,
            }
        )
    return bins


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, action="append", help="default: the bundled one")
    parser.add_argument("--list", type=Path, default=DATA / "manifest.csv")
    parser.add_argument(
        "--out", type=Path, default=REPO / "benchmarks" / "results" / "pose_evidence.json"
    )
    args = parser.parse_args()

    crops, yaw, fake, tracks, _ = held_out_crops(args.list)
    results: dict[str, list[dict[str, Any]]] = {}
    provenance: dict[str, dict[str, Any]] = {}
    for model in args.model or [DEFAULT_DETECTOR]:
        engine = create_engine("onnxruntime", model, device="cpu", threads=1)
        try:
            provenance[str(model)] = model_provenance(model, engine.info)
            clip = DecisionConfig().evidence_clip
            evidence = np.clip(score(engine, crops) / engine.info.temperature, -clip, clip)
        finally:
            engine.close()
        results[str(model)] = by_turn(evidence, yaw, fake, tracks)
        for row in results[str(model)]:
            print(
                f"{model.name:28s} |yaw| {row['abs_yaw'][0]:.1f}-{row['abs_yaw'][1]:.2f}"
                f"  real {row['real_faces']:4d} ({row['real_tracks']:2d} tracks)"
                f" mean {row['real_mean_evidence']:+.2f}, {row['real_pushing_fake']:.0%} > 0"
                f"  swapped {row['swapped_faces']:4d} mean {row['swapped_mean_evidence']:+.2f}"
            )
    write_results(
        args.out,
        "pose_evidence",
        {"models": provenance, "yaw_edges": list(YAW_EDGES), "results": results},
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
