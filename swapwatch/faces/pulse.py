"""A pulse in the skin: how clearly a face track's colour beats with a heart (rPPG).

A cue across frames that reads no pixels around a blend. A real face's skin reddens slightly
with each heartbeat; a talking head animated from one still portrait has nothing that would
make it beat. Face swaps carry their driving video's pulse (Seibold et al. 2025), so this cue
is for whole-face generators, not swaps. benchmarks/README (`pulse_cue.py`) states the protocol
and the rule that would keep it; the product does not use it unless that rule passes.

Per analysed frame, the mean colour of three skin polygons of the face mesh (forehead, both
cheeks); over the track, POS (Wang et al. 2017: the colour change projected on the plane
orthogonal to the skin tone, two projections mixed by their spread) gives a pulse signal; its
spectrum's SNR (de Haan and Jeanne 2013: power at the strongest beat and its first harmonic
against the rest of the band) says how clear the beat is.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from swapwatch.faces.motion import MAX_GAP_S, even_stretches

RATE_HZ = 15.0  # the even grid (the product analyses at 15 Hz)
WINDOW_S = 1.6  # POS's window: about one beat at the slowest pulse it reads
PULSE_BAND_HZ = (0.7, 3.0)  # 42-180 beats a minute: where the beat is looked for
NOISE_BAND_HZ = (0.7, 4.0)  # what the beat's power is compared with
SEGMENT_S = 8.0  # Welch segments: the same resolution whatever the track's length
MIN_SECONDS = SEGMENT_S  # a shorter stretch holds too few beats for one segment
HOP_S = 1.0
BIN_HZ = 0.01  # each segment's spectrum is zero-padded to this resolution
# The main lobe of a Hann window of SEGMENT_S: a beat's power spreads this far either side.
BEAT_HALF_WIDTH_HZ = 2.0 / SEGMENT_S

# MediaPipe mesh polygons of skin that moves little with speech: the forehead above the brows
# and each cheek below the eye, away from the nose, lips and beard line.
FOREHEAD = (67, 109, 10, 338, 297, 334, 296, 336, 9, 107, 66, 105)
RIGHT_CHEEK = (116, 117, 118, 119, 100, 142, 36, 205, 187, 123)
LEFT_CHEEK = (345, 346, 347, 348, 329, 371, 266, 425, 411, 352)
SKIN_POLYGONS = (FOREHEAD, RIGHT_CHEEK, LEFT_CHEEK)


def skin_colour(image: np.ndarray, points: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """Mean (R, G, B) of the skin polygons of one face in an RGB `image`, with the polygons'
    centre (x, y) in pixels; None when they cover no pixel (a face off the picture)."""
    height, width = image.shape[:2]
    xy = np.round(points[:, :2]).astype(np.int32)
    x0, y0 = np.maximum(xy.min(axis=0), 0)
    x1, y1 = np.minimum(xy.max(axis=0) + 1, (width, height))
    if x1 <= x0 or y1 <= y0:
        return None
    mask = np.zeros((y1 - y0, x1 - x0), np.uint8)
    offset = np.array([x0, y0], np.int32)
    cv2.fillPoly(mask, [xy[list(polygon)] - offset for polygon in SKIN_POLYGONS], 1)
    inside = mask.astype(bool)
    if not inside.any():
        return None
    colour = image[y0:y1, x0:x1][inside].reshape(-1, 3).mean(axis=0)
    centre = xy[[i for polygon in SKIN_POLYGONS for i in polygon]].mean(axis=0)
    return colour.astype(np.float64), centre.astype(np.float64)


def pos_signal(rgb: np.ndarray, rate: float = RATE_HZ, window_s: float = WINDOW_S) -> np.ndarray:
    """POS pulse signal of (T, 3) mean skin colours sampled evenly at `rate`."""
    size = max(2, round(window_s * rate))
    projection = np.array([[0.0, 1.0, -1.0], [-2.0, 1.0, 1.0]])
    pulse = np.zeros(len(rgb))
    for start in range(len(rgb) - size + 1):
        window = rgb[start : start + size]
        normalised = window / np.maximum(window.mean(axis=0), 1e-9)  # the skin tone divided out
        s1, s2 = projection @ normalised.T
        mixed = s1 + (s1.std() / max(s2.std(), 1e-12)) * s2
        pulse[start : start + size] += mixed - mixed.mean()
    return pulse


@dataclass(frozen=True, slots=True)
class Beat:
    snr_db: float  # how clearly the strongest beat stands out of the band
    hz: float  # the strongest beat's frequency
    seconds: float  # the length of the stretch it was read from


def beat(pulse: np.ndarray, rate: float = RATE_HZ) -> Beat:
    """The strongest beat of a pulse signal (at least SEGMENT_S long) and its SNR, from the
    mean spectrum of its SEGMENT_S segments every HOP_S (Welch): one spectrum over the whole
    signal would resolve a long track's beat more sharply than a short one's, making the
    track's length a cue."""
    size, hop = round(SEGMENT_S * rate), round(HOP_S * rate)
    if len(pulse) < size:
        raise ValueError(f"a pulse signal needs {SEGMENT_S:g} s, got {len(pulse) / rate:.1f} s")
    padded = max(size, int(2 ** np.ceil(np.log2(rate / BIN_HZ))))
    taper = np.hanning(size)
    segments = [pulse[start : start + size] for start in range(0, len(pulse) - size + 1, hop)]
    power = np.mean(
        [np.abs(np.fft.rfft((x - x.mean()) * taper, padded)) ** 2 for x in segments], axis=0
    )
    freqs = np.fft.rfftfreq(padded, 1.0 / rate)
    in_pulse = (freqs >= PULSE_BAND_HZ[0]) & (freqs <= PULSE_BAND_HZ[1])
    f0 = float(freqs[in_pulse][np.argmax(power[in_pulse])])
    in_noise = (freqs >= NOISE_BAND_HZ[0]) & (freqs <= NOISE_BAND_HZ[1])
    signal = (np.abs(freqs - f0) <= BEAT_HALF_WIDTH_HZ) | (
        np.abs(freqs - 2 * f0) <= BEAT_HALF_WIDTH_HZ
    )
    beat_power = power[in_noise & signal].sum()
    rest = power[in_noise & ~signal].sum()
    snr = 10.0 * np.log10(max(beat_power, 1e-30) / max(rest, 1e-30))
    return Beat(float(snr), f0, len(pulse) / rate)


def track_beat(times: np.ndarray, colours: np.ndarray) -> Beat | None:
    """The beat of one track: analysed times (s) and (T, 3) skin colours; read from the longest
    stretch without a gap over MAX_GAP_S, None when that is under MIN_SECONDS."""
    if len(times) < 2:
        return None
    stretches = even_stretches(
        np.asarray(times), np.asarray(colours, np.float64), RATE_HZ, MAX_GAP_S
    )
    longest = max(stretches, key=len, default=None)
    if longest is None or len(longest) < round(MIN_SECONDS * RATE_HZ):
        return None
    return beat(pos_signal(longest))
