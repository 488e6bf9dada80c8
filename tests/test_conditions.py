"""Delivery conditions: each item cut to its own panel and encoded anew, alike for all."""

from __future__ import annotations

from pathlib import Path

import av
import cv2
import numpy as np
from media import Placement, astronaut_face, write_video

from swapwatch.datasets.lists import LEFT_HALF, Label, MediaItem
from swapwatch.evaluation.conditions import PLAIN, POOR_CALL, deliver, fitted_size


def probe(path: Path) -> tuple[str, int, int, int, float]:
    with av.open(str(path)) as c:
        s = c.streams.video[0]
        frames = sum(1 for _ in c.decode(s))
        return s.codec_context.name, s.width, s.height, frames, float(s.average_rate or 0)


def test_poor_call_fits_the_panel_into_640x360_at_a_low_bitrate(tmp_path: Path) -> None:
    source = write_video(
        tmp_path / "sbs.mp4",
        [Placement(0.25, 0.5, 300)],
        seconds=2.0,
        size=(1920, 720),
        codec="mpeg4",
    )
    half = MediaItem(source, Label.REAL, "g", "f", crop=LEFT_HALF)
    plain = deliver(half, PLAIN, tmp_path / "plain")
    assert probe(plain.path)[:4] == ("h264", 960, 720, 60)
    assert plain.crop is None and plain.group == "g" and plain.label is Label.REAL
    poor = deliver(half, POOR_CALL, tmp_path / "poor")
    codec, width, height, frames, rate = probe(poor.path)
    assert (codec, width, height, frames, rate) == ("h264", 480, 360, 60, 30.0)
    kbps = poor.path.stat().st_size * 8 / 2.0 / 1000
    assert kbps < 400  # 250 kbit/s capped with a one-second buffer, plus the container
    assert poor.path.stat().st_size < plain.path.stat().st_size
    again = deliver(half, POOR_CALL, tmp_path / "poor")
    assert again.path == poor.path  # reused, not encoded twice


def test_max_seconds_encodes_only_what_is_analysed(tmp_path: Path) -> None:
    source = write_video(tmp_path / "long.mp4", [Placement(0.5, 0.5, 300)], seconds=3.0)
    item = MediaItem(source, Label.FAKE, "g", "f")
    assert probe(deliver(item, PLAIN, tmp_path / "p", max_seconds=1.0).path)[3] == 31


def test_pictures_become_jpeg_of_their_own_panel(tmp_path: Path) -> None:
    grid = np.zeros((400, 800, 3), np.uint8)
    grid[50:350, 450:750] = astronaut_face()
    path = tmp_path / "grid.png"
    cv2.imwrite(str(path), grid)
    tile = MediaItem(path, Label.FAKE, "g", "f", crop=(0.5, 0.0, 1.0, 1.0))
    out = deliver(tile, POOR_CALL, tmp_path / "poor")
    picture = cv2.imread(str(out.path))
    assert out.path.suffix == ".jpg" and picture.shape == (360, 360, 3)


def test_fitted_size_keeps_orientation_and_never_enlarges() -> None:
    assert fitted_size(1080, 1920, (640, 360)) == (360, 640)
    assert fitted_size(1280, 720, (640, 360)) == (640, 360)
    assert fitted_size(320, 240, (640, 360)) == (320, 240)
    assert fitted_size(1281, 721, None) == (1280, 720)


def test_an_odd_sized_panel_loses_its_last_column_and_a_changed_source_is_encoded_again(
    tmp_path: Path,
) -> None:
    source = write_video(
        tmp_path / "odd.mp4",
        [Placement(0.5, 0.5, 200)],
        seconds=1.0,
        size=(642, 360),
        codec="mpeg4",
    )
    half = MediaItem(source, Label.REAL, "g", "f", crop=(0.0, 0.0, 0.5, 1.0))  # 321 wide
    first = deliver(half, PLAIN, tmp_path / "p")
    assert probe(first.path)[1:3] == (320, 360)
    write_video(source, [Placement(0.5, 0.5, 200)], seconds=0.5, size=(642, 360), codec="mpeg4")
    again = deliver(half, PLAIN, tmp_path / "p")
    assert again.path != first.path and probe(again.path)[3] == 15
