"""A one-class cue: how far a face's pooled features lie from real faces', measured on the
talking heads left out of training (the protocol and the keep rule are in benchmarks/README,
written before it ran).

    .venv/bin/python benchmarks/feature_distance.py [--model FILE-fp32.onnx] [--out FILE.json]

Fit on the real crops of the talking-head leave-out training set (training's crop cache, at most
16 crops an item): PCA to 64 components, then mean and shrunk covariance with each group
weighing the same. Scored on the recordings of that leave-out's score set, delivered as the
yardstick delivers them, each frame of the longest track at 15 Hz. The lockbox is never read.
Features are cached per delivered file in ~/.cache/swapwatch/features.
"""

from __future__ import annotations

import argparse
import hashlib
import sys
from pathlib import Path
from typing import Any

import av
import numpy as np
import onnx
import onnxruntime as ort

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data"
RUNS = Path("/work/runs")
sys.path.insert(0, str(REPO / "benchmarks"))

from face_motion import auc_of, bootstrap_interval  # noqa: E402
from machine import write_results  # noqa: E402
from pulse_cue import described, kept  # noqa: E402

from swapwatch.datasets.crops import CropCache, centre_window  # noqa: E402
from swapwatch.datasets.lists import MediaItem, read_list  # noqa: E402
from swapwatch.datasets.splits import FakeKind, leave_one_kind_out  # noqa: E402
from swapwatch.engines.base import METADATA_KEY, ModelInfo, normalise  # noqa: E402
from swapwatch.errors import SourceError  # noqa: E402
from swapwatch.evaluation.conditions import CONDITIONS, deliver  # noqa: E402
from swapwatch.faces.analyzer import FaceAnalyzer  # noqa: E402
from swapwatch.faces.motion import MotionModel  # noqa: E402
from swapwatch.native_logs import native_stderr_silenced  # noqa: E402
from swapwatch.stream.source import upright_rgb  # noqa: E402

MAX_SECONDS = 20.0
RATE = 15.0
KIND = FakeKind.TALKING_HEAD
CROPS_PER_ITEM = 16
COMPONENTS = 64
BATCH = 32
CACHE = Path.home() / ".cache" / "swapwatch"
DEFAULT_MODEL = RUNS / "detector-v22-allmatch-loko-th" / "detector-v22-allmatch-loko-th-fp32.onnx"
CONFOUNDS = ("fps", "seconds", "face_px", "head_speed")


