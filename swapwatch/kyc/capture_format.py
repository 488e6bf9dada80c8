"""Signal (b): what was asked of the camera against what it delivered.

A physical camera, asked for another resolution or frame rate, switches to its nearest mode;
a virtual camera or an injected file delivers the format it was made with, whatever is asked
(arXiv 2512.10653 separates them this way with AUC > 0.9). A session asks for a few formats in
turn (`applyConstraints`) and records what arrives after each; one refused request is weak
(cameras have gaps between their modes), every request refused with the very same delivered
format is strong.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from swapwatch.kyc.readings import Contribution, SignalReading

SIZE_TOLERANCE = 0.05  # relative: browsers round to even sides and cameras to their modes
RATE_TOLERANCE = 0.15  # relative: a measured frame rate wanders with light and load
HONOURED_SHARE_BELOW = 0.5


@dataclass(frozen=True, slots=True)
class CaptureFormat:
    """A picture size and frame rate (the rate may be unknown)."""

    width: int
    height: int
    frame_rate: float | None = None

    def __post_init__(self) -> None:
        if self.width <= 0 or self.height <= 0:
            raise ValueError(
                f"a capture format needs a positive size, got {self.width}x{self.height}"
            )
        if self.frame_rate is not None and not self.frame_rate > 0:
            raise ValueError(f"a frame rate must be positive, got {self.frame_rate}")


@dataclass(frozen=True, slots=True)
class FormatProbe:
    """One request and what arrived after it."""

    requested: CaptureFormat
    delivered: CaptureFormat

    @property
    def honoured(self) -> bool:
        want, got = self.requested, self.delivered
        size_ok = (
            abs(got.width - want.width) <= SIZE_TOLERANCE * want.width
            and abs(got.height - want.height) <= SIZE_TOLERANCE * want.height
        )
        if want.frame_rate is None or got.frame_rate is None:
            return size_ok
        return size_ok and abs(got.frame_rate - want.frame_rate) <= RATE_TOLERANCE * want.frame_rate


def format_reading(probes: Sequence[FormatProbe]) -> SignalReading:
    """The share of requests the camera honoured, and whether it ignored them all alike."""
    name, unit, threshold = "requested_vs_delivered", "share honoured", HONOURED_SHARE_BELOW
    if not probes:
        return SignalReading(
            name, None, unit, threshold, Contribution.NONE, "no format was requested"
        )
    honoured = sum(p.honoured for p in probes)
    share = honoured / len(probes)
    distinct_requests = {p.requested for p in probes}
    delivered = {(p.delivered.width, p.delivered.height) for p in probes}
    if honoured == 0 and len(distinct_requests) >= 2 and len(delivered) == 1:
        (size,) = delivered
        return SignalReading(
            name,
            share,
            unit,
            threshold,
            Contribution.STRONG,
            f"{len(probes)} different requests, each answered with the same {size[0]}x{size[1]}",
        )
    if share < HONOURED_SHARE_BELOW:
        return SignalReading(
            name,
            share,
            unit,
            threshold,
            Contribution.WEAK,
            f"{len(probes) - honoured} of {len(probes)} requested formats not delivered",
        )
    return SignalReading(
        name,
        share,
        unit,
        threshold,
        Contribution.NONE,
        f"{honoured} of {len(probes)} requested formats delivered",
    )
