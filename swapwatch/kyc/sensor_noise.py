"""Signal (d): the sensor noise in the picture.

Every camera sensor adds noise (photon shot noise and read noise, 1-4 grey levels at webcam
gains after the camera's own processing); a rendered picture has none, and a re-encoded video
loses most of its noise to the encoder's quantisation. The estimate is Immerkaer's fast noise
estimation (1996): the picture is filtered with the difference of two Laplacians

    N = [[1, -2, 1], [-2, 4, -2], [1, -2, 1]]

which cancels smooth shading and keeps white noise with variance 36 sigma^2, so
sigma = sqrt(pi / 2) * mean |I * N| / 6. Edges leak into it, so the pixels of the strongest
gradients are left out: what remains is flat skin and wall, where mostly noise moves the filter.

The picture as a whole leaves out the top 10 % (PICTURE_EDGE_SHARE, as Tai and Yang 2008): an
encoder wipes the noise off the flattest pixels first, so leaving out more would read every
encoded picture as noise-free. Measured on test-made pictures (benchmarks/kyc_signals.py):
rendered 0.07 grey levels, with camera-like noise 1.6; through H.264 at CRF 23 0.04 and 0.15,
at CRF 35 both 0.03. An encoder at a call's bitrate removes most of a sensor's noise, so a low
reading is weak evidence only, and NOISE_FREE_BELOW is still to be checked on real cameras
through real calls (the live-swap recordings' real halves, encoded streamer footage, read
0.2-0.55).

The face (its box) and the rest of the picture are compared with the same estimator leaving out
half (REGION_EDGE_SHARE), because skin, hair and collars are textured and texture reads as
noise: a swapped face pasted into a real frame is smoother than its surroundings, which the
face-to-background ratio reports. Leaving out half of a flat wall's pixels lowers its reading
by ~1 % (measured).
O(1) memory: running means over the sampled frames.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from swapwatch.kyc.readings import Contribution, SignalReading

IMMERKAER = np.array([[1, -2, 1], [-2, 4, -2], [1, -2, 1]], np.float32)
PICTURE_EDGE_SHARE = 0.1
REGION_EDGE_SHARE = 0.5
# Below this (grey levels) a picture carries less noise than a camera leaves through an encoder
# at a moderate bitrate (0.15 measured at CRF 23; rendered pictures read 0.04).
NOISE_FREE_BELOW = 0.1
# A face whose noise is below this share of its surroundings' reads smoother than a face filmed
# with them: skin adds texture to a camera's noise, so a filmed face reads at least its flat
# wall. Texture also hides a pasted face: on the test scene's 200 px head (hair, collar) the
# filmed face reads 1.7x its wall and the same head pasted without noise still 1.2x. The ratio is
# reported and counts for nothing: on delivered video it separates nothing
# (benchmarks/kyc_still_scenes.py, ../shared/data): real recordings read 0.54-6.4 (one real
# interview clip below this line), DeepFaceLive live swaps 0.77-7.6 and animated talking heads
# 1.09-3.7, none of the 36 manipulated videos below it; the encoder a swap's output goes through
# evens face and background out.
FACE_SMOOTHER_BELOW = 0.75
MIN_PIXELS = 400  # a region smaller than 20 x 20 px says nothing
MIN_SAMPLES = 5


def noise_sigma(
    grey: np.ndarray, mask: np.ndarray | None = None, edge_share: float = PICTURE_EDGE_SHARE
) -> float | None:
    """Immerkaer's noise sigma (grey levels) of a grey picture, over `mask` (bool, same shape)
    if given, the `edge_share` of its strongest gradients left out; None when too few pixels
    remain."""
    picture = np.asarray(grey, np.float32)
    if picture.ndim != 2 or min(picture.shape) < 3:
        raise ValueError(f"expected a grey picture of at least 3x3, got {picture.shape}")
    response = np.abs(cv2.filter2D(picture, cv2.CV_32F, IMMERKAER))[1:-1, 1:-1]
    gx = cv2.Sobel(picture, cv2.CV_32F, 1, 0)[1:-1, 1:-1]
    gy = cv2.Sobel(picture, cv2.CV_32F, 0, 1)[1:-1, 1:-1]
    gradient = np.hypot(gx, gy)
    keep = np.ones(response.shape, bool) if mask is None else mask[1:-1, 1:-1].copy()
    if keep.sum() < MIN_PIXELS:
        return None
    edge = np.quantile(gradient[keep], 1.0 - edge_share)
    keep &= gradient <= edge
    if keep.sum() < MIN_PIXELS:
        return None
    return float(math.sqrt(math.pi / 2.0) * response[keep].mean() / 6.0)


def _grey(image: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(image, cv2.COLOR_RGB2GRAY) if image.ndim == 3 else image


class NoiseMeter:
    """Fed frames (with the face box when one is known); samples one in `every`."""

    def __init__(self, every: int = 5) -> None:
        if every < 1:
            raise ValueError("every must be at least 1")
        self._every = every
        self._seen = 0
        self._sums = {"face": 0.0, "background": 0.0, "picture": 0.0}
        self._counts = {"face": 0, "background": 0, "picture": 0}

    def update(self, image: np.ndarray, face_box: np.ndarray | None = None) -> None:
        """One frame (RGB uint8 or grey) and its main face's box (x0, y0, x1, y1) or None."""
        self._seen += 1
        if (self._seen - 1) % self._every:
            return
        grey = _grey(image)
        self._add("picture", noise_sigma(grey))
        if face_box is None:
            return
        height, width = grey.shape
        x0, y0, x1, y1 = (round(float(v)) for v in face_box)
        face = np.zeros(grey.shape, bool)
        face[max(y0, 0) : min(y1, height), max(x0, 0) : min(x1, width)] = True
        self._add("face", noise_sigma(grey, face, REGION_EDGE_SHARE))
        self._add("background", noise_sigma(grey, ~face, REGION_EDGE_SHARE))

    def _add(self, region: str, sigma: float | None) -> None:
        if sigma is not None:
            self._sums[region] += sigma
            self._counts[region] += 1

    def sigma(self, region: str) -> float | None:
        """Mean noise sigma of 'face', 'background' or 'picture' over the sampled frames."""
        count = self._counts[region]
        return self._sums[region] / count if count else None

    def reading(self) -> SignalReading:
        """Whether the picture carries a camera's noise."""
        name, unit, threshold = "sensor_noise", "grey levels (sigma)", NOISE_FREE_BELOW
        sigma = self.sigma("picture")
        if sigma is None or self._counts["picture"] < MIN_SAMPLES:
            return SignalReading(
                name,
                None if sigma is None else round(sigma, 3),
                unit,
                threshold,
                Contribution.NONE,
                f"{self._counts['picture']} frames measured, {MIN_SAMPLES} needed",
            )
        if sigma < NOISE_FREE_BELOW:
            return SignalReading(
                name,
                round(sigma, 3),
                unit,
                threshold,
                Contribution.WEAK,
                "less noise than a camera sensor leaves: rendered or re-encoded",
            )
        return SignalReading(
            name, round(sigma, 3), unit, threshold, Contribution.NONE, "a camera sensor's noise"
        )

    def face_reading(self) -> SignalReading:
        """Whether the face is smoother than the rest of the picture (a pasted face): reported
        only, it never contributes (see FACE_SMOOTHER_BELOW)."""
        name, unit, threshold = (
            "face_noise_ratio",
            "face sigma / background sigma",
            FACE_SMOOTHER_BELOW,
        )
        face, background = self.sigma("face"), self.sigma("background")
        if face is None or background is None or self._counts["face"] < MIN_SAMPLES:
            return SignalReading(
                name,
                None,
                unit,
                threshold,
                Contribution.NONE,
                "too few frames with a measurable face",
            )
        if background < NOISE_FREE_BELOW:
            return SignalReading(
                name,
                None,
                unit,
                threshold,
                Contribution.NONE,
                f"the background carries no noise to compare with ({background:.2f})",
            )
        ratio = face / background
        if ratio < FACE_SMOOTHER_BELOW:
            return SignalReading(
                name,
                round(ratio, 3),
                unit,
                threshold,
                Contribution.NONE,
                f"the face ({face:.2f}) is smoother than its surroundings ({background:.2f}); "
                "reported only, as real recordings read so too",
            )
        return SignalReading(
            name,
            round(ratio, 3),
            unit,
            threshold,
            Contribution.NONE,
            f"face and surroundings carry alike noise ({face:.2f}, {background:.2f})",
        )
