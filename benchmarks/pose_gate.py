"""Where the pose gate belongs: AUC per head-turn bin, in degrees, on held-out groups, with the
gate open; and what the blur gate costs pictures and recordings.

    .venv/bin/python benchmarks/pose_gate.py [--model FILE.onnx] [--out FILE.json]

Every validation-part item (swapwatch.datasets.splits), delivered as in the yardstick's plain
condition, is analysed with no pose gate: recordings at 15 Hz over their first 20 s, pictures
once. Each scored face's turn (|yaw| in degrees from the mesh's depth, `swapwatch.faces.pose`;
the former gate's `yaw_ratio` stops near 33 degrees, so it cannot tell 35 from 60) and its
calibrated logit are kept. Every real face is also self-blended once (the training generator,
`swapwatch.training.selfblend`, seeded per face) and the blend scored: the held-out groups hold
no recorded swap turned past about 30 degrees, while their real faces turn to 90, so the
self-blends are what measures a turned crop's readability there.

Per bin of |yaw| it reports, for the recorded fakes against the reals (frame AUC, faces and
groups of each class) and for the real faces against their own self-blends, and the real faces'
evidence (clipped logit / T; above 0 pushes towards an alarm).

The rule (written 2026-12-06 before any figure of it was seen; it replaces the first rule,
whose absolute AUC floor of 0.75 closed the gate at the frontal bin with detector-v13) is
`swapwatch.evaluation.pose_gate`: against the frontal bin (0-10 degrees), a bin passes while its
self-blend AUC (and its recorded-fake AUC, where measured) falls by at most 0.05 and its real
faces' mean evidence rises by at most 1; the first bin that fails closes the gate.
"""

from __future__ import annotations

import argparse
import itertools
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data"
RESULTS = REPO / "benchmarks" / "results"

from generalization import MAX_SECONDS, RATE  # noqa: E402  (the yardstick's own)
from machine import write_results  # noqa: E402

from swapwatch.datasets.crops import CONTEXT_SIZE, centre_window, context_square  # noqa: E402
from swapwatch.datasets.lists import MediaItem, read_list  # noqa: E402
from swapwatch.datasets.splits import Part, item_kind, split  # noqa: E402
from swapwatch.engines import create_engine  # noqa: E402
from swapwatch.engines.base import detector_logits  # noqa: E402
from swapwatch.evaluation.conditions import PLAIN, deliver  # noqa: E402
from swapwatch.evaluation.gate_rule import (  # noqa: E402
    DRIFT,
    DROP,
    MIN_GROUPS,
    GateBin,
    bin_auc,
    bin_passes,
)
from swapwatch.evaluation.metrics import roc_auc  # noqa: E402
from swapwatch.evaluation.pose_gate import BINS, pose_gate  # noqa: E402
from swapwatch.evaluation.runner import read_picture  # noqa: E402
from swapwatch.faces.analyzer import FaceAnalyzer  # noqa: E402
from swapwatch.faces.geometry import warp  # noqa: E402
from swapwatch.faces.pose import head_pose  # noqa: E402
from swapwatch.faces.quality import QualityConfig  # noqa: E402
from swapwatch.models import DEFAULT_DETECTOR  # noqa: E402
from swapwatch.training.selfblend import self_blend  # noqa: E402

BLEND_SEED = 20261206
R = TypeVar("R")


@dataclass(frozen=True, slots=True)
class ScoredFace:
    yaw: float  # |yaw|, degrees
    sharpness: float
    logit: float  # calibrated (logit / T)
    blend_logit: float | None  # its self-blend's, for a real face


