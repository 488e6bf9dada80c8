"""The pulse cue (rPPG), measured with each video family left out (issue 18's cue that does not
depend on a blend; the protocol and the keep rule are in benchmarks/README, written before it ran).

    .venv/bin/python benchmarks/pulse_cue.py [--out benchmarks/results/pulse_cue.json]

For each fake kind of recordings (talking heads, live swaps): the recordings of that kind's
leave-one-kind-out score set, per delivery condition (as the yardstick delivers them: plain,
poor call; first 20 s), each analysed by the product's face pipeline at 15 Hz; the longest
track's skin colour gives a beat (`swapwatch.faces.pulse`) and the cue's score is minus its SNR.
Nothing is fitted. The lockbox is never read. Tracks are cached per delivered file in
~/.cache/swapwatch/pulse.
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

from face_motion import auc_of, bootstrap_interval  # noqa: E402
from machine import write_results  # noqa: E402

from swapwatch.datasets.lists import MediaItem, read_list  # noqa: E402
from swapwatch.datasets.splits import FakeKind, leave_one_kind_out  # noqa: E402
from swapwatch.errors import SourceError  # noqa: E402
from swapwatch.evaluation.conditions import CONDITIONS, deliver  # noqa: E402
from swapwatch.faces.analyzer import FaceAnalyzer  # noqa: E402
from swapwatch.faces.geometry import LEFT_EYE_OUTER, RIGHT_EYE_OUTER  # noqa: E402
from swapwatch.faces.motion import FEATURES, track_features  # noqa: E402
from swapwatch.faces.pulse import skin_colour, track_beat  # noqa: E402
from swapwatch.native_logs import native_stderr_silenced  # noqa: E402
from swapwatch.stream.source import upright_rgb  # noqa: E402

MAX_SECONDS = 20.0
RATE = 15.0
KINDS = (FakeKind.TALKING_HEAD, FakeKind.LIVE_SWAP)
CACHE = Path.home() / ".cache" / "swapwatch"
RESTING_PULSE_HZ = (0.8, 2.0)  # the method check: 48-120 beats a minute
CONFOUNDS = ("fps", "seconds", "face_px", "head_speed", "skin_level", "skin_movement")


def longest_track(path: Path, faces: FaceAnalyzer) -> dict[str, np.ndarray | float]:
    """Analysed times, skin colours, skin centres and landmarks of the longest face track of a
    delivered recording, with its frame rate; frames taken at the analysis rate as `scan` takes
    them."""
    faces.reset()
    tracks: dict[int, list[tuple[float, np.ndarray, np.ndarray, np.ndarray]]] = {}
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        stream.thread_type = "SLICE"
        fps = float(stream.average_rate or 30)
        stride = max(1, round(fps / RATE))
        for index, frame in enumerate(container.decode(stream)):
            if index % stride:
                continue
            image = upright_rgb(frame)
            batch = faces.analyse(image)
            t = float(frame.time if frame.time is not None else index / fps)
            for track_id, points in zip(batch.track_ids, batch.points, strict=True):
                read = skin_colour(image, points)
                if read is not None:
                    tracks.setdefault(int(track_id), []).append((t, *read, points))
    longest = max(tracks.values(), key=len, default=[])
    return {
        "fps": fps,
        "times": np.asarray([row[0] for row in longest], np.float64),
        "colours": np.asarray([row[1] for row in longest], np.float64).reshape(-1, 3),
        "centres": np.asarray([row[2] for row in longest], np.float64).reshape(-1, 2),
        "points": np.asarray([row[3] for row in longest], np.float32).reshape(-1, 468, 3),
    }


def described(copy: MediaItem, faces: FaceAnalyzer, condition: str) -> dict[str, Any]:
    """The beat and the confound controls of one delivered recording (its track cached)."""
    cached = CACHE / "pulse" / condition / f"{copy.path.stem}.npz"
    if cached.is_file():
        with np.load(cached) as data:
            track = {k: data[k] for k in data.files}
    else:
        track = longest_track(copy.path, faces)
        cached.parent.mkdir(parents=True, exist_ok=True)
        np.savez(cached, **track)  # type: ignore[arg-type]
    times, colours = np.asarray(track["times"]), np.asarray(track["colours"])
    centres, points = np.asarray(track["centres"]), np.asarray(track["points"])
    found = track_beat(times, colours)
    across = points[:, LEFT_EYE_OUTER, :2] - points[:, RIGHT_EYE_OUTER, :2]
    eyes = np.linalg.norm(across, axis=1) if len(points) else np.zeros(0)
    features = track_features(times, points)
    speeds = np.exp(features[:, FEATURES.index("yaw_speed")])
    shifts = np.linalg.norm(np.diff(centres, axis=0), axis=1) / np.maximum(eyes[1:], 1e-6)
    return {
        "snr_db": None if found is None else round(found.snr_db, 3),
        "hz": None if found is None else round(found.hz, 3),
        "fps": float(track["fps"]),
        "seconds": round(float(times[-1] - times[0]), 2) if len(times) > 1 else 0.0,
        "face_px": round(float(np.median(eyes)), 1) if len(eyes) else 0.0,
        "head_speed": round(float(np.median(speeds)), 3) if len(speeds) else 0.0,
        "skin_level": round(float(colours[:, 1].mean()), 2) if len(colours) else 0.0,
        "skin_movement": round(float(np.median(shifts)), 4) if len(shifts) else 0.0,
    }


def measure(kind: FakeKind, items: list[MediaItem], condition: str) -> dict[str, Any]:
    score_items = [
        i
        for i in leave_one_kind_out(items, kind).score
        if not i.is_image and (not i.is_fake or i.family.startswith(kind.value))
    ]
    folder = CACHE / "delivered" / condition
    rows = []
    with native_stderr_silenced(True):
        faces = FaceAnalyzer(quiet=True)
    try:
        for item in score_items:
            try:
                copy = deliver(item, CONDITIONS[condition], folder, MAX_SECONDS)
            except SourceError as exc:
                print(f"  skipped {item.name}: {exc}", file=sys.stderr)
                continue
            found = described(copy, faces, condition)
            snr = found["snr_db"]
            rows.append(
                {
                    "name": item.name,
                    "family": item.family,
                    "group": item.group,
                    "fake": item.is_fake,
                    "score": None if snr is None else -snr,
                    **found,
                }
            )
            print(
                f"  [{kind.value} {condition}] {item.name} ({'fake' if item.is_fake else 'real'}):"
                f" SNR {snr} dB at {found['hz']} Hz",
                file=sys.stderr,
                flush=True,
            )
    finally:
        faces.close()
    return summary(rows)


def summary(rows: list[dict[str, Any]]) -> dict[str, Any]:
    scored = [r for r in rows if r["score"] is not None]
    labels = [bool(r["fake"]) for r in scored]
    scores = np.asarray([r["score"] for r in scored], np.float64)
    fakes = [r for r in scored if r["fake"]]
    reals = [r for r in scored if not r["fake"]]
    families = sorted({r["family"] for r in fakes})
    resting = [r for r in reals if RESTING_PULSE_HZ[0] <= r["hz"] <= RESTING_PULSE_HZ[1]]
    return {
        "scored": {"reals": len(reals), "fakes": len(fakes)},
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
        "method_check": {
            "reals_median_snr_db": round(float(np.median([r["snr_db"] for r in reals])), 2)
            if reals
            else None,
            "fakes_median_snr_db": round(float(np.median([r["snr_db"] for r in fakes])), 2)
            if fakes
            else None,
            "reals_with_a_resting_pulse": f"{len(resting)} of {len(reals)}",
        },
        "confound_auc": {name: auc_of([r[name] for r in scored], labels) for name in CONFOUNDS},
        "items": rows,
    }


def kept(by_condition: dict[str, Any]) -> bool:
    """The README's rule for a talking-head cue (this one's, and feature_distance.py's): AUC >=
    0.75 in both conditions, the interval's lower end above 0.5, and no confound control
    reaching the cue's AUC."""
    for found in by_condition.values():
        auc, (low, _) = found["auc"], found["auc_interval_95"]
        if auc is None or low is None or auc < 0.75 or low <= 0.5:
            return False
        if any(c is not None and c >= auc for c in found["confound_auc"].values()):
            return False
    return True


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--list", type=Path, default=DATA / "manifest.csv")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks/results/pulse_cue.json")
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
                f"({found['scored']}); method check {found['method_check']}; "
                f"confounds {found['confound_auc']}",
                flush=True,
            )
    verdict = kept(results[FakeKind.TALKING_HEAD.value])
    print(f"kept by the README's rule: {verdict}")
    write_results(
        args.out,
        "pulse_cue",
        {"max_seconds": MAX_SECONDS, "rate": RATE, "kept": verdict, **results},
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
