"""`duplicated_frames` and `face_noise_ratio` on real recordings where people barely move, on the
live-swap recordings, on animated (rendered) talking heads, and on test-made still scenes.

    nice -n 5 .venv/bin/python benchmarks/kyc_still_scenes.py [--out FILE.json] [--series FILE.npz]

Every video of ../shared/data (manifest.csv) of the real-video families, both halves of the
live-swap pairs and the talking-head animations is decoded whole and fed, as a session feeds
them, every frame (a plain stream) and at 10 Hz (a session's analysed frames from a 25-30 fps
camera). Each reports the share of frames `swapwatch.kyc.duplicates.DuplicateFrames` counts
as repeats, and the face-to-background noise ratio (`NoiseMeter` with the tracked face's box).
Test-made: a head that sways by a pixel or two or holds still, with camera-like noise, through
H.264 at CRF 23 and 30, with and without every fifth frame sent twice; a person who moves quickly,
pauses and sways (tests/kyc_media.py); a 10 fps source through a 30 fps virtual camera.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data"
sys.path.insert(0, str(REPO / "tests"))

from kyc_media import (  # noqa: E402
    decoded,
    encode,
    left_to_right,
    moves_and_pauses,
    scene,
    session_frames,
    with_camera_noise,
)
from machine import write_results  # noqa: E402

from swapwatch.kyc.duplicates import WEAK_FROM, DuplicateFrames, luma_thumbnail  # noqa: E402
from swapwatch.kyc.sensor_noise import NoiseMeter  # noqa: E402

FAMILIES = ("real-video", "live-swap-deepfacelive", "talking-head")
SESSION_HZ = 10.0


def duplicate_share(frames: list[np.ndarray]) -> float | None:
    meter = DuplicateFrames()
    for image in frames:
        meter.update(image)
    share = meter.share
    return None if share is None else round(share, 4)


def at_rate(times: list[float], hz: float) -> list[int]:
    """The indices a session's analysis keeps at `hz` (the first frame of each slot)."""
    kept, next_at = [], -1.0
    for i, t in enumerate(times):
        if t >= next_at:
            kept.append(i)
            next_at = t + 1.0 / hz - 1e-6
    return kept


def recordings(series: dict[str, np.ndarray] | None = None) -> list[dict[str, Any]]:
    """Each recording's readings; with `series`, each one's luma thumbnails (THUMB_SIZE) and
    media times are kept there too, to try other rules on (never written inside the repo)."""
    import av

    from swapwatch.datasets.lists import read_list
    from swapwatch.faces.detection import FaceDetector
    from swapwatch.faces.landmarks import LandmarkModel
    from swapwatch.faces.tracking import FaceTracker
    from swapwatch.stream.source import crop_fraction, upright_rgb

    items = [
        i
        for i in read_list(DATA / "manifest.csv")
        if not i.is_image and any(i.family.startswith(f) for f in FAMILIES)
    ]
    detector = FaceDetector(quiet=True)
    landmarks = LandmarkModel()
    rows = []
    try:
        for item in items:
            tracker = FaceTracker(detector, landmarks)
            noise = NoiseMeter(every=3)
            frames: list[np.ndarray] = []
            times: list[float] = []
            with av.open(str(item.path)) as container:
                for frame in container.decode(container.streams.video[0]):
                    image = upright_rgb(frame)
                    image = np.ascontiguousarray(
                        crop_fraction(image, item.crop) if item.crop else image
                    )
                    if len(frames) % 3 == 0:
                        faces = tracker.update(image)
                        box = max(faces, key=lambda f: f.age).box if faces else None
                        noise.update(image, box)
                    frames.append(image)
                    times.append(float(frame.time or 0.0))
            if series is not None:
                series[f"{item.name}|thumbs"] = np.stack([luma_thumbnail(f) for f in frames])
                series[f"{item.name}|times"] = np.array(times)
            face, background = noise.sigma("face"), noise.sigma("background")
            reading = noise.face_reading()
            rows.append(
                {
                    "recording": item.name,
                    "family": item.family,
                    "fake": item.is_fake,
                    "frames": len(frames),
                    "duplicated_every_frame": duplicate_share(frames),
                    "duplicated_at_10hz": duplicate_share(
                        [frames[i] for i in at_rate(times, SESSION_HZ)]
                    ),
                    "noise_face": None if face is None else round(face, 3),
                    "noise_background": None if background is None else round(background, 3),
                    "face_noise_ratio": reading.value,
                    "face_noise_contribution": reading.contribution.value,
                }
            )
            print(rows[-1], file=sys.stderr, flush=True)
    finally:
        detector.close()
    return rows


