"""Which measure sees a real hand over a face whose landmarks stay on it, and its threshold.

    nice -n 5 .venv/bin/python benchmarks/hand_occlusion.py [--out FILE.json]

Recordings: the 25 live-swap recordings of ../shared/data/dfl (left half: the real streamer;
the right half of the one recording with hands over the face too, as the swap shows it) and five
real talking-head clips (real/liveportrait d3, d6, d9, d12, d18: talking, grimacing, turning).
Each is followed at 15 Hz by the live pipeline's tracker; per frame of the main track: the
aligned crop (224 px, the detector's), the landmark model's presence, the face detector's
confidence for that face (run on every frame, down to 0.05).

Labels, hand-checked on frames extracted from the recordings (1 s, then 0.2 s contact sheets
of the face): `HAND_OVER_FACE` (fingers over the mouth and cheek; the track never broke), and
`HAND_AT_EDGE` (a hand at the ear, jaw or under the chin, not over the face), reported apart.
Frames within EDGE_MARGIN_S of a labelled range are left out of both sides (the hand arriving).
Every other frame is "no hand": talking, blinking, turning, the light of a streamer's screen.

Simulated challenges: a prompt every 0.5 s whose first 0.3 s (the reference, as the compliance
tracker takes it) hold the face with no hand; every frame of the following 5 s is compared with
that reference. So a frame counts once per window it falls in.

The rule for choosing, written before measuring: among the candidates, the one that finds the
most hand-over-face frames at the value only 2 % of no-hand frames reach (ties: the higher AUC);
its threshold is that 2 % point, rounded to two decimals. Then, per window, compliance: covered
for 2 frames in a row, then uncovered for 2 (UNCOVER_RULES: back below the threshold; back below
the threshold or half the peak; or no uncovering asked): the share of windows holding a whole
hand event that are met, and of no-hand windows met by mistake. The uncovering rule is chosen,
at the threshold above, as the one meeting the most hand windows of the real side among those
meeting at most 5 % of no-hand windows (ties: fewer no-hand windows met). That second rule was
written after the first run, which had only the first uncovering rule and met 1 of 8 real-side
hand windows: the light on that streamer's face drifts, so her face did not come back below the
threshold after her hand left.

What it cannot show: one person (two hand events, plus the same two on the swap side) is all the
shared data holds of a hand over a face; nobody there passes a whole hand across the face, the
gesture the challenge asks for.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data"
RESULTS = REPO / "benchmarks" / "results"

from machine import write_results  # noqa: E402

from swapwatch.evaluation.metrics import roc_auc  # noqa: E402
from swapwatch.faces.detection import FaceDetector  # noqa: E402
from swapwatch.faces.geometry import aligned_square, box_iou, warp  # noqa: E402
from swapwatch.faces.landmarks import LandmarkModel  # noqa: E402
from swapwatch.faces.tracking import FaceTracker  # noqa: E402
from swapwatch.kyc.compliance import BASELINE_S, HOLD_OBSERVATIONS  # noqa: E402
from swapwatch.kyc.occlusion import (  # noqa: E402
    COVER_CHANGE,
    colour_change,
    face_colours,
    reference_colours,
)

RATE = 15.0
CROP_PX = 224
WINDOW_S = 5.0
PROMPT_EVERY_S = 0.5
EDGE_MARGIN_S = 0.4
NO_HAND_PASS = 0.02  # the share of no-hand frames allowed past a candidate's threshold
STALLONE_0 = "dfl/Sylvester_Stallone/Sylvester_Stallone_0.mp4"
# (recording, half) -> seconds, from the contact sheets.
HAND_OVER_FACE = {
    (STALLONE_0, "left"): [(2.2, 3.4), (7.2, 9.4)],
    (STALLONE_0, "right"): [(2.2, 3.4), (7.2, 9.4)],
}
HAND_AT_EDGE = {
    ("dfl/Tina_Shift/Tina_Shift_0.mp4", "left"): [(0.0, 2.6)],
    ("dfl/Ava_de_Addario/Ava_de_Addario_1.mp4", "left"): [(3.2, 9.9)],
    ("dfl/Ava_de_Addario/Ava_de_Addario_2.mp4", "left"): [(8.0, 9.0)],
}
TALKING_HEADS = ("d3", "d6", "d9", "d12", "d18")

Frame = dict[str, Any]


def recordings() -> list[tuple[str, str]]:
    items = [(str(p.relative_to(DATA)), "left") for p in sorted(DATA.glob("dfl/*/*.mp4"))]
    items.append((STALLONE_0, "right"))
    items += [(f"real/liveportrait/{name}.mp4", "whole") for name in TALKING_HEADS]
    return items


def label(key: tuple[str, str], t: float) -> str:
    for start, end in HAND_OVER_FACE.get(key, []):
        if start <= t <= end:
            return "over"
        if start - EDGE_MARGIN_S <= t <= end + EDGE_MARGIN_S:
            return "arriving"
    for start, end in HAND_AT_EDGE.get(key, []):
        if start - EDGE_MARGIN_S <= t <= end + EDGE_MARGIN_S:
            return "edge"
    return "none"


def follow(path: Path, half: str) -> list[Frame]:
    """The main track's faces at RATE, as the live pipeline follows them."""
    import av

    detector = FaceDetector(quiet=True)
    probe = FaceDetector(min_confidence=0.05, quiet=True)
    tracker = FaceTracker(detector, LandmarkModel())
    frames: list[Frame] = []
    try:
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            stride = max(1, round(float(stream.average_rate or 25) / RATE))
            for index, frame in enumerate(container.decode(stream)):
                if index % stride:
                    continue
                image: np.ndarray = frame.to_ndarray(format="rgb24")
                if half != "whole":
                    middle = image.shape[1] // 2
                    image = image[:, :middle] if half == "left" else image[:, middle:]
                image = np.ascontiguousarray(image)
                t = float(frame.time or 0.0)
                faces = tracker.update(image)
                if not faces:
                    frames.append({"t": t, "track": None})
                    continue
                face = max(faces, key=lambda f: f.age)
                found = probe.detect(image)
                confidence = 0.0
                if len(found):
                    overlap = box_iou(found.boxes, face.box.reshape(1, 4))[:, 0]
                    if (overlap >= 0.3).any():
                        confidence = float(found.scores[overlap >= 0.3].max())
                crop = warp(image, aligned_square(face.points), CROP_PX)
                frames.append(
                    {
                        "t": t,
                        "track": face.track_id,
                        "colours": face_colours(crop),
                        "grey": _grey_cells(crop),
                        "presence": face.presence,
                        "detector": confidence,
                    }
                )
    finally:
        detector.close()
        probe.close()
    return frames


