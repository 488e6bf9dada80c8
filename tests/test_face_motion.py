"""The face-motion anomaly cue: features of a track's facial motion and their distance from real
motion."""

from __future__ import annotations

import math

import numpy as np
import pytest
from media import Placement, face_landmarks, render_frame

from swapwatch.faces.motion import FEATURES, RATE_HZ, MotionModel, track_features

LIPS_LOWER = (14, 17, 84, 181, 91, 314, 405, 321, 87, 178, 317, 402)


@pytest.fixture(scope="module")
def mesh() -> np.ndarray:
    """The 468 landmarks of the test astronaut, found by the live pipeline's models."""
    frame = render_frame(640, 480, [Placement(0.5, 0.5, 300, sway=0.0)], 0.0)
    return face_landmarks(frame).astype(np.float64)


def talking(
    mesh: np.ndarray,
    times: np.ndarray,
    speech_hz: float = 3.0,
    nod_hz: float = 0.4,
    jitter: float = 0.0,
    seed: int = 0,
) -> np.ndarray:
    """A track of `mesh` over `times`: the lower lip opening and closing at `speech_hz`, the
    head nodding (as a small vertical drift) at `nod_hz`, and landmark noise of `jitter` px."""
    rng = np.random.default_rng(seed)
    eyes = np.linalg.norm(mesh[263, :2] - mesh[33, :2])
    frames = []
    for t in times:
        points = mesh.copy()
        opening = 0.08 * eyes * (1 + math.sin(2 * math.pi * speech_hz * t)) / 2
        points[list(LIPS_LOWER), 1] += opening
        points[:, 1] += 0.05 * eyes * math.sin(2 * math.pi * nod_hz * t)
        points[:, :2] += rng.normal(0, jitter, (len(points), 2)) if jitter else 0.0
        frames.append(points)
    return np.stack(frames)


def even(seconds: float, rate: float = RATE_HZ) -> np.ndarray:
    return np.arange(0, seconds, 1 / rate)


def test_where_and_how_large_the_face_is_does_not_change_its_motion(mesh: np.ndarray) -> None:
    times = even(8)
    track = talking(mesh, times, jitter=0.3)
    features = track_features(times, track)
    assert features.shape == (5, len(FEATURES))  # windows of 4 s every 1 s
    angle = math.radians(12)
    rotation = np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
    moved = track.copy()
    moved[:, :, :2] = 0.6 * track[:, :, :2] @ rotation.T + np.array([140.0, -35.0])
    moved[:, :, 2] *= 0.6
    np.testing.assert_allclose(track_features(times, moved), features, atol=1e-6)


def test_uneven_frame_times_do_not_read_as_jerk(mesh: np.ndarray) -> None:
    """25 fps video analysed at every second frame (12.5 Hz) is resampled onto the even 15 Hz
    grid before its differences are taken; read as it comes, its jerk reads 1.7 times higher."""
    steady = even(8)
    uneven = np.arange(0, 8.05, 0.08)  # 25 fps, every second frame: 12.5 Hz
    a = track_features(steady, talking(mesh, steady))
    b = track_features(uneven, talking(mesh, uneven))
    assert a.shape == b.shape
    jerk = [FEATURES.index(f"{s}_jerk") for s in ("mouth_opening", "pitch")]
    np.testing.assert_allclose(b[:, jerk], a[:, jerk], atol=0.2)  # logs: within ~20 %


def test_a_track_shorter_than_a_window_gets_no_score(mesh: np.ndarray) -> None:
    times = even(3.5)
    features = track_features(times, talking(mesh, times))
    assert features.shape == (0, len(FEATURES))
    model = MotionModel.fit(
        [track_features(even(6), talking(mesh, even(6), seed=s, jitter=0.2)) for s in (1, 2)]
    )
    assert model.score(features) is None


def test_motion_unlike_the_real_recordings_scores_farther_in_either_direction(
    mesh: np.ndarray,
) -> None:
    times = even(10)
    reals = [
        track_features(times, talking(mesh, times, speech_hz=2.5 + 0.2 * s, jitter=0.4, seed=s))
        for s in range(8)
    ]
    model = MotionModel.fit(reals)
    assert 0 <= model.shrinkage <= 1 and model.recordings == 8
    another_real = model.score(
        track_features(times, talking(mesh, times, speech_hz=2.9, jitter=0.4, seed=99))
    )
    jerky = model.score(track_features(times, talking(mesh, times, jitter=1.6, seed=5)))
    too_smooth = model.score(track_features(times, talking(mesh, times, jitter=0.0)))
    assert another_real is not None and jerky is not None and too_smooth is not None
    assert jerky > 2 * another_real
    assert too_smooth > 2 * another_real


def test_each_real_recording_weighs_the_same_however_long(mesh: np.ndarray) -> None:
    long_one = track_features(even(40), talking(mesh, even(40), jitter=0.2, seed=1))
    short_ones = [
        track_features(even(4), talking(mesh, even(4), jitter=2.0, seed=s)) for s in range(2, 5)
    ]
    assert len(long_one) == 37 and all(len(s) == 1 for s in short_ones)
    model = MotionModel.fit([long_one, *short_ones])
    expected = 0.25 * long_one.mean(axis=0) + 0.75 * np.mean(np.concatenate(short_ones), axis=0)
    np.testing.assert_allclose(model.mean, expected)
    with pytest.raises(ValueError, match="at least two recordings"):
        MotionModel.fit([long_one, np.zeros((0, len(FEATURES)))])
