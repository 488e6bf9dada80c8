"""Face-motion anomaly, measured with each video family left out (issue 18's cue across frames
that does not depend on a blend; the protocol and the keep rule are in benchmarks/README).

    .venv/bin/python benchmarks/face_motion.py [--out benchmarks/results/face_motion.json]

For each fake kind of recordings (talking heads, live swaps): the motion model is fitted on the
real recordings of that kind's leave-one-kind-out training set and scored on the recordings of
its score set, per delivery condition (as the yardstick delivers them: plain, poor call; first
20 s). Each recording is analysed by the product's face pipeline at 15 Hz and its longest
track's landmarks are used. The lockbox is never read. Landmark tracks are cached per delivered
file in ~/.cache/swapwatch/motion.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import av
import numpy as np

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data"
sys.path.insert(0, str(REPO / "benchmarks"))

from machine import write_results  # noqa: E402

from swapwatch.datasets.lists import MediaItem, read_list  # noqa: E402
from swapwatch.datasets.splits import FakeKind, leave_one_kind_out  # noqa: E402
from swapwatch.errors import SourceError  # noqa: E402
from swapwatch.evaluation.conditions import CONDITIONS, deliver  # noqa: E402
from swapwatch.evaluation.metrics import roc_auc  # noqa: E402
from swapwatch.faces.analyzer import FaceAnalyzer  # noqa: E402
from swapwatch.faces.geometry import LEFT_EYE_OUTER, RIGHT_EYE_OUTER  # noqa: E402
from swapwatch.faces.motion import FEATURES, MotionModel, track_features  # noqa: E402
from swapwatch.native_logs import native_stderr_silenced  # noqa: E402
from swapwatch.stream.source import upright_rgb  # noqa: E402

MAX_SECONDS = 20.0
RATE = 15.0
KINDS = (FakeKind.TALKING_HEAD, FakeKind.LIVE_SWAP)
BOOTSTRAP = 2000
CACHE = Path.home() / ".cache" / "swapwatch"


def longest_track(path: Path, faces: FaceAnalyzer) -> dict[str, Any]:
    """Analysed times, landmarks and size of the longest face track of a delivered recording,
    with its frame rate; frames taken at the analysis rate as `scan` takes them."""
    faces.reset()
    tracks: dict[int, tuple[list[float], list[np.ndarray]]] = {}
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        stream.thread_type = "SLICE"
        fps = float(stream.average_rate or 30)
        stride = max(1, round(fps / RATE))
        for index, frame in enumerate(container.decode(stream)):
            if index % stride:
                continue
            batch = faces.analyse(upright_rgb(frame))
            t = float(frame.time if frame.time is not None else index / fps)
            for track_id, points in zip(batch.track_ids, batch.points, strict=True):
                times, meshes = tracks.setdefault(int(track_id), ([], []))
                times.append(t)
                meshes.append(points)
    if not tracks:
        return {"fps": fps, "times": np.zeros(0), "points": np.zeros((0, 468, 3), np.float32)}
    times, meshes = max(tracks.values(), key=lambda track: len(track[0]))
    return {"fps": fps, "times": np.asarray(times), "points": np.stack(meshes)}


def features_of(copy: MediaItem, faces: FaceAnalyzer, condition: str) -> dict[str, Any]:
    """Window features and covariates of one delivered recording (cached)."""
    cached = CACHE / "motion" / condition / f"{copy.path.stem}.npz"
    if cached.is_file():
        with np.load(cached) as data:
            track = {k: data[k] for k in data.files}
    else:
        found = longest_track(copy.path, faces)
        cached.parent.mkdir(parents=True, exist_ok=True)
        np.savez(cached, fps=found["fps"], times=found["times"], points=found["points"])
        track = found
    times, points = track["times"], track["points"]
    across = points[:, LEFT_EYE_OUTER, :2] - points[:, RIGHT_EYE_OUTER, :2]
    eyes = float(np.median(np.linalg.norm(across, axis=1))) if len(points) else 0.0
    features = track_features(times, points)
    # The spread of the yaw's speed, degrees a second (the feature is its log).
    speeds = np.exp(features[:, FEATURES.index("yaw_speed")])
    yaw_speed = float(np.median(speeds)) if len(features) else 0.0
    return {
        "features": features,
        "fps": float(track["fps"]),
        "seconds": float(times[-1] - times[0]) if len(times) > 1 else 0.0,
        "face_px": eyes,
        "head_speed": yaw_speed,
    }


def bootstrap_interval(scores: np.ndarray, labels: np.ndarray, seed: int = 0) -> list[float | None]:
    rng = np.random.default_rng(seed)
    values = []
    for _ in range(BOOTSTRAP):
        pick = rng.integers(0, len(scores), len(scores))
        auc = roc_auc(scores[pick], labels[pick]) if 0 < labels[pick].sum() < len(pick) else None
        if auc is not None:
            values.append(auc)
    if not values:
        return [None, None]
    low, high = np.percentile(values, [2.5, 97.5])
    return [round(float(low), 4), round(float(high), 4)]


def auc_of(values: list[float], labels: list[bool]) -> float | None:
    auc = roc_auc(np.asarray(values, np.float64), np.asarray(labels, np.float64))
    return None if auc is None else round(auc, 4)


def measure(kind: FakeKind, items: list[MediaItem], condition: str) -> dict[str, Any]:
    loo = leave_one_kind_out(items, kind)
    fit_items = [i for i in loo.train if not i.is_image and not i.is_fake]
    score_items = [
        i
        for i in loo.score
        if not i.is_image and (not i.is_fake or i.family.startswith(kind.value))
    ]
    folder = CACHE / "delivered" / condition
    with native_stderr_silenced(True):
        faces = FaceAnalyzer(quiet=True)
    try:

        def described(item: MediaItem) -> dict[str, Any] | None:
            try:
                copy = deliver(item, CONDITIONS[condition], folder, MAX_SECONDS)
            except SourceError as exc:
                print(f"  skipped {item.name}: {exc}", file=sys.stderr)
                return None
            return features_of(copy, faces, condition)

        fitted = [d for d in map(described, fit_items) if d is not None]
        model = MotionModel.fit([d["features"] for d in fitted])
        spread = np.sqrt(np.diag(np.linalg.inv(model.precision)))
        rows = []
        for item in score_items:
            found = described(item)
            if found is None:
                continue
            rows.append(
                {
                    "name": item.name,
                    "family": item.family,
                    "group": item.group,
                    "fake": item.is_fake,
                    "score": model.score(found["features"]),
                    "windows": len(found["features"]),
                    "fps": found["fps"],
                    "seconds": round(found["seconds"], 2),
                    "face_px": round(found["face_px"], 1),
                    "head_speed": round(found["head_speed"], 3),
                    "z": (
                        ((np.median(found["features"], axis=0) - model.mean) / spread)
                        .round(2)
                        .tolist()
                        if len(found["features"])
                        else None
                    ),
                }
            )
            print(
                f"  [{kind.value} {condition}] {item.name} ({'fake' if item.is_fake else 'real'}):"
                f" {rows[-1]['score']}",
                file=sys.stderr,
                flush=True,
            )
    finally:
        faces.close()
    scored = [r for r in rows if r["score"] is not None]
    labels = np.asarray([r["fake"] for r in scored], np.float64)
    scores = np.asarray([r["score"] for r in scored], np.float64)
    fakes = [r for r in scored if r["fake"]]
    confounds = {
        name: auc_of([r[name] for r in scored], [r["fake"] for r in scored])
        for name in ("fps", "seconds", "face_px", "head_speed")
    }
    families = sorted({r["family"] for r in fakes})
    per_family = {
        family: auc_of(
            [r["score"] for r in scored if not r["fake"] or r["family"] == family],
            [r["fake"] for r in scored if not r["fake"] or r["family"] == family],
        )
        for family in families
    }
    mean_z = (
        dict(zip(FEATURES, np.mean([r["z"] for r in fakes], axis=0).round(2).tolist(), strict=True))
        if fakes
        else {}
    )
    return {
        "fit_recordings": model.recordings,
        "fit_windows": int(sum(len(d["features"]) for d in fitted)),
        "shrinkage": round(model.shrinkage, 4),
        "scored": {"reals": int((labels == 0).sum()), "fakes": int(labels.sum())},
        "without_score": [r["name"] for r in rows if r["score"] is None],
        "auc": auc_of(scores.tolist(), [bool(v) for v in labels]),
        "auc_interval_95": bootstrap_interval(scores, labels),
        "per_family": per_family,
        "confound_auc": confounds,
        "fakes_mean_z": mean_z,
        "items": rows,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--list", type=Path, default=DATA / "manifest.csv")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks/results/face_motion.json")
    args = parser.parse_args()
    items = read_list(args.list)
    results: dict[str, Any] = {}
    for kind in KINDS:
        results[kind.value] = {}
        for condition in CONDITIONS:
            found = measure(kind, items, condition)
            results[kind.value][condition] = found
            print(
                f"{kind.value}, {condition}: AUC {found['auc']} {found['auc_interval_95']} "
                f"({found['scored']}); confounds {found['confound_auc']}",
                flush=True,
            )
    write_results(args.out, "face_motion", {"max_seconds": MAX_SECONDS, "rate": RATE, **results})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