class FeatureReader:
    """The model's pooled features (the last Gemm's input) and logits, one thread."""

    def __init__(self, path: Path) -> None:
        graph = onnx.load(str(path))
        meta = {p.key: p.value for p in graph.metadata_props}
        self.info = ModelInfo.from_json(meta[METADATA_KEY])
        [gemm] = [n for n in graph.graph.node if n.op_type == "Gemm"]
        self.pooled = gemm.input[0]
        graph.graph.output.append(onnx.helper.make_empty_tensor_value_info(self.pooled))
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        self.session = ort.InferenceSession(
            graph.SerializeToString(), options, providers=["CPUExecutionProvider"]
        )
        self.input = self.session.get_inputs()[0].name
        self.digest = hashlib.sha256(path.read_bytes()).hexdigest()[:12]

    def __call__(self, crops: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(N, 1280) features and (N,) logits of uint8 crops cut at the model's size."""
        features, logits = [], []
        for start in range(0, len(crops), BATCH):
            x = normalise(crops[start : start + BATCH], self.info)
            logit, pooled = self.session.run(["logits", self.pooled], {self.input: x})
            features.append(np.asarray(pooled, np.float64).reshape(len(x), -1))
            logits.append(np.asarray(logit, np.float64).reshape(-1))
        if not features:
            return np.zeros((0, 0)), np.zeros(0)
        return np.concatenate(features), np.concatenate(logits)


def fit(reader: FeatureReader, items: list[MediaItem]) -> tuple[np.ndarray, np.ndarray, Any]:
    """PCA basis (mean, components) and the MotionModel of real training crops' features."""
    cache = CropCache()
    by_group: dict[str, list[np.ndarray]] = {}
    try:
        for n, item in enumerate(items):
            crops = cache.get(item).crops
            if not len(crops):
                continue
            pick = np.unique(np.linspace(0, len(crops) - 1, CROPS_PER_ITEM).round().astype(int))
            features, _ = reader(np.ascontiguousarray(centre_window(crops[pick])))
            by_group.setdefault(item.group, []).append(features)
            if n % 200 == 0:
                print(f"  fit: {n} of {len(items)} real items", file=sys.stderr, flush=True)
    finally:
        cache.close()
    everything = np.concatenate([f for group in by_group.values() for f in group])
    centre = everything.mean(axis=0)
    _, _, vt = np.linalg.svd(everything - centre, full_matrices=False)
    basis = vt[:COMPONENTS]
    groups = [(np.concatenate(g) - centre) @ basis.T for g in by_group.values()]
    return centre, basis, MotionModel.fit(groups)


def track_features(
    path: Path, reader: FeatureReader, faces: FaceAnalyzer, condition: str
) -> dict[str, np.ndarray]:
    """Features and logits of every analysed frame of the longest track (cached)."""
    cached = CACHE / "features" / reader.digest / condition / f"{path.stem}.npz"
    if cached.is_file():
        with np.load(cached) as data:
            return {k: data[k] for k in data.files}
    faces.reset()
    crops: dict[int, list[np.ndarray]] = {}
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        stream.thread_type = "SLICE"
        fps = float(stream.average_rate or 30)
        stride = max(1, round(fps / RATE))
        for index, frame in enumerate(container.decode(stream)):
            if index % stride:
                continue
            batch = faces.analyse(upright_rgb(frame))
            for track_id, crop in zip(batch.track_ids, batch.crops, strict=True):
                crops.setdefault(int(track_id), []).append(crop)
    longest = max(crops.values(), key=len, default=[])
    size = reader.info.cut_size
    stacked = np.stack(longest) if longest else np.zeros((0, size, size, 3), np.uint8)
    features, logits = reader(stacked)
    found = {"features": features, "logits": logits}
    cached.parent.mkdir(parents=True, exist_ok=True)
    np.savez(cached, **found)  # type: ignore[arg-type]
    return found


def measure(
    reader: FeatureReader,
    fitted: tuple[np.ndarray, np.ndarray, Any],
    score_items: list[MediaItem],
    condition: str,
) -> dict[str, Any]:
    centre, basis, model = fitted
    folder = CACHE / "delivered" / condition
    rows = []
    with native_stderr_silenced(True):
        faces = FaceAnalyzer(crop_size=reader.info.cut_size, quiet=True)
        pulse_faces = FaceAnalyzer(quiet=True)
    try:
        for item in score_items:
            try:
                copy = deliver(item, CONDITIONS[condition], folder, MAX_SECONDS)
            except SourceError as exc:
                print(f"  skipped {item.name}: {exc}", file=sys.stderr)
                continue
            found = track_features(copy.path, reader, faces, condition)
            features = found["features"]
            distances = (
                model.window_scores((features - centre) @ basis.T) if len(features) else None
            )
            controls = described(copy, pulse_faces, condition)
            rows.append(
                {
                    "name": item.name,
                    "family": item.family,
                    "group": item.group,
                    "fake": item.is_fake,
                    "frames": len(features),
                    "score": None if distances is None else round(float(np.median(distances)), 4),
                    "logit": (
                        round(float(np.median(found["logits"])), 4) if len(features) else None
                    ),
                    **{name: controls[name] for name in CONFOUNDS},
                }
            )
            print(
                f"  [{condition}] {item.name} ({'fake' if item.is_fake else 'real'}): "
                f"distance {rows[-1]['score']}, logit {rows[-1]['logit']}",
                file=sys.stderr,
                flush=True,
            )
    finally:
        faces.close()
        pulse_faces.close()
    scored = [r for r in rows if r["score"] is not None]
    labels = [bool(r["fake"]) for r in scored]
    scores = np.asarray([r["score"] for r in scored], np.float64)
    families = sorted({r["family"] for r in scored if r["fake"]})
    return {
        "scored": {"reals": labels.count(False), "fakes": labels.count(True)},
        "without_score": [r["name"] for r in rows if r["score"] is None],
        "auc": auc_of(scores.tolist(), labels),
        "auc_interval_95": bootstrap_interval(scores, np.asarray(labels, np.float64)),
        "per_family": {
            family: auc_of(
                [r["score"] for r in scored if not r["fake"] or r["family"] == family],
                [r["fake"] for r in scored if not r["fake"] or r["family"] == family],
            )
            for family in families
        },
        "logit_auc": auc_of([r["logit"] for r in scored], labels),
        "confound_auc": {name: auc_of([r[name] for r in scored], labels) for name in CONFOUNDS},
        "items": rows,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL)
    parser.add_argument("--list", type=Path, default=DATA / "manifest.csv")
    parser.add_argument(
        "--out", type=Path, default=REPO / "benchmarks/results/feature_distance.json"
    )
    args = parser.parse_args()
    items = read_list(args.list)
    loo = leave_one_kind_out(items, KIND)
    reader = FeatureReader(args.model)
    fit_items = [i for i in loo.train if not i.is_fake]
    fitted = fit(reader, fit_items)
    model = fitted[2]
    print(f"fitted on {model.recordings} groups; shrinkage {model.shrinkage:.3f}", flush=True)
    score_items = [
        i
        for i in loo.score
        if not i.is_image and (not i.is_fake or i.family.startswith(KIND.value))
    ]
    results: dict[str, Any] = {}
    for condition in CONDITIONS:
        found = measure(reader, fitted, score_items, condition)
        results[condition] = found
        print(
            f"{KIND.value}, {condition}: AUC {found['auc']} {found['auc_interval_95']} "
            f"({found['scored']}); logit {found['logit_auc']}; confounds {found['confound_auc']}",
            flush=True,
        )
    verdict = kept(results)
    print(f"kept by the README's rule: {verdict}")
    write_results(
        args.out,
        "feature_distance",
        {
            "model": str(args.model),
            "fit": {
                "real_items": len(fit_items),
                "groups": model.recordings,
                "components": COMPONENTS,
                "crops_per_item": CROPS_PER_ITEM,
                "shrinkage": round(model.shrinkage, 4),
            },
            "max_seconds": MAX_SECONDS,
            "rate": RATE,
            "kept": verdict,
            KIND.value: results,
        },
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