def self_blended(image: np.ndarray, points: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The inference crop of a self-blend of one face, made as training makes its own: on the
    wider context crop, whose centre window is exactly the crop the detector sees."""
    square = context_square(points)
    matrix = square.to_output(CONTEXT_SIZE)
    context = warp(image, square, CONTEXT_SIZE)
    landmarks = points[:, :2].astype(np.float64) @ matrix[:, :2].T + matrix[:, 2]
    return np.ascontiguousarray(centre_window(self_blend(context, landmarks, rng).fake))


def faces_of(
    path: Path,
    is_image: bool,
    faces: FaceAnalyzer,
    engine: Any,
    rng: np.random.Generator | None,
) -> list[ScoredFace]:
    """Every face that passes the other gates, and with `rng` (a real item) each face's
    self-blend's logit too."""
    out: list[ScoredFace] = []
    temperature = engine.info.temperature

    def score(batch: Any, image: np.ndarray) -> None:
        usable = np.flatnonzero(batch.usable)
        if not len(usable):
            return
        logits = detector_logits(engine, batch.crops[usable]) / temperature
        blends: list[float | None] = [None] * len(usable)
        if rng is not None:
            crops = np.stack([self_blended(image, batch.points[i], rng) for i in usable])
            blends = list(detector_logits(engine, crops) / temperature)
        for i, logit, blend_logit in zip(usable, logits, blends, strict=True):
            out.append(
                ScoredFace(
                    yaw=abs(head_pose(batch.points[i]).yaw),
                    sharpness=batch.quality[i].sharpness,
                    logit=float(logit),
                    blend_logit=None if blend_logit is None else float(blend_logit),
                )
            )

    for batch, image in analysed(path, is_image, faces):
        score(batch, image)
    return out


def each_delivered(
    items: list[MediaItem],
    cache: Path,
    read: Callable[[Path, bool, MediaItem], list[R]],
) -> tuple[list[R], np.ndarray, np.ndarray, np.ndarray]:
    """`read(path, is_image, item)` of every item delivered as in the yardstick's plain
    condition, and for each thing read its item's class (fake), group and medium (a picture)."""
    found: list[R] = []
    fake: list[bool] = []
    group: list[str] = []
    still: list[bool] = []
    for n, item in enumerate(items):
        copy = deliver(item, PLAIN, cache, MAX_SECONDS)
        these = read(copy.path, copy.is_image, item)
        found += these
        fake += [item.is_fake] * len(these)
        group += [f"{item_kind(item)}:{item.group}"] * len(these)
        still += [copy.is_image] * len(these)
        if n % 200 == 0:
            print(f"  {n + 1}/{len(items)} items, {len(found)} read", file=sys.stderr)
    return found, np.asarray(fake, bool), np.asarray(group), np.asarray(still, bool)


def analysed(path: Path, is_image: bool, faces: FaceAnalyzer) -> Iterator[tuple[Any, np.ndarray]]:
    """(faces, picture) of a picture once, or of a recording's frames at the yardstick's rate
    over its first MAX_SECONDS."""
    import av

    if is_image:
        found = faces.analyse_picture(read_picture(path))
        yield found.batch, found.image
        return
    faces.reset()
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        fps = float(stream.average_rate or 25)
        stride = max(1, round(fps / RATE))
        for index, frame in enumerate(container.decode(stream)):
            if index / fps >= MAX_SECONDS:
                break
            if index % stride == 0:
                image = frame.to_ndarray(format="rgb24")
                yield faces.analyse(image), image


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, default=DEFAULT_DETECTOR)
    parser.add_argument("--list", type=Path, default=DATA / "manifest.csv")
    parser.add_argument(
        "--cache", type=Path, default=Path.home() / ".cache" / "swapwatch" / "delivered" / "plain"
    )
    parser.add_argument("--limit", type=int, help="only the first N items (a smoke run)")
    parser.add_argument("--out", type=Path, default=RESULTS / "pose_gate.json")
    args = parser.parse_args()
    items = split(read_list(args.list))[Part.VALIDATION][: args.limit]
    engine = create_engine("onnxruntime", args.model, device="cpu", threads=1)
    # The pose and blur gates open; the blur gate is applied afterwards, as measured. Crops are
    # cut as the yardstick cuts them (a 128 px model's at 224, then shrunk).
    open_gates = QualityConfig(max_turn=90.0, min_sharpness=0.0)
    faces = FaceAnalyzer(crop_size=engine.info.cut_size, quality=open_gates, quiet=True)
    rng = np.random.default_rng(BLEND_SEED)
    try:
        scored, fake, group, still = each_delivered(
            items,
            args.cache,
            lambda path, is_image, item: faces_of(
                path, is_image, faces, engine, None if item.is_fake else rng
            ),
        )
    finally:
        faces.close()
        engine.close()
    summary = summarise(scored, fake, group, still)
    write_results(
        args.out,
        "pose_gate",
        {
            "model": str(args.model),
            "rule": {
                "reference": "the 0-10 degree bin",
                "auc_drop": DROP,
                "real_evidence_drift": DRIFT,
                "min_groups_per_class": MIN_GROUPS,
                "blend_seed": BLEND_SEED,
            },
            **summary,
            "faces": len(scored),
            "items": len(items),
        },
    )
    return 0


