"""Where the pose gate belongs: AUC per head-turn bin on held-out groups, with the gate open;
and what the blur gate costs pictures and recordings.

    .venv/bin/python benchmarks/pose_gate.py [--model FILE.onnx] [--out FILE.json]

Every validation-part item (swapwatch.datasets.splits), delivered as in the yardstick's plain
condition, is analysed with no pose gate: recordings at 15 Hz over their first 20 s, pictures
once. Each scored face's turn (`yaw_ratio`: 0 frontal, 1 the nose at a cheek, which a turn of
about 50-60 degrees reaches) and its calibrated logit are kept. Per bin of |yaw| it reports the
faces and groups of each class and the frame AUC of fakes against reals of that bin.

The rule: the gate (`QualityConfig.max_yaw`) is the upper edge of the last bin, from frontal
outwards, whose AUC is at least AUC_FLOOR with at least MIN_GROUPS groups of each class; the first
bin that fails, or that holds too few turned fakes to measure an AUC, closes it: where the
detector's ability to tell fakes was not measured, its score is not added to the evidence. Each
bin also reports its real faces' evidence (a push towards an alarm where above 0).
"""

from __future__ import annotations

import argparse
import itertools
import sys
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data"
RESULTS = REPO / "benchmarks" / "results"

from generalization import MAX_SECONDS, RATE  # noqa: E402  (the yardstick's own)
from machine import write_results  # noqa: E402

from swapwatch.datasets.lists import read_list  # noqa: E402
from swapwatch.datasets.splits import Part, item_kind, split  # noqa: E402
from swapwatch.engines import create_engine  # noqa: E402
from swapwatch.engines.base import detector_logits  # noqa: E402
from swapwatch.evaluation.conditions import PLAIN, deliver  # noqa: E402
from swapwatch.evaluation.metrics import roc_auc  # noqa: E402
from swapwatch.evaluation.runner import read_picture  # noqa: E402
from swapwatch.faces.analyzer import FaceAnalyzer  # noqa: E402
from swapwatch.faces.quality import QualityConfig, yaw_ratio  # noqa: E402
from swapwatch.models import DEFAULT_DETECTOR  # noqa: E402

BINS = (0.0, 0.2, 0.4, 0.6, 0.75, 0.85, 0.95, 1.0001)
AUC_FLOOR = 0.75
MIN_GROUPS = 3