def _grey_cells(crop: np.ndarray) -> np.ndarray:
    """Relative brightness of the same cells as `face_colours` (for the brightness candidates)."""
    import cv2

    from swapwatch.kyc.occlusion import CELLS, INNER_SHARE

    side = crop.shape[0]
    start = round(side * (1 - INNER_SHARE) / 2)
    inner = crop[start : side - start, start : side - start].astype(np.float32)
    cells = cv2.resize(inner, (CELLS, CELLS), interpolation=cv2.INTER_AREA)
    grey = cells @ np.array([0.299, 0.587, 0.114], np.float32)
    return np.asarray(grey / max(float(grey.mean()), 1.0), np.float32)


def _decorrelation(reference: np.ndarray, grey: np.ndarray) -> float:
    a, b = reference - reference.mean(), grey - grey.mean()
    return float(1 - (a * b).sum() / np.sqrt((a * a).sum() * (b * b).sum() + 1e-9))


def _changed_cells(reference: np.ndarray, grey: np.ndarray) -> float:
    """Share of 6x6 blocks whose relative brightness moved by more than 0.12."""
    blocks = grey.shape[0] // 6

    def pooled(a: np.ndarray) -> np.ndarray:
        return np.asarray(a.reshape(6, blocks, 6, blocks).mean(axis=(1, 3)))

    return float((np.abs(pooled(grey) - pooled(reference)) > 0.12).mean())


# Each candidate: (reference frames, this frame) -> a value that grows with covering.
CANDIDATES: dict[str, Callable[[list[Frame], Frame], float]] = {
    "colour_change (chosen rule's winner)": lambda ref, f: colour_change(
        reference_colours([r["colours"] for r in ref]), f["colours"]
    ),
    "brightness_change": lambda ref, f: float(
        np.abs(f["grey"] - np.median([r["grey"] for r in ref], axis=0)).mean()
    ),
    "brightness_blocks_changed": lambda ref, f: _changed_cells(
        np.median([r["grey"] for r in ref], axis=0), f["grey"]
    ),
    "brightness_decorrelation": lambda ref, f: _decorrelation(
        np.median([r["grey"] for r in ref], axis=0), f["grey"]
    ),
    "face_detector_drop": lambda ref, f: 1.0 - f["detector"],
    "landmark_presence_drop": lambda ref, f: 1.0 - f["presence"],
}
CHOSEN = "colour_change (chosen rule's winner)"


