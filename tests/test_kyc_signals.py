"""Injection signals on test-made inputs: what a camera delivers against what software does."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from kyc_media import (
    decoded,
    encode,
    left_to_right,
    moves_and_pauses,
    scene,
    sensor_stamps,
    session_frames,
    timer_stamps,
    with_camera_noise,
)

from swapwatch.kyc.camera_label import CameraReport, capabilities_reading, label_reading
from swapwatch.kyc.capture_format import CaptureFormat, FormatProbe, format_reading
from swapwatch.kyc.duplicates import DuplicateFrames
from swapwatch.kyc.frame_clock import FrameClock
from swapwatch.kyc.readings import Contribution, SignalReading
from swapwatch.kyc.sensor_noise import FACE_SMOOTHER_BELOW, NoiseMeter, noise_sigma
from swapwatch.kyc.stream_signals import StreamSignals

NONE, WEAK, STRONG = Contribution.NONE, Contribution.WEAK, Contribution.STRONG


@pytest.mark.parametrize(
    ("label", "allowed", "expected"),
    [
        ("OBS Virtual Camera", (), STRONG),
        ("OBS-Camera", (), STRONG),
        ("ManyCam Virtual Webcam", (), STRONG),
        ("Dummy video device (0x0000)", (), STRONG),
        ("XSplit VCam", (), STRONG),
        ("Snap Camera", (), STRONG),
        ("e2eSoft VCam", (), STRONG),
        ("fake_device_0", (), STRONG),
        ("Fake Video Capture", (), STRONG),
        ("fake_device_0", ("fake_device",), NONE),  # allowed by the operator
        # Chromium's fake device fed a file takes the file's path as its label
        ("/tmp/pytest-of-root/pytest-1/kyc-browser0/camera.y4m", (), STRONG),
        ("/home/me/clip.mjpeg", (), STRONG),
        ("NVIDIA Broadcast", (), WEAK),
        ("DroidCam Source 3", (), WEAK),
        ("FaceTime HD Camera (Built-in) (05ac:8514)", (), NONE),
        ("Integrated Webcam: Integrated Webcam (0c45:6a08)", (), NONE),
        ("Logitech BRIO (046d:085e)", (), NONE),
        ("", (), NONE),  # the browser withheld it
    ],
)
def test_camera_label(label: str, allowed: tuple[str, ...], expected: Contribution) -> None:
    reading = label_reading(CameraReport(label=label), allowed=allowed)
    assert reading.contribution is expected, reading.explanation
    assert reading.value == (label or None)


def test_camera_capabilities_beyond_any_webcam_are_weak() -> None:
    webcam = {"width": {"min": 1, "max": 1920}, "frameRate": {"min": 1, "max": 30}}
    software = {"width": {"min": 1, "max": 7680}, "frameRate": {"min": 1, "max": 1000}}
    assert capabilities_reading(CameraReport("cam", webcam)).contribution is NONE
    reading = capabilities_reading(CameraReport("cam", software))
    assert reading.contribution is WEAK
    assert reading.value == "1000 fps, 7680 px"
    assert capabilities_reading(CameraReport("cam", {})).value is None


def probe(want: tuple[int, int, float], got: tuple[int, int, float]) -> FormatProbe:
    return FormatProbe(CaptureFormat(*want), CaptureFormat(*got))


def test_a_camera_that_switches_modes_as_asked_passes() -> None:
    probes = [
        probe((1280, 720, 30), (1280, 720, 29.8)),
        probe((640, 480, 15), (640, 480, 15.1)),
        probe((1920, 1080, 30), (1280, 720, 30)),  # not a mode this camera has
    ]
    reading = format_reading(probes)
    assert reading.contribution is NONE
    assert reading.value == pytest.approx(2 / 3)


def test_a_source_that_delivers_one_format_whatever_is_asked_is_strong() -> None:
    probes = [
        probe((640, 480, 15), (1280, 720, 30)),
        probe((320, 240, 30), (1280, 720, 30)),
        probe((1920, 1080, 60), (1280, 720, 30)),
    ]
    reading = format_reading(probes)
    assert (reading.contribution, reading.value) == (STRONG, 0.0)
    assert "1280x720" in reading.explanation
    # One refused request is within what cameras do between their modes: weak at most.
    assert format_reading(probes[:1]).contribution is WEAK


def test_capture_format_refuses_nonsense() -> None:
    with pytest.raises(ValueError, match="positive size"):
        CaptureFormat(0, 480)


def clock_of(stamps: list[int]) -> SignalReading:
    clock = FrameClock()
    for stamp in stamps:
        clock.update(stamp)
    return clock.reading()


def test_a_timer_paced_clock_is_weak_and_a_sensor_clock_is_not() -> None:
    regular = clock_of(timer_stamps(90))
    jittered = clock_of(sensor_stamps(90, jitter_ms=1.0))
    assert regular.contribution is WEAK and regular.value is not None and regular.value < 0.01
    assert jittered.contribution is NONE and jittered.value is not None and jittered.value > 0.5
    # Even a steady camera (0.3 ms of jitter) is told from a timer.
    assert clock_of(sensor_stamps(90, jitter_ms=0.3, seed=1)).contribution is NONE


def test_frame_clock_survives_rtp_wraparound_and_leaves_lost_frames_out() -> None:
    stamps = timer_stamps(60, start=(1 << 32) - 3000 * 20)  # wraps after 20 frames
    del stamps[30:33]  # three frames lost in the network
    clock = FrameClock()
    for stamp in stamps:
        clock.update(stamp)
    assert clock.gaps == 1
    assert clock.capture_jitter_ms == pytest.approx(0.0, abs=0.01)
    assert clock.frame_rate == pytest.approx(30.0, rel=0.001)


def test_frame_clock_needs_enough_frames() -> None:
    reading = clock_of(timer_stamps(10))
    assert reading.contribution is NONE
    assert "30 needed" in reading.explanation


def duplicates_in(path: Path) -> SignalReading:
    frames = DuplicateFrames()
    for _, image in decoded(path):
        frames.update(image)
    return frames.reading()


def test_duplicated_frames_after_an_encoder(tmp_path: Path) -> None:
    filmed = list(session_frames(left_to_right, 2.0, 30))
    plain = encode(tmp_path / "plain.mp4", iter(filmed), 30, crf=18)
    # A 25 fps source through a 30 fps virtual camera: every fifth frame sent twice.
    repeating = encode(tmp_path / "repeating.mp4", iter(filmed), 30, crf=18, repeat_every=5)
    assert duplicates_in(plain).value == 0.0
    reading = duplicates_in(repeating)
    assert reading.contribution is STRONG
    assert reading.value == pytest.approx(12 / 71, abs=0.02)


def test_a_still_scene_through_an_encoder_is_not_taken_for_duplicates(tmp_path: Path) -> None:
    still = scene(640, 360, 0.5, 0.5, 200)
    frames = ((i / 30, with_camera_noise(still, i)) for i in range(60))
    reading = duplicates_in(encode(tmp_path / "still.mp4", frames, 30, crf=30))
    assert reading.contribution is NONE, reading


def test_one_jump_in_the_picture_does_not_turn_later_frames_into_duplicates(
    tmp_path: Path,
) -> None:
    """A hand across the face (here the head gone for 10 frames and back) is a jump in the
    picture, once; the frames after it are not repeats. Failed before: the jump raised the
    typical difference for good, and 54 % of the frames read as repeats."""
    ramp = np.linspace(60, 140, 640, dtype=np.float32)  # the scene's wall, without the head
    wall = np.repeat(np.repeat(ramp[None, :, None], 360, 0), 3, 2).astype(np.uint8)
    frames = []
    for t, image in session_frames(lambda t: (0.45 + 0.01 * t, 0.5, 200), 3.0, 30):
        frames.append((t, with_camera_noise(wall, int(t * 30)) if 1.0 <= t < 1.33 else image))
    reading = duplicates_in(encode(tmp_path / "covered.mp4", iter(frames), 30, crf=23))
    assert reading.contribution is NONE, reading


@pytest.mark.parametrize("every", [1, 3])  # every frame (a plain stream), 10 Hz (a session)
def test_a_person_who_pauses_and_moves_is_not_taken_for_duplicates(
    tmp_path: Path, every: int
) -> None:
    """Pauses and a slow sway after quick movement, with a camera's noise, through H.264.
    Failed before (46 % of frames read as repeats, strong, at either rate): the running
    average of past differences stayed high after the quick movement, so the slow frames and
    the first frames of each pause read as repeats."""
    frames = session_frames(moves_and_pauses, 4.0, 30)
    path = encode(tmp_path / "pauses.mp4", frames, 30, crf=23)
    meter = DuplicateFrames()
    for n, (_, image) in enumerate(decoded(path)):
        if n % every == 0:
            meter.update(image)
    reading = meter.reading()
    assert reading.contribution is NONE, reading
    assert reading.value is not None and reading.value < 0.02


def test_a_head_swaying_by_a_few_pixels_is_not_taken_for_duplicates(tmp_path: Path) -> None:
    """Through an encoder, a sway of whole pixels alternates one-pixel steps with unchanged
    frames (the camera's noise wiped): those are no repeats of a moving scene."""
    frames = (
        (i / 30, with_camera_noise(scene(640, 360, 0.5 + 3 * np.sin(i / 7) / 640, 0.5, 200), i))
        for i in range(90)
    )
    reading = duplicates_in(encode(tmp_path / "sway.mp4", frames, 30, crf=23))
    assert reading.value == 0.0, reading


def test_repeats_at_a_third_of_the_rate_are_duplicates(tmp_path: Path) -> None:
    """A 10 fps source through a 30 fps virtual camera: each picture three times. Missed before
    (4 % read as repeats): the repeats raised the running average they were compared with."""
    filmed = list(session_frames(left_to_right, 3.0, 10))
    tripled = ((i / 30, image) for i, (_, f) in enumerate(filmed) for image in (f, f, f))
    reading = duplicates_in(encode(tmp_path / "tripled.mp4", tripled, 30, crf=18))
    assert reading.contribution is STRONG, reading
    assert reading.value == pytest.approx(2 / 3, abs=0.05)


FACE = np.array([250, 100, 390, 260])  # the test scene's head at the centre, 200 px


def noise_of(frames: list[np.ndarray]) -> NoiseMeter:
    meter = NoiseMeter(every=1)
    for image in frames:
        meter.update(image, FACE)
    return meter


def test_sensor_noise_rendered_filmed_and_reencoded(tmp_path: Path) -> None:
    rendered = scene(640, 360, 0.5, 0.5, 200)
    filmed = [with_camera_noise(rendered, seed) for seed in range(10)]
    reencoded = encode(tmp_path / "strong.mp4", ((i / 30, f) for i, f in enumerate(filmed)), 30, 35)
    rendered_reading = noise_of([rendered] * 10).reading()
    filmed_reading = noise_of(filmed).reading()
    reencoded_reading = noise_of([f for _, f in decoded(reencoded)]).reading()
    assert rendered_reading.contribution is WEAK
    assert filmed_reading.contribution is NONE
    assert isinstance(filmed_reading.value, float) and filmed_reading.value > 1.0
    assert isinstance(reencoded_reading.value, float)
    assert reencoded_reading.value < filmed_reading.value / 5
    assert reencoded_reading.contribution is WEAK


def test_noise_estimate_reads_the_sigma_added_to_a_flat_picture() -> None:
    rng = np.random.default_rng(0)
    flat = np.full((240, 320), 128.0)
    for sigma in (1.0, 2.0, 4.0):
        noisy = np.clip(flat + rng.normal(0, sigma, flat.shape), 0, 255).astype(np.uint8)
        assert noise_sigma(noisy) == pytest.approx(sigma, rel=0.15)


def test_a_face_without_noise_in_a_noisy_frame_reads_smoother_than_a_filmed_one() -> None:
    rendered = scene(640, 360, 0.5, 0.5, 200)
    filmed, pasted = [], []
    for seed in range(10):
        frame = with_camera_noise(rendered, seed)
        filmed.append(frame)
        frame = frame.copy()
        frame[100:260, 250:390] = rendered[100:260, 250:390]
        pasted.append(frame)
    filmed_ratio = noise_of(filmed).face_reading().value
    pasted_ratio = noise_of(pasted).face_reading().value
    assert isinstance(filmed_ratio, float) and isinstance(pasted_ratio, float)
    assert pasted_ratio < filmed_ratio - 0.3
    # A flat face patch: nothing but the missing noise tells it from the wall.
    flat = [f.copy() for f in filmed]
    for frame in flat:
        frame[100:260, 250:390] = 128
    reading = noise_of(flat).face_reading()
    assert reading.value is not None and reading.value < FACE_SMOOTHER_BELOW
    # Reported, never counted: on real recordings it separates nothing (benchmarks/README.md).
    assert reading.contribution is NONE and "smoother" in reading.explanation


def test_noise_meter_on_a_plain_stream_without_faces() -> None:
    meter = NoiseMeter(every=2)
    for seed in range(20):
        meter.update(with_camera_noise(scene(320, 180, 0.5, 0.5, 100), seed))
    assert meter.sigma("face") is None
    assert meter.reading().contribution is NONE
    assert meter.face_reading().value is None


def test_a_reading_explanation_is_one_line() -> None:
    with pytest.raises(ValueError, match="one line"):
        SignalReading("x", 1.0, "u", 1.0, NONE, "two\nlines")


def test_stream_signals_feed_every_per_frame_signal_at_once() -> None:
    signals = StreamSignals(noise_every=2)
    stamps = timer_stamps(40)
    for (time_s, image), stamp in zip(
        session_frames(left_to_right, 40 / 30, 30), stamps, strict=True
    ):
        signals.update(time_s, image, FACE, capture_stamp=stamp, arrival_s=time_s + 0.05)
    readings = {r.name: r for r in signals.readings()}
    assert set(readings) == {"frame_clock", "duplicated_frames", "sensor_noise", "face_noise_ratio"}
    assert readings["frame_clock"].contribution is WEAK  # a timer paced these frames
    assert readings["duplicated_frames"].value == 0.0
    assert readings["sensor_noise"].contribution is NONE
    assert len(signals.fingerprint.hashes) == 3  # 1.33 s sampled every 0.5 s