def faces_of(
    path: Path, is_image: bool, faces: FaceAnalyzer, engine: Any
) -> list[tuple[float, float, float]]:
    """(|yaw|, sharpness, calibrated logit) of every face that passes the other gates."""
    import av

    out = []

    def score(batch: Any) -> None:
        usable = batch.usable
        if usable.any():
            logits = detector_logits(engine, batch.crops[usable]) / engine.info.temperature
            reports = [q for q, ok in zip(batch.quality, usable, strict=True) if ok]
            for points, report, logit in zip(batch.points[usable], reports, logits, strict=True):
                out.append((abs(yaw_ratio(points)), report.sharpness, float(logit)))

    if is_image:
        batch = faces.analyse_picture(read_picture(path)).batch
        score(batch)
        return out
    faces.reset()
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        fps = float(stream.average_rate or 25)
        stride = max(1, round(fps / RATE))
        for index, frame in enumerate(container.decode(stream)):
            if index / fps >= MAX_SECONDS:
                break
            if index % stride == 0:
                score(faces.analyse(frame.to_ndarray(format="rgb24")))
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, default=DEFAULT_DETECTOR)
    parser.add_argument("--list", type=Path, default=DATA / "manifest.csv")
    parser.add_argument(
        "--cache", type=Path, default=Path.home() / ".cache" / "swapwatch" / "delivered" / "plain"
    )
    parser.add_argument("--out", type=Path, default=RESULTS / "pose_gate.json")
    args = parser.parse_args()
    items = split(read_list(args.list))[Part.VALIDATION]
    engine = create_engine("onnxruntime", args.model, device="cpu", threads=1)
    # The pose and blur gates open; the blur gate is applied afterwards, as measured.
    open_gates = QualityConfig(max_yaw=1.0, min_sharpness=0.0)
    faces = FaceAnalyzer(crop_size=engine.info.input_size, quality=open_gates, quiet=True)
    yaw, sharp, logit, fake, group, still = [], [], [], [], [], []
    try:
        for n, item in enumerate(items):
            copy = deliver(item, PLAIN, args.cache, MAX_SECONDS)
            for y, sharpness, z in faces_of(copy.path, copy.is_image, faces, engine):
                yaw.append(y)
                sharp.append(sharpness)
                still.append(copy.is_image)
                logit.append(z)
                fake.append(item.is_fake)
                group.append(f"{item_kind(item)}:{item.group}")
            if n % 200 == 0:
                print(f"  {n + 1}/{len(items)} items, {len(yaw)} faces", file=sys.stderr)
    finally:
        faces.close()
        engine.close()
    yaw_a, logit_a, fake_a = np.asarray(yaw), np.asarray(logit), np.asarray(fake)
    group_a = np.asarray(group)
    sharp_a, still_a = np.asarray(sharp), np.asarray(still)
    blurred = sharp_a < QualityConfig().min_sharpness
    blur_rows = {}
    for name, where in (("pictures", still_a), ("recordings", ~still_a)):
        for gate_name, inside in (("passing", where & ~blurred), ("below", where & blurred)):
            auc = roc_auc(logit_a[inside], fake_a[inside]) if inside.any() else None
            blur_rows[f"{name}, {gate_name} the blur gate"] = {
                "real_faces": int((inside & ~fake_a).sum()),
                "fake_faces": int((inside & fake_a).sum()),
                "auc": None if auc is None else round(auc, 4),
                "real_mean_evidence": _mean(np.clip(logit_a[inside & ~fake_a], -4, 4)),
                "fake_mean_evidence": _mean(np.clip(logit_a[inside & fake_a], -4, 4)),
            }
    for name, blur_row in blur_rows.items():
        print(f"{name}: {blur_row}")
    # The pose bins hold the faces the blur gate passes.
    yaw_a = np.where(blurred, np.nan, yaw_a)
    rows = []
    gate: float | None = None
    open_run = True
    for lo, hi in itertools.pairwise(BINS):
        inside = (yaw_a >= lo) & (yaw_a < hi)
        auc = roc_auc(logit_a[inside], fake_a[inside]) if inside.any() else None
        groups = {c: len(set(group_a[inside & (fake_a == c)])) for c in (False, True)}
        row: dict[str, Any] = {
            "yaw": [lo, min(hi, 1.0)],
            "real_faces": int((inside & ~fake_a).sum()),
            "fake_faces": int((inside & fake_a).sum()),
            "real_groups": groups[False],
            "fake_groups": groups[True],
            "auc": None if auc is None else round(auc, 4),
            "real_mean_evidence": _mean(np.clip(logit_a[inside & ~fake_a], -4, 4)),
            "fake_mean_evidence": _mean(np.clip(logit_a[inside & fake_a], -4, 4)),
        }
        rows.append(row)
        real_evidence = np.clip(logit_a[inside & ~fake_a], -4, 4)
        above = float((real_evidence > 0).mean()) if len(real_evidence) else None
        row["real_share_above_0"] = None if above is None else round(above, 4)
        measured = min(groups.values()) >= MIN_GROUPS and auc is not None
        passed = measured and auc is not None and auc >= AUC_FLOOR
        row["measured"] = measured
        row["passes"] = passed
        if open_run and passed:
            gate = min(hi, 1.0)
        else:
            open_run = False
        print(
            f"|yaw| {lo:.2f}-{min(hi, 1.0):.2f}: {row['real_faces']:6d} real "
            f"({groups[False]} groups) {row['fake_faces']:6d} fake ({groups[True]} groups) "
            f"AUC {row['auc']}"
        )
    print(f"gate (max_yaw) by the rule: {gate}")
    write_results(
        args.out,
        "pose_gate",
        {
            "model": str(args.model),
            "rule": {
                "auc_floor": AUC_FLOOR,
                "min_groups_per_class": MIN_GROUPS,
            },
            "bins": rows,
            "blur_gate": blur_rows,
            "gate": gate,
            "faces": len(yaw),
            "items": len(items),
        },
    )
    return 0


def _mean(values: np.ndarray) -> float | None:
    return round(float(values.mean()), 3) if len(values) else None


if __name__ == "__main__":
    raise SystemExit(main())