def test_made(folder: Path) -> dict[str, Any]:
    """A head holding still or swaying by a pixel or two, with camera-like noise, encoded."""
    out: dict[str, Any] = {}
    for name, sway_px in (("still", 0.0), ("sway_1px", 1.0), ("sway_3px", 3.0)):
        frames = []
        for i in range(90):
            dx = sway_px * np.sin(2 * np.pi * i / 45) / 640
            frames.append((i / 30, with_camera_noise(scene(640, 360, 0.5 + dx, 0.5, 200), i)))
        for crf in (23, 30):
            for repeat in (0, 5):
                name_crf = f"{name}_{crf}_{repeat}.mp4"
                path = encode(folder / name_crf, iter(frames), 30, crf, repeat_every=repeat)
                got = [f for _, f in decoded(path)]
                key = f"{name}_crf{crf}" + ("_every_5th_repeated" if repeat else "")
                out[key] = duplicate_share(got)
    moving = encode(folder / "pauses.mp4", session_frames(moves_and_pauses, 4.0, 30), 30, 23)
    got = [f for _, f in decoded(moving)]
    out["moves_and_pauses_crf23"] = duplicate_share(got)
    out["moves_and_pauses_crf23_at_10hz"] = duplicate_share(got[::3])
    filmed = [f for _, f in session_frames(left_to_right, 3.0, 10)]
    tripled = ((i / 30, image) for i, f in enumerate(filmed) for image in (f, f, f))
    path = encode(folder / "tripled.mp4", tripled, 30, 18)
    out["10fps_source_at_30fps_crf18"] = duplicate_share([f for _, f in decoded(path)])
    return out


def summary(rows: list[dict[str, Any]]) -> dict[str, Any]:
    by: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        kind = "swap" if row["fake"] else "real"
        by[f"{row['family']} {kind}"].append(row)
    out = {}
    for key, group in sorted(by.items()):
        ratios = [r["face_noise_ratio"] for r in group if r["face_noise_ratio"] is not None]
        out[key] = {
            "recordings": len(group),
            "duplicated_every_frame_max": max((r["duplicated_every_frame"] or 0.0) for r in group),
            "duplicated_at_10hz_max": max((r["duplicated_at_10hz"] or 0.0) for r in group),
            "flagged_every_frame": sum(
                (r["duplicated_every_frame"] or 0.0) >= WEAK_FROM for r in group
            ),
            "flagged_at_10hz": sum((r["duplicated_at_10hz"] or 0.0) >= WEAK_FROM for r in group),
            "face_noise_ratio_range": [min(ratios), max(ratios)] if ratios else None,
            "face_noise_weak": sum(r["face_noise_contribution"] == "weak" for r in group),
        }
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--out", type=Path, default=REPO / "benchmarks" / "results" / "kyc_still_scenes.json"
    )
    parser.add_argument(
        "--series", type=Path, help="keep each recording's luma thumbnails here (.npz)"
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        made = test_made(Path(folder))
    print(made, file=sys.stderr)
    series: dict[str, np.ndarray] | None = {} if args.series else None
    rows = recordings(series) if (DATA / "manifest.csv").is_file() else []
    if args.series and series:
        # numpy's stub reads any keyword as its allow_pickle flag
        np.savez_compressed(args.series, **series)  # type: ignore[arg-type]
    write_results(
        args.out,
        "kyc_still_scenes",
        {"test_made": made, "summary": summary(rows), "recordings": rows},
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
