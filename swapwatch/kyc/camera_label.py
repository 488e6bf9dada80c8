"""Signal (a): the camera's label and capabilities, as the browser reports them.

Injection tools install a virtual camera whose name says what it is; Chromium's own fake device
(`--use-fake-device-for-media-stream`) is how automated attacks and tests feed a browser a video.
A label is trivially renamed (OBS and v4l2loopback take any name), so it never decides alone
(see `swapwatch.kyc.combination`), and an operator can allow a label it trusts.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import Any

from swapwatch.kyc.readings import Contribution, SignalReading

# Lower-case fragments of labels that only virtual cameras and injection tools use.
VIRTUAL_CAMERAS: tuple[tuple[str, str], ...] = (
    ("obs virtual camera", "OBS Virtual Camera"),
    ("obs-camera", "OBS Virtual Camera"),
    ("manycam", "ManyCam"),
    ("dummy video device", "v4l2loopback"),
    ("v4l2loopback", "v4l2loopback"),
    ("xsplit", "XSplit VCam"),
    ("snap camera", "Snap Camera"),
    ("e2esoft", "e2eSoft VCam"),
    ("vcam", "a VCam driver"),
    ("fake_device", "Chromium's fake device"),
    ("fake video capture", "Chromium's fake device"),
    # Chromium's fake device fed a file (--use-file-for-fake-video-capture) is labelled with
    # the file's path (measured: Chromium 1xx, headless).
    (".y4m", "Chromium's fake device playing a file"),
    (".mjpeg", "Chromium's fake device playing a file"),
    ("camtwist", "CamTwist"),
    ("splitcam", "SplitCam"),
    ("avatarify", "Avatarify"),
    ("deepfacelive", "DeepFaceLive"),
    ("virtual camera", "an unnamed virtual camera"),
)
# Software that passes a real camera's frames through a filter or another device: a real person
# is usual, but the frames could be anything, so only weak.
CAMERA_SOFTWARE: tuple[tuple[str, str], ...] = (
    ("nvidia broadcast", "NVIDIA Broadcast"),
    ("mmhmm", "mmhmm"),
    ("chromacam", "ChromaCam"),
    ("droidcam", "DroidCam (a phone as webcam)"),
    ("iriun", "Iriun (a phone as webcam)"),
    ("camo", "Camo (a phone as webcam)"),
    ("virtual", "a camera named virtual"),
)
# No webcam sold delivers more: a source announcing more is software (measured ceilings of
# USB webcams: 4K at 30 fps, 1080p at 60 fps; some gaming cameras 120 fps at 720p).
MAX_CAMERA_FRAME_RATE = 120.0
MAX_CAMERA_SIDE = 4096


@dataclass(frozen=True, slots=True)
class CameraReport:
    """What the browser says about the camera it opened (MediaStreamTrack: `label`, and
    `getCapabilities()` as a JSON object; either may be missing)."""

    label: str = ""
    capabilities: Mapping[str, Any] = field(default_factory=dict)


def _match(label: str, table: tuple[tuple[str, str], ...]) -> str | None:
    lowered = label.casefold()
    for fragment, product in table:
        if fragment in lowered:
            return product
    return None


def label_reading(report: CameraReport, allowed: Collection[str] = ()) -> SignalReading:
    """Whether the camera's label names a virtual camera. `allowed`: label fragments (case
    insensitive) the operator trusts, e.g. the fake device of its own end-to-end tests."""
    label = report.label.strip()
    name, unit, threshold = "camera_label", "label", "known virtual cameras"
    if not label:
        return SignalReading(
            name, None, unit, threshold, Contribution.NONE, "the browser reported no camera label"
        )
    trusted = next((a for a in allowed if a.casefold() in label.casefold()), None)
    if trusted is not None:
        return SignalReading(
            name,
            label,
            unit,
            threshold,
            Contribution.NONE,
            f"label allowed by configuration ({trusted!r})",
        )
    product = _match(label, VIRTUAL_CAMERAS)
    if product is not None:
        return SignalReading(
            name,
            label,
            unit,
            threshold,
            Contribution.STRONG,
            f"the label names {product}, a virtual camera",
        )
    product = _match(label, CAMERA_SOFTWARE)
    if product is not None:
        return SignalReading(
            name,
            label,
            unit,
            threshold,
            Contribution.WEAK,
            f"the label names {product}, camera software between camera and browser",
        )
    return SignalReading(
        name, label, unit, threshold, Contribution.NONE, "no known virtual camera in the label"
    )


def _maximum(capabilities: Mapping[str, Any], key: str) -> float | None:
    entry = capabilities.get(key)
    if isinstance(entry, Mapping):
        top = entry.get("max")
        if isinstance(top, int | float) and not isinstance(top, bool):
            return float(top)
    return None


def capabilities_reading(report: CameraReport) -> SignalReading:
    """Whether the camera offers more than any physical webcam can (frame rate above
    MAX_CAMERA_FRAME_RATE or a side above MAX_CAMERA_SIDE): software that scales anything
    to order. Weak: browsers may widen ranges themselves on some platforms."""
    name, threshold = (
        "camera_capabilities",
        f"<= {MAX_CAMERA_FRAME_RATE:g} fps, <= {MAX_CAMERA_SIDE} px",
    )
    rate = _maximum(report.capabilities, "frameRate")
    sides = [s for s in (_maximum(report.capabilities, k) for k in ("width", "height")) if s]
    if rate is None and not sides:
        return SignalReading(
            name,
            None,
            "fps, px",
            threshold,
            Contribution.NONE,
            "the browser reported no capabilities",
        )
    side = max(sides) if sides else None
    value = f"{rate:g} fps" if rate is not None else "? fps"
    value += f", {side:g} px" if side is not None else ", ? px"
    beyond = (rate is not None and rate > MAX_CAMERA_FRAME_RATE) or (
        side is not None and side > MAX_CAMERA_SIDE
    )
    if beyond:
        return SignalReading(
            name,
            value,
            "fps, px",
            threshold,
            Contribution.WEAK,
            "the camera offers more than any physical webcam",
        )
    return SignalReading(
        name, value, "fps, px", threshold, Contribution.NONE, "within what physical webcams offer"
    )
