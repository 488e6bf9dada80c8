"""The pulse cue (rPPG): a beating skin colour is read at its rate, a still portrait's is not."""

from __future__ import annotations

import math

import numpy as np
import pytest
from media import Placement, render_frame

from swapwatch.faces.analyzer import FaceAnalyzer
from swapwatch.faces.pulse import (
    MIN_SECONDS,
    RATE_HZ,
    beat,
    pos_signal,
    skin_colour,
    track_beat,
)

# How blood changes normalised skin colour (more absorbed in green than in red and blue): the
# blood-volume-pulse direction measured by de Haan and van Leest 2014.
BLOOD_VOLUME = np.array([0.33, 0.77, 0.53])
HEART_HZ = 1.2  # 72 beats a minute


def beating(times: np.ndarray, amplitude: float, hz: float = HEART_HZ) -> np.ndarray:
    """(T, 3) colour factors of skin whose blood volume beats at `hz`."""
    return 1.0 - amplitude * np.outer(np.sin(2 * math.pi * hz * times), BLOOD_VOLUME)


def test_a_beat_in_the_skin_colour_is_read_at_its_rate_above_noise() -> None:
    rng = np.random.default_rng(0)
    times = np.arange(0, 12, 1 / RATE_HZ)
    skin = np.array([180.0, 130.0, 110.0])
    noise = rng.normal(0, 0.3, (len(times), 3))
    with_pulse = beat(pos_signal(skin * beating(times, 0.01) + noise))
    without = beat(pos_signal(skin + noise))
    assert with_pulse.hz == pytest.approx(HEART_HZ, abs=0.05)
    assert with_pulse.snr_db > 0.0  # the beat holds more power than the rest of the band
    assert with_pulse.snr_db > without.snr_db + 5.0


def test_a_brightness_change_alone_is_not_a_beat() -> None:
    """Light that dims and brightens every channel alike (a flicker, auto exposure) is divided
    out by the skin tone: POS reads the colour's direction, not its level."""
    times = np.arange(0, 12, 1 / RATE_HZ)
    skin = np.array([180.0, 130.0, 110.0])
    rng = np.random.default_rng(1)
    noise = rng.normal(0, 0.3, (len(times), 3))
    dimming = 1.0 + 0.05 * np.sin(2 * math.pi * 1.5 * times)[:, None]
    pulse_in_the_light = beat(pos_signal(skin * dimming + noise))
    pulse_in_the_skin = beat(pos_signal(skin * beating(times, 0.01, 1.5) + noise))
    assert pulse_in_the_light.snr_db < pulse_in_the_skin.snr_db - 5.0


def test_a_track_shorter_than_its_minimum_or_broken_by_gaps_gets_no_beat() -> None:
    times = np.arange(0, MIN_SECONDS - 1, 1 / RATE_HZ)
    colours = np.tile([180.0, 130.0, 110.0], (len(times), 1))
    assert track_beat(times, colours) is None
    long = np.arange(0, 2 * MIN_SECONDS - 2, 1 / RATE_HZ)
    gapped = long[np.abs(long - (MIN_SECONDS - 1)) > 0.5]  # two stretches, each too short
    assert track_beat(gapped, np.tile([180.0, 130.0, 110.0], (len(gapped), 1))) is None
    assert track_beat(long, np.tile([180.0, 130.0, 110.0], (len(long), 1))) is not None


def test_the_face_pipeline_reads_a_rendered_face_s_beat_and_not_a_still_one_s() -> None:
    """Through the product's own tracker and mesh: a face whose skin beats at 72 a minute
    reads 1.2 Hz with a clear beat; the same face without a pulse (a portrait animated from a
    still) reads no clear one."""
    times = np.arange(0, 12, 1 / RATE_HZ)
    factors = beating(times, 0.01)
    placement = Placement(0.5, 0.5, 300)
    found: dict[bool, tuple[list[float], list[np.ndarray]]] = {True: ([], []), False: ([], [])}
    for pulsing in (True, False):
        faces = FaceAnalyzer(quiet=True)
        try:
            for t, factor in zip(times, factors, strict=True):
                frame = render_frame(640, 480, [placement], float(t)).astype(np.float64)
                if pulsing:
                    frame *= factor
                batch = faces.analyse(np.clip(np.round(frame), 0, 255).astype(np.uint8))
                if len(batch) == 1:
                    read = skin_colour(
                        np.clip(np.round(frame), 0, 255).astype(np.uint8), batch.points[0]
                    )
                    assert read is not None
                    found[pulsing][0].append(float(t))
                    found[pulsing][1].append(read[0])
        finally:
            faces.close()
    assert len(found[True][0]) > 0.9 * len(times)
    pulsing_beat = track_beat(np.asarray(found[True][0]), np.asarray(found[True][1]))
    still_beat = track_beat(np.asarray(found[False][0]), np.asarray(found[False][1]))
    assert pulsing_beat is not None and still_beat is not None
    assert pulsing_beat.hz == pytest.approx(HEART_HZ, abs=0.05)
    assert pulsing_beat.snr_db > still_beat.snr_db + 6.0, (pulsing_beat, still_beat)


def test_skin_colour_reads_the_skin_polygons_only() -> None:
    """A face mesh over a picture whose skin region is one colour and the rest another: the
    mean is the skin's; a mesh off the picture reads nothing."""
    faces = FaceAnalyzer(quiet=True)
    try:
        frame = render_frame(640, 480, [Placement(0.5, 0.5, 300, sway=0.0)], 0.0)
        batch = faces.analyse(frame)
    finally:
        faces.close()
    assert len(batch) == 1
    points = batch.points[0]
    read = skin_colour(frame, points)
    assert read is not None
    colour, centre = read
    # The astronaut's skin is reddish: red above green above blue, unlike his white suit.
    assert colour[0] > colour[1] > colour[2]
    x0, y0, x1, y1 = batch.boxes[0]
    assert x0 < centre[0] < x1 and y0 < centre[1] < y1
    off = points.copy()
    off[:, 0] += 2000
    assert skin_colour(frame, off) is None
