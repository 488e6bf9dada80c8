"""Delivery conditions: each item made into what a user's system would receive, alone.

An item's own file says too much: its container, codec, bitrate and picture format differ by
maker, and a detector can learn those instead of the face. So before it is judged every item is
cut to its own panel (a side-by-side recording or a grid of tiles becomes one picture or
recording, as it would arrive) and encoded anew, the same way for every item of a condition:
- `plain`: recordings as H.264 at constant quality (CRF 23, x264 `veryfast`, no B-frames, as a
  live encoder sends), at their own size; pictures as JPEG at quality 90;
- `poor-call`: what a poor video call delivers: scaled to fit 640 x 360, H.264 at 250 kbit/s
  with a one-second buffer (rate-capped, as a live encoder sends); pictures scaled alike and
  JPEG at quality 50.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import av.error
import cv2
import numpy as np
from av.video.frame import PictureType

from swapwatch.datasets.digest import content_digest
from swapwatch.datasets.lists import MediaItem
from swapwatch.errors import SourceUnreadable
from swapwatch.stream.source import crop_fraction, upright_rgb


@dataclass(frozen=True, slots=True)
class Condition:
    name: str
    crf: int | None = None  # constant quality, or
    kbps: int | None = None  # a rate-capped bitrate
    fit: tuple[int, int] | None = None  # scale down (never up) to fit width x height
    jpeg_quality: int = 90

    def __post_init__(self) -> None:
        if (self.crf is None) == (self.kbps is None):
            raise ValueError("a condition encodes at a constant quality or at a bitrate")


PLAIN = Condition("plain", crf=23)
POOR_CALL = Condition("poor-call", kbps=250, fit=(640, 360), jpeg_quality=50)
CONDITIONS = {c.name: c for c in (PLAIN, POOR_CALL)}


def fitted_size(width: int, height: int, fit: tuple[int, int] | None) -> tuple[int, int]:
    """Even size of a width x height picture scaled down to fit `fit` (either orientation:
    a portrait phone video fits 360 x 640)."""
    scale = 1.0
    if fit is not None:
        long_side, short_side = max(fit), min(fit)
        if width >= height:
            scale = min(1.0, long_side / width, short_side / height)
        else:
            scale = min(1.0, short_side / width, long_side / height)
    return max(2, int(width * scale) // 2 * 2), max(2, int(height * scale) // 2 * 2)


def deliver(
    item: MediaItem, condition: Condition, folder: Path, max_seconds: float | None = None
) -> MediaItem:
    """The item as delivered under `condition`: a new file in `folder` (reused when it is
    already there), uncropped, with the item's label, group and family."""
    identity = f"{content_digest(item.path)}|{item.crop}|{condition}|{max_seconds}"
    stem = hashlib.sha256(identity.encode()).hexdigest()[:16]
    folder.mkdir(parents=True, exist_ok=True)
    if item.is_image:
        target = folder / f"{stem}.jpg"
        if not target.is_file():
            _picture(item, condition, target)
    else:
        target = folder / f"{stem}.mp4"
        if not target.is_file():
            partial = target.with_suffix(f".{os.getpid()}.partial.mp4")
            _recording(item, condition, partial, max_seconds)
            partial.replace(target)
    return MediaItem(target, item.label, item.group, item.family, None, item.pair_id)


def _picture(item: MediaItem, condition: Condition, target: Path) -> None:
    bgr = cv2.imread(str(item.path), cv2.IMREAD_COLOR)
    if bgr is None:
        raise SourceUnreadable(f"cannot decode picture {item.path}")
    if item.crop is not None:
        bgr = crop_fraction(bgr, item.crop)
    height, width = bgr.shape[:2]
    size = fitted_size(width, height, condition.fit)
    if size != (width // 2 * 2, height // 2 * 2):
        bgr = cv2.resize(bgr, size, interpolation=cv2.INTER_AREA)
    ok, data = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, condition.jpeg_quality])
    if not ok:
        raise SourceUnreadable(f"cannot encode {item.path} as JPEG")
    partial = target.with_suffix(f".{os.getpid()}.partial.jpg")
    partial.write_bytes(data.tobytes())
    partial.replace(target)


def _recording(
    item: MediaItem, condition: Condition, target: Path, max_seconds: float | None
) -> None:
    try:
        with av.open(str(item.path)) as reader, av.open(str(target), mode="w") as writer:
            if not reader.streams.video:
                raise SourceUnreadable(f"no video stream in {item.path}")
            video_in = reader.streams.video[0]
            video_in.thread_type = "AUTO"
            rate = Fraction(video_in.average_rate or 25).limit_denominator(1001)
            if not 1 <= rate <= 120:
                rate = Fraction(25)  # a GIF or a broken header: any steady rate will do
            out: av.video.stream.VideoStream | None = None
            first: float | None = None
            last_pts = -1
            for index, frame in enumerate(reader.decode(video_in)):
                # Frames keep their own times (a call's recording has a variable rate), on
                # the grid of the nominal rate, never two on one tick.
                t = frame.time if frame.time is not None else index / float(rate)
                first = t if first is None else first
                if max_seconds is not None and t - first > max_seconds:
                    break
                pts = max(last_pts + 1, round((t - first) * rate))
                last_pts = pts
                image = upright_rgb(frame)
                if item.crop is not None:
                    image = crop_fraction(image, item.crop)
                # 4:2:0 needs even sides: an odd last row or column is cut, not rescaled.
                image = image[: image.shape[0] // 2 * 2, : image.shape[1] // 2 * 2]
                if out is None:
                    out = _video_stream(writer, condition, rate, image.shape[1], image.shape[0])
                picture = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="rgb24")
                picture = picture.reformat(width=out.width, height=out.height, format="yuv420p")
                picture.pict_type = PictureType.NONE
                picture.pts = pts
                picture.time_base = Fraction(1) / rate
                for packet in out.encode(picture):
                    writer.mux(packet)
            if out is None:
                raise SourceUnreadable(f"no frame decoded from {item.path}")
            for packet in out.encode():
                writer.mux(packet)
    except (av.error.FFmpegError, OSError, ValueError) as exc:
        target.unlink(missing_ok=True)
        raise SourceUnreadable(f"cannot re-encode {item.path}: {exc}") from exc


def _video_stream(
    writer: av.container.OutputContainer,
    condition: Condition,
    rate: Fraction,
    width: int,
    height: int,
) -> av.video.stream.VideoStream:
    stream = writer.add_stream("libx264", rate=rate)
    stream.width, stream.height = fitted_size(width, height, condition.fit)
    stream.pix_fmt = "yuv420p"
    options: dict[str, object] = {
        "preset": "veryfast",
        "tune": "zerolatency",  # no B-frames or look-ahead, as a live encoder sends
        "g": str(max(1, round(2 * rate))),
        "threads": "1",  # x264's rate control under frame threads depends on timing
    }
    if condition.crf is not None:
        options["crf"] = str(condition.crf)
    else:
        assert condition.kbps is not None
        stream.bit_rate = condition.kbps * 1000
        options.update(maxrate=f"{condition.kbps}k", bufsize=f"{condition.kbps}k")
    stream.options = options
    return stream
