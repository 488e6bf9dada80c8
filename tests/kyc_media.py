"""Inputs the KYC signal tests make: frame clocks, camera-like noise, sessions to replay."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from pathlib import Path

import av
import cv2
import numpy as np
from media import astronaut_face

RTP_HZ = 90_000


def timer_stamps(frames: int, fps: float = 30.0, start: int = 123_456) -> list[int]:
    """RTP capture stamps of a source paced by a timer: every interval the same."""
    return [(start + round(i * RTP_HZ / fps)) % (1 << 32) for i in range(frames)]


def sensor_stamps(
    frames: int, fps: float = 30.0, jitter_ms: float = 1.0, seed: int = 0
) -> list[int]:
    """RTP capture stamps of a camera: each frame's capture time jitters about its slot."""
    rng = np.random.default_rng(seed)
    times = np.arange(frames) / fps + rng.normal(0.0, jitter_ms / 1000.0, frames)
    return [round(t * RTP_HZ) + 1_000 for t in times]


def with_camera_noise(image: np.ndarray, seed: int, read_sigma: float = 1.5) -> np.ndarray:
    """A picture as a webcam films it: shot noise growing with brightness, plus read noise
    (about 2-3 grey levels in mid-tones)."""
    rng = np.random.default_rng(seed)
    level = image.astype(np.float32)
    sigma = np.sqrt(0.03 * level + read_sigma**2)
    return np.clip(level + rng.normal(0.0, 1.0, image.shape) * sigma, 0, 255).astype(np.uint8)


def scene(width: int, height: int, cx: float, cy: float, size: int) -> np.ndarray:
    """The astronaut's head at (cx, cy) (fractions of the frame), `size` px, on a shaded wall."""
    ramp = np.linspace(60, 140, width, dtype=np.float32)
    frame = np.repeat(np.repeat(ramp[None, :, None], height, 0), 3, 2).astype(np.uint8)
    head = cv2.resize(astronaut_face(), (size, size), interpolation=cv2.INTER_AREA)
    x, y = int(cx * width - size / 2), int(cy * height - size / 2)
    x0, y0 = max(x, 0), max(y, 0)
    x1, y1 = min(x + size, width), min(y + size, height)
    frame[y0:y1, x0:x1] = head[y0 - y : y1 - y, x0 - x : x1 - x]
    return frame


Path_ = Callable[[float], tuple[float, float, int]]


def left_to_right(t: float) -> tuple[float, float, int]:
    """A head that crosses the frame left to right, then comes closer."""
    return 0.25 + 0.1 * min(t, 5.0), 0.5, 160 + int(20 * max(0.0, t - 5.0))


def right_to_left(t: float) -> tuple[float, float, int]:
    """Another session: the head goes the other way and nods."""
    return 0.75 - 0.1 * min(t, 5.0), 0.5 + 0.1 * math.sin(t), 200


def moves_and_pauses(t: float) -> tuple[float, float, int]:
    """A person in front of a camera: a quick move, a pause, a slow sway, a pause, again."""
    phase = t % 2.0
    if phase < 0.4:  # quick: ~10 px a frame at 640 px, 30 fps
        x = 0.3 + 0.75 * phase
    elif phase < 0.9:
        x = 0.6
    elif phase < 1.5:  # slow: ~1.5 px a frame
        x = 0.6 - 0.08 * (phase - 0.9)
    else:
        x = 0.552
    return x, 0.5, 200


def session_frames(
    path: Path_, seconds: float, fps: float, size: tuple[int, int] = (640, 360), seed: int = 0
) -> Iterator[tuple[float, np.ndarray]]:
    """(time, RGB frame) of a filmed session: the scene along `path`, with camera noise."""
    for i in range(int(seconds * fps)):
        t = i / fps
        cx, cy, side = path(t)
        yield t, with_camera_noise(scene(size[0], size[1], cx, cy, side), seed + i)


def encode(
    path: Path,
    frames: Iterator[tuple[float, np.ndarray]],
    fps: int,
    crf: int = 23,
    size: tuple[int, int] | None = None,
    repeat_every: int = 0,
) -> Path:
    """H.264 at `crf` (ultrafast); `size` rescales; `repeat_every` = n sends every n-th
    frame twice, as a virtual camera faster than its source does."""
    with av.open(str(path), mode="w") as out:
        stream = out.add_stream("libx264", rate=fps)
        stream.pix_fmt = "yuv420p"
        stream.options = {"preset": "ultrafast", "crf": str(crf)}
        opened = False
        for n, (_, image) in enumerate(frames):
            if size is not None:
                image = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
            if not opened:
                stream.height, stream.width = image.shape[:2]
                opened = True
            copies = 2 if repeat_every and n % repeat_every == repeat_every - 1 else 1
            for _ in range(copies):
                frame = av.VideoFrame.from_ndarray(image, format="rgb24")
                for packet in stream.encode(frame):
                    out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path


def decoded(path: Path) -> Iterator[tuple[float, np.ndarray]]:
    """(media time, RGB frame) of every frame of a file."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        for frame in container.decode(stream):
            yield float(frame.time or 0.0), frame.to_ndarray(format="rgb24")
