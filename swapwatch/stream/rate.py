"""The live rate cap: at most `max_rate` frames a second of media go to analysis."""

from __future__ import annotations

TOLERANCE_S = 1e-6
# What a live stream of the service is analysed at by default: the budget asks for every face
# scored at 10 Hz or more, and 11 keeps that with a margin for dropped frames and for the cap's
# grid (a 10 Hz cap takes every third frame of 29.97 fps video, 9.99 Hz, catching up once every
# 33 s), at about three quarters of the cost of 15 Hz. The decision rule weighs evidence per
# second of face, so an alarm comes after the same media time at 11 Hz as at the 15 Hz its
# threshold was set at.
LIVE_RATE_HZ = 11.0


class RateCap:
    """Admits a frame when it is due: one every 1/max_rate s of media, the first one at once.
    Without a rate (None) every frame is admitted."""

    def __init__(self, max_rate: float | None) -> None:
        if max_rate is not None and max_rate <= 0:
            raise ValueError("max_rate must be positive")
        self.period = 1.0 / max_rate if max_rate else 0.0
        self.next_due = 0.0

    def admit(self, t: float) -> bool:
        """Whether the frame at media time `t` goes to analysis (then the next is due later)."""
        if t + TOLERANCE_S < self.next_due:
            return False
        self.next_due = max(self.next_due + self.period, t) if self.period else t
        return True

    def wait(self, t: float) -> float:
        """Seconds from `t` until a frame is due, at most one period."""
        return max(0.0, min(self.next_due - t, self.period))
