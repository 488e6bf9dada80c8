"""The live rate cap: at most `max_rate` frames a second of media go to analysis."""

from __future__ import annotations

TOLERANCE_S = 1e-6


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