def summarise(
    scored: list[ScoredFace], fake: np.ndarray, group: np.ndarray, still: np.ndarray
) -> dict[str, Any]:
    """The blur gate's rows, the pose bins and the gate by the rule."""
    logit = np.asarray([f.logit for f in scored], np.float64)
    sharp = np.asarray([f.sharpness for f in scored], np.float64)
    yaw = np.asarray([f.yaw for f in scored], np.float64)
    blend = np.asarray(
        [np.nan if f.blend_logit is None else f.blend_logit for f in scored], np.float64
    )
    blurred = sharp < QualityConfig().min_sharpness
    blur_rows = {}
    for name, where in (("pictures", still), ("recordings", ~still)):
        for gate_name, inside in (("passing", where & ~blurred), ("below", where & blurred)):
            auc = roc_auc(logit[inside], fake[inside]) if inside.any() else None
            blur_rows[f"{name}, {gate_name} the blur gate"] = {
                "real_faces": int((inside & ~fake).sum()),
                "fake_faces": int((inside & fake).sum()),
                "auc": None if auc is None else round(auc, 4),
                "real_mean_evidence": _mean(np.clip(logit[inside & ~fake], -4, 4)),
                "fake_mean_evidence": _mean(np.clip(logit[inside & fake], -4, 4)),
            }
    for name, blur_row in blur_rows.items():
        print(f"{name}: {blur_row}")
    # The pose bins hold the faces the blur gate passes.
    kept = ~blurred
    rows: list[dict[str, Any]] = []
    bins: list[GateBin] = []
    for lo, hi in itertools.pairwise(BINS):
        inside = kept & (yaw >= lo) & (yaw < (hi if hi < BINS[-1] else np.inf))
        reals = inside & ~fake
        paired = reals & ~np.isnan(blend)
        real_evidence = np.clip(logit[reals], -4, 4)
        bins.append(
            GateBin(
                edge=hi,
                self_blend=bin_auc(
                    np.concatenate([logit[paired], blend[paired]]),
                    np.repeat([False, True], paired.sum()),
                    np.concatenate([group[paired], group[paired]]),
                ),
                recorded=bin_auc(logit[inside], fake[inside], group[inside]),
                real_evidence=_mean(real_evidence),
            )
        )
        this = bins[-1]
        passes = bin_passes(this, bins[0])
        rows.append(
            {
                "yaw_degrees": [lo, hi],
                "real_faces": int(reals.sum()),
                "real_groups": len(set(group[reals])),
                "fake_faces": int((inside & fake).sum()),
                "fake_groups": len(set(group[inside & fake])),
                "recorded_auc": this.recorded.auc,
                "recorded_measured": this.recorded.measured,
                "self_blend_auc": this.self_blend.auc,
                "self_blend_measured": this.self_blend.measured,
                "real_mean_evidence": this.real_evidence,
                "real_share_above_0": (
                    round(float((real_evidence > 0).mean()), 4) if len(real_evidence) else None
                ),
                "fake_mean_evidence": _mean(np.clip(logit[inside & fake], -4, 4)),
                "passes": passes,
            }
        )
        print(
            f"|yaw| {lo:4.0f}-{hi:3.0f} deg: {rows[-1]['real_faces']:6d} real "
            f"({rows[-1]['real_groups']} groups) {rows[-1]['fake_faces']:6d} fake "
            f"({rows[-1]['fake_groups']} groups) recorded AUC {this.recorded.auc} self-blend AUC "
            f"{this.self_blend.auc} real evidence {this.real_evidence} "
            f"{'passes' if passes else 'fails'}"
        )
    gate = pose_gate(bins)
    print(f"gate (degrees of turn) by the rule: {gate}")
    return {"bins": rows, "blur_gate": blur_rows, "gate_degrees": gate}


def _mean(values: np.ndarray) -> float | None:
    return round(float(values.mean()), 3) if len(values) else None


if __name__ == "__main__":
    raise SystemExit(main())