def windows(key: tuple[str, str], frames: list[Frame]) -> list[list[Frame]]:
    """The frames of each simulated challenge, with its reference frames first (`ref` key)."""
    out = []
    end = frames[-1]["t"] if frames else 0.0
    prompt = 0.0
    while prompt + 1.0 <= end:
        reference = [f for f in frames if prompt <= f["t"] < prompt + BASELINE_S]
        if reference and all(
            f["track"] is not None and label(key, f["t"]) == "none" for f in reference
        ):
            inside = [
                {**f, "label": label(key, f["t"]), "ref": reference}
                for f in frames
                if prompt + BASELINE_S <= f["t"] <= prompt + WINDOW_S
            ]
            out.append(inside)
        prompt += PROMPT_EVERY_S
    return out


# How a window's values become compliance: covered for HOLD_OBSERVATIONS frames, then (the
# second and third differ here) uncovered as long.
UNCOVER_RULES = ("below the threshold", "below the threshold or half the peak", "covered only")


def complied(values: list[float | None], threshold: float, uncover: str) -> bool:
    """A compliance rule on a window's values (None: face not followed)."""
    held, covered_for_long, side, peak = 0, False, False, 0.0
    for value in values:
        if value is None:
            continue
        if covered_for_long:
            peak = max(peak, value)
        back_below = threshold
        if uncover == UNCOVER_RULES[1] and covered_for_long:
            back_below = max(threshold, peak / 2)
        covered = value >= threshold if not covered_for_long else value >= back_below
        held = held + 1 if covered == side else 1
        side = covered
        if covered and held >= HOLD_OBSERVATIONS:
            if uncover == UNCOVER_RULES[2]:
                return True
            covered_for_long = True
            peak = max(peak, value)
        if covered_for_long and not covered and held >= HOLD_OBSERVATIONS:
            return True
    return False


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=RESULTS / "hand_occlusion.json")
    args = parser.parse_args()
    if not DATA.is_dir():
        print(f"no data at {DATA}", file=sys.stderr)
        return 1
    values: dict[str, dict[str, list[float]]] = {n: {} for n in CANDIDATES}
    chosen_windows: list[tuple[str, list[str], list[float | None]]] = []
    frames_by_label: dict[str, int] = {}
    swap_side = "right"
    for rel, half in recordings():
        key = (rel, half)
        frames = follow(DATA / rel, half)
        print(f"{rel} ({half}): {len(frames)} frames", flush=True)
        for f in frames:
            lab = label(key, f["t"])
            frames_by_label[lab] = frames_by_label.get(lab, 0) + 1
        for window in windows(key, frames):
            labels = [f["label"] for f in window]
            chosen: list[float | None] = []
            for f in window:
                if f["track"] is None:
                    chosen.append(None)
                    continue
                group = f["label"] + (" (swap side)" if half == swap_side else "")
                for name, measure in CANDIDATES.items():
                    value = measure(f["ref"], f)
                    values[name].setdefault(group, []).append(value)
                    if name == CHOSEN:
                        chosen.append(value)
            chosen_windows.append((f"{rel}:{half}", labels, chosen))

    candidates: list[dict[str, Any]] = []
    for name, groups in values.items():
        none = np.asarray(groups.get("none", []))
        over = np.asarray(groups.get("over", []))
        threshold = float(np.quantile(none, 1 - NO_HAND_PASS))
        auc = roc_auc(np.r_[none, over], np.r_[np.zeros(len(none)), np.ones(len(over))] > 0)

        def past(
            group: str, groups: dict[str, list[float]] = groups, threshold: float = threshold
        ) -> float | None:
            v = np.asarray(groups.get(group, []))
            return round(float((v > threshold).mean()), 3) if len(v) else None

        candidates.append(
            {
                "measure": name,
                "threshold_at_2pct_no_hand": round(threshold, 4),
                "hand_over_face_found": past("over"),
                "auc_hand_against_no_hand": None if auc is None else round(auc, 4),
                "hand_at_edge_past": past("edge"),
                "swap_side_hand_found": past("over (swap side)"),
                "median_no_hand": round(float(np.median(none)), 4),
                "median_hand": round(float(np.median(over)), 4),
                "hand_5th_to_95th": [round(float(q), 4) for q in np.quantile(over, [0.05, 0.95])],
                "pairs_no_hand": len(none),
                "pairs_hand": len(over),
            }
        )
    ranked = sorted(
        candidates, key=lambda c: (-c["hand_over_face_found"], -c["auc_hand_against_no_hand"])
    )
    print(f"\n{'measure':40s} {'2% pt':>7s} {'found':>6s} {'AUC':>6s} {'edge':>6s} {'swap':>6s}")
    for c in ranked:
        print(
            f"{c['measure']:40s} {c['threshold_at_2pct_no_hand']:7.3f} "
            f"{c['hand_over_face_found']:6.3f} {c['auc_hand_against_no_hand']:6.3f} "
            f"{c['hand_at_edge_past']:6.3f} {c['swap_side_hand_found']:6.3f}"
        )

    compliance = []
    hand_windows = [
        (name, v)
        for name, labels, v in chosen_windows
        if "over" in labels and labels[-1] == "none" and labels[0] in ("none", "arriving")
    ]
    no_hand_named = [(n, v) for n, labels, v in chosen_windows if set(labels) == {"none"}]
    no_hand_windows = [v for _, v in no_hand_named]
    used = UNCOVER_RULES[1]
    met_by_recording: dict[str, str] = {}
    for name in sorted({n for n, _ in no_hand_named}):
        mine = [complied(v, COVER_CHANGE, used) for n, v in no_hand_named if n == name]
        if any(mine):
            met_by_recording[name] = f"{sum(mine)}/{len(mine)}"
    print(f"no-hand windows met ({used}, {COVER_CHANGE}): {met_by_recording}")
    edge_windows = [v for _, labels, v in chosen_windows if "edge" in labels]
    for uncover in UNCOVER_RULES:
        for threshold in sorted({COVER_CHANGE, 0.05, 0.07, 0.08}):
            met = [(n, complied(v, threshold, uncover)) for n, v in hand_windows]
            real = [m for n, m in met if n.endswith(":left")]
            row = {
                "uncovered": uncover,
                "threshold": threshold,
                "hand_windows_met": f"{sum(m for _, m in met)}/{len(met)}",
                "hand_windows_met_real_side": f"{sum(real)}/{len(real)}",
                "no_hand_windows_met": (
                    f"{sum(complied(v, threshold, uncover) for v in no_hand_windows)}/"
                    f"{len(no_hand_windows)}"
                ),
                "hand_at_edge_windows_met": (
                    f"{sum(complied(v, threshold, uncover) for v in edge_windows)}/"
                    f"{len(edge_windows)}"
                ),
            }
            compliance.append(row)
            print(
                f"{uncover:38s} {threshold:.2f}: hand windows met {row['hand_windows_met']} "
                f"(real side {row['hand_windows_met_real_side']}), no-hand windows met "
                f"{row['no_hand_windows_met']}, hand-at-edge windows met "
                f"{row['hand_at_edge_windows_met']}"
            )
    old_rule = [
        any(value is None for value in v)  # lost and back is the old rule's only way in
        for _, labels, v in chosen_windows
        if "over" in labels and labels[-1] == "none" and labels[0] in ("none", "arriving")
    ]
    lost = f"{sum(old_rule)}/{len(old_rule)}"
    print(f"old rule (face lost and back): hand windows with a loss {lost}")
    write_results(
        args.out,
        "hand_occlusion",
        {
            "rate_hz": RATE,
            "recordings": len(recordings()),
            "frames_by_label": frames_by_label,
            "labels": {
                "hand_over_face": {f"{r}:{h}": v for (r, h), v in HAND_OVER_FACE.items()},
                "hand_at_edge": {f"{r}:{h}": v for (r, h), v in HAND_AT_EDGE.items()},
            },
            "windows": len(chosen_windows),
            "rule": (
                "most hand-over-face frames found at the value only 2 % of no-hand frames "
                "reach (ties: higher AUC); threshold = that 2 % point"
            ),
            "candidates": ranked,
            "chosen": ranked[0]["measure"],
            "cover_change_in_code": COVER_CHANGE,
            "compliance_by_threshold": compliance,
            "old_rule_hand_windows_with_a_loss": lost,
            "uncover_rule_used": used,
            "no_hand_windows_met_by_recording": met_by_recording,
        },
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
