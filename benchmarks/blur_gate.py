"""Where the blur gate belongs: the detector's evidence per bin of sharpness on held-out groups,
with the blur gate open, faces as delivered and softened.

    .venv/bin/python benchmarks/blur_gate.py [--model FILE.onnx] [--out FILE.json] [--limit N]

Every validation-part item (swapwatch.datasets.splits), delivered as in the yardstick's plain
condition, is analysed with every gate as shipped but the blur gate: pictures once (with the
close-range search), recordings at 15 Hz over their first 20 s. Each face is scored (logit / T)
with its sharpness, each real face's self-blend too (the training generator, as pose_gate.py
makes it). Each face the present gate admits, and each real face's self-blend, is also softened
(its crop shrunk by 2 and by 3, area averaging, and enlarged back, bilinear), its sharpness read
again and scored: the held-out groups hold one fake below the gate, so softening is what makes
blurred fakes to measure.

The rule (written 2026-12-07 before any figure of it was seen, benchmarks/README.md) is
swapwatch.evaluation.blur_gate: bins of sharpness from the present gate (12) downwards, each
against the faces the present gate admits; the first bin that fails closes the gate.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data"
RESULTS = REPO / "benchmarks" / "results"

from machine import write_results  # noqa: E402
from pose_gate import BLEND_SEED, analysed, each_delivered, self_blended  # noqa: E402

from swapwatch.datasets.lists import read_list  # noqa: E402
from swapwatch.datasets.splits import Part, split  # noqa: E402
from swapwatch.engines import create_engine  # noqa: E402
from swapwatch.engines.base import detector_logits  # noqa: E402
from swapwatch.evaluation.blur_gate import (  # noqa: E402
    EDGES,
    SOFTENING,
    BlurBin,
    Readings,
    bin_members,
    blur_bin_passes,
    blur_gate,
    read_bin,
)
from swapwatch.evaluation.gate_rule import (  # noqa: E402
    DRIFT,
    DROP,
    MIN_GROUPS,
)
from swapwatch.faces.analyzer import FaceAnalyzer  # noqa: E402
from swapwatch.faces.quality import QualityConfig, exposure  # noqa: E402
from swapwatch.models import DEFAULT_DETECTOR  # noqa: E402
from swapwatch.training.sharpness import soften  # noqa: E402


@dataclass(frozen=True, slots=True)
class Reading:
    """One crop the detector read: a face as delivered or softened."""

    sharpness: float
    logit: float  # calibrated (logit / T)
    blend_logit: float  # its self-blend's (softened alike), NaN for a fake face
    delivered: bool  # False: a softened copy


def readings_of(
    path: Path,
    is_image: bool,
    faces: FaceAnalyzer,
    engine: Any,
    rng: np.random.Generator | None,
    present_gate: float,
) -> list[Reading]:
    """Every face the other gates pass, as delivered, and each one the present gate admits
    softened by every factor; with `rng` (a real item) each with its self-blend's logit."""
    out: list[Reading] = []
    temperature = engine.info.temperature

    def logits(crops: list[np.ndarray]) -> list[float]:
        return [float(v) for v in detector_logits(engine, np.stack(crops)) / temperature]

    def score(batch: Any, image: np.ndarray) -> None:
        for i in np.flatnonzero(batch.usable):
            crop = batch.crops[i]
            crops = [crop]
            blend = self_blended(image, batch.points[i], rng) if rng is not None else None
            if blend is not None:
                crops.append(blend)
            sharpness = batch.quality[i].sharpness
            softened = (
                [(soften(crop, f), None if blend is None else soften(blend, f)) for f in SOFTENING]
                if sharpness >= present_gate
                else []
            )
            for face, its_blend in softened:
                crops.append(face)
                if its_blend is not None:
                    crops.append(its_blend)
            values = iter(logits(crops))
            logit = next(values)
            out.append(
                Reading(sharpness, logit, next(values) if blend is not None else np.nan, True)
            )
            for face, its_blend in softened:
                logit = next(values)
                blend_logit = next(values) if its_blend is not None else np.nan
                out.append(Reading(exposure(face)[1], logit, blend_logit, False))

    for batch, image in analysed(path, is_image, faces):
        score(batch, image)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, default=DEFAULT_DETECTOR)
    parser.add_argument("--list", type=Path, default=DATA / "manifest.csv")
    parser.add_argument(
        "--cache", type=Path, default=Path.home() / ".cache" / "swapwatch" / "delivered" / "plain"
    )
    parser.add_argument("--limit", type=int, help="only the first N items (a smoke run)")
    parser.add_argument("--out", type=Path, default=RESULTS / "blur_gate.json")
    args = parser.parse_args()
    items = split(read_list(args.list))[Part.VALIDATION][: args.limit]
    engine = create_engine("onnxruntime", args.model, device="cpu", threads=1)
    present_gate = QualityConfig().min_sharpness
    if present_gate != EDGES[0]:
        print(f"the shipped blur gate is {present_gate:g}, the rule starts from {EDGES[0]:g}")
        return 2
    faces = FaceAnalyzer(
        crop_size=engine.info.cut_size, quality=QualityConfig(min_sharpness=0.0), quiet=True
    )
    rng = np.random.default_rng(BLEND_SEED)
    try:
        readings, fake, group, still = each_delivered(
            items,
            args.cache,
            lambda path, is_image, item: readings_of(
                path, is_image, faces, engine, None if item.is_fake else rng, present_gate
            ),
        )
    finally:
        faces.close()
        engine.close()
    summary = summarise(readings, fake, group, still)
    write_results(
        args.out,
        "blur_gate",
        {
            "model": str(args.model),
            "rule": {
                "reference": f"faces as delivered at sharpness >= {EDGES[0]:g}",
                "lower_edges": list(EDGES),
                "softening_factors": list(SOFTENING),
                "auc_drop": DROP,
                "real_evidence_drift": DRIFT,
                "min_groups_per_class": MIN_GROUPS,
                "blend_seed": BLEND_SEED,
            },
            **summary,
            "readings": len(readings),
            "items": len(items),
        },
    )
    return 0


