"""Each KYC injection signal's value on the inputs its tests make, and on real recordings.

    nice -n 5 .venv/bin/python benchmarks/kyc_signals.py [--out benchmarks/results/kyc_signals.json]

Test-made inputs (tests/kyc_media.py, the same as tests/test_kyc_*.py): a timer-paced and a
jittered frame clock; a moving noisy scene through H.264 with and without every fifth frame
repeated, and a still one; a rendered picture, the same with camera-like noise, and that after
an H.264 re-encode at CRF 23 and 35; a filmed session, its replay (re-encoded smaller, 4/5 of
the frames) and another session. Real recordings (../shared/data, when present): the
validation part's live-swap pairs, real streamer and live swap of the same moments side by
side, through the plain-stream signals (StreamSignals) with the tracked face's box.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
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
    right_to_left,
    scene,
    sensor_stamps,
    session_frames,
    timer_stamps,
    with_camera_noise,
)
from machine import write_results  # noqa: E402

from swapwatch.kyc.duplicates import DuplicateFrames  # noqa: E402
from swapwatch.kyc.fingerprint import SessionFingerprint, align  # noqa: E402
from swapwatch.kyc.frame_clock import FrameClock  # noqa: E402
from swapwatch.kyc.readings import SignalReading  # noqa: E402
from swapwatch.kyc.sensor_noise import NoiseMeter  # noqa: E402
from swapwatch.kyc.stream_signals import StreamSignals  # noqa: E402

FACE = np.array([250, 100, 390, 260])


def brief(reading: SignalReading) -> dict[str, Any]:
    return {"value": reading.value, "contribution": reading.contribution.value}


def clock(stamps: list[int]) -> dict[str, Any]:
    meter = FrameClock()
    for stamp in stamps:
        meter.update(stamp)
    return brief(meter.reading())


def duplicates(path: Path) -> dict[str, Any]:
    meter = DuplicateFrames()
    for _, image in decoded(path):
        meter.update(image)
    return brief(meter.reading())


def noise(frames: list[np.ndarray]) -> dict[str, Any]:
    meter = NoiseMeter(every=1)
    for image in frames:
        meter.update(image, FACE)
    return {
        "picture": brief(meter.reading()),
        "face_to_background": brief(meter.face_reading()),
    }


def fingerprint(path: Path) -> np.ndarray:
    session = SessionFingerprint()
    for time_s, image in decoded(path):
        session.update(time_s, image)
    return session.hashes


def test_made(folder: Path) -> dict[str, Any]:
    out: dict[str, Any] = {
        "frame_clock_ms": {
            "timer_paced_30fps": clock(timer_stamps(90)),
            "sensor_jitter_1ms": clock(sensor_stamps(90, jitter_ms=1.0)),
            "sensor_jitter_0.3ms": clock(sensor_stamps(90, jitter_ms=0.3, seed=1)),
        }
    }
    moving = list(session_frames(left_to_right, 2.0, 30))
    still = scene(640, 360, 0.5, 0.5, 200)
    out["duplicated_frames"] = {
        "moving_h264": duplicates(encode(folder / "plain.mp4", iter(moving), 30, crf=18)),
        "moving_h264_every_5th_repeated": duplicates(
            encode(folder / "repeat.mp4", iter(moving), 30, crf=18, repeat_every=5)
        ),
        "still_noisy_h264_crf30": duplicates(
            encode(
                folder / "still.mp4",
                ((i / 30, with_camera_noise(still, i)) for i in range(60)),
                30,
                crf=30,
            )
        ),
    }
    filmed = [with_camera_noise(still, seed) for seed in range(10)]
    pasted = []
    for frame in filmed:
        frame = frame.copy()
        frame[100:260, 250:390] = still[100:260, 250:390]
        pasted.append(frame)
    sensor: dict[str, Any] = {
        "rendered": noise([still] * 10),
        "camera_noise": noise(filmed),
        "camera_noise_face_pasted_without_noise": noise(pasted),
    }
    for crf in (23, 35):
        for name, frames in (("rendered", [still] * 10), ("camera_noise", filmed)):
            path = encode(
                folder / f"{name}{crf}.mp4", ((i / 30, f) for i, f in enumerate(frames)), 30, crf
            )
            sensor[f"{name}_h264_crf{crf}"] = noise([f for _, f in decoded(path)])
    out["sensor_noise_sigma"] = sensor
    size = (320, 180)
    session = encode(folder / "filmed.mp4", session_frames(left_to_right, 8.0, 10, size=size), 10)
    kept = ((t, f) for t, f in decoded(session) if round(t * 10) % 5 != 4)
    replay = encode(folder / "replay.mp4", kept, 8, crf=32, size=(240, 136))
    other = encode(
        folder / "other.mp4", session_frames(right_to_left, 8.0, 10, size=size, seed=99), 10
    )
    original = fingerprint(session)
    out["replayed_session_share"] = {
        name: align(fingerprint(path), original).share
        for name, path in (("replay", replay), ("another_session", other))
    }
    return out


def recordings() -> list[dict[str, Any]]:
    """The plain-stream signals on each validation live-swap pair, real half and swap half."""
    import av

    from swapwatch.datasets.lists import read_list
    from swapwatch.datasets.splits import Part, split
    from swapwatch.faces.detection import FaceDetector
    from swapwatch.faces.landmarks import LandmarkModel
    from swapwatch.faces.tracking import FaceTracker
    from swapwatch.stream.source import crop_fraction, upright_rgb

    items = split(read_list(DATA / "manifest.csv"))[Part.VALIDATION]
    detector = FaceDetector(quiet=True)
    landmarks = LandmarkModel()
    rows = []
    try:
        for item in items:
            if item.family != "live-swap-deepfacelive":
                continue
            tracker = FaceTracker(detector, landmarks)
            signals = StreamSignals(noise_every=3)
            with av.open(str(item.path)) as container:
                for frame in container.decode(container.streams.video[0]):
                    image = upright_rgb(frame)
                    image = np.ascontiguousarray(
                        crop_fraction(image, item.crop) if item.crop else image
                    )
                    faces = tracker.update(image)
                    box = max(faces, key=lambda f: f.age).box if faces else None
                    signals.update(float(frame.time or 0.0), image, box)
            readings = {r.name: brief(r) for r in signals.readings()}
            rows.append(
                {
                    "recording": item.name,
                    "swap": item.is_fake,
                    "duplicated_frames": readings["duplicated_frames"],
                    "sensor_noise": readings["sensor_noise"],
                    "face_noise_ratio": readings["face_noise_ratio"],
                    "noise_face": signals.noise.sigma("face"),
                    "noise_background": signals.noise.sigma("background"),
                }
            )
            print(rows[-1], file=sys.stderr)
    finally:
        detector.close()
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--out", type=Path, default=REPO / "benchmarks" / "results" / "kyc_signals.json"
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        made = test_made(Path(folder))
    print(made)
    real = recordings() if (DATA / "manifest.csv").is_file() else []
    write_results(args.out, "kyc_signals", {"test_made": made, "live_swap_pairs": real})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