def summarise(
    readings: list[Reading], fake: np.ndarray, group: np.ndarray, still: np.ndarray
) -> dict[str, Any]:
    """The bins of sharpness, each read by the rule, and the gate."""
    read_all = Readings(
        sharpness=np.asarray([r.sharpness for r in readings], np.float64),
        logit=np.asarray([r.logit for r in readings], np.float64),
        blend_logit=np.asarray([r.blend_logit for r in readings], np.float64),
        delivered=np.asarray([r.delivered for r in readings], bool),
        fake=fake,
        group=group,
    )
    delivered = read_all.delivered
    evidence = np.clip(read_all.logit, -4, 4)
    rows: list[dict[str, Any]] = []
    bins: list[BlurBin] = []
    for lo, hi, inside in bin_members(read_all):
        bins.append(read_bin(read_all, lo, inside))
        this = bins[-1]
        read = this.read
        reals = inside & ~fake
        sent = reals & delivered
        rows.append(
            {
                "sharpness": [lo, None if hi == np.inf else hi],
                "real_faces_delivered": int(sent.sum()),
                "real_groups_delivered": len(set(group[sent])),
                "real_pictures_delivered": int((sent & still).sum()),
                "real_faces_softened": int((reals & ~delivered).sum()),
                "real_groups": len(set(group[reals])),
                "fake_faces_delivered": int((inside & fake & delivered).sum()),
                "fake_faces_softened": int((inside & fake & ~delivered).sum()),
                "fake_groups": len(set(group[inside & fake])),
                "self_blend_auc": read.self_blend.auc,
                "self_blend_measured": read.self_blend.measured,
                "recorded_auc": read.recorded.auc,
                "recorded_measured": read.recorded.measured,
                "real_mean_evidence": read.real_evidence,
                "delivered_real_mean_evidence": _mean(evidence[sent]),
                "delivered_real_share_above_0": (
                    round(float((evidence[sent] > 0).mean()), 4) if sent.any() else None
                ),
                "fake_mean_evidence": _mean(evidence[inside & fake]),
                "passes": blur_bin_passes(this, bins[0]),
            }
        )
        row = rows[-1]
        print(
            f"sharpness {lo:4.0f}-{'' if hi == np.inf else f'{hi:.0f}':>3}: real "
            f"{row['real_faces_delivered']} sent + {row['real_faces_softened']} softened "
            f"({row['real_groups']} groups), fake {row['fake_faces_delivered']} + "
            f"{row['fake_faces_softened']} ({row['fake_groups']} groups); self-blend AUC "
            f"{read.self_blend.auc}, recorded AUC {read.recorded.auc}, real evidence "
            f"{read.real_evidence} (sent {row['delivered_real_mean_evidence']}): "
            f"{'passes' if row['passes'] else 'fails'}"
        )
    gate = blur_gate(bins)
    print(f"blur gate (sharpness) by the rule: {gate}")
    return {"bins": rows, "gate_sharpness": gate}


def _mean(values: np.ndarray) -> float | None:
    return round(float(values.mean()), 3) if len(values) else None


if __name__ == "__main__":
    raise SystemExit(main())
