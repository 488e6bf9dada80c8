"""What every injection signal reports: its value, the threshold it was compared with, and how
much it counts towards an `injection_suspected` verdict."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any


class Contribution(enum.StrEnum):
    """How much one signal's reading counts towards suspecting an injected video."""

    NONE = "none"  # within what real cameras deliver, or not measurable yet
    WEAK = "weak"  # real cameras produce this sometimes (bright light, heavy compression, ...)
    STRONG = "strong"  # a real camera path almost never produces this unaided


@dataclass(frozen=True, slots=True)
class SignalReading:
    """One signal's measurement, as it goes into a verdict's evidence.

    `value` is None when the signal could not be measured (too few frames, nothing reported);
    its contribution is then NONE and `explanation` says why."""

    name: str
    value: float | str | None
    unit: str
    threshold: float | str | None
    contribution: Contribution
    explanation: str

    def __post_init__(self) -> None:
        if "\n" in self.explanation:
            raise ValueError("a reading's explanation is one line")

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "value": self.value,
            "unit": self.unit,
            "threshold": self.threshold,
            "contribution": self.contribution.value,
            "explanation": self.explanation,
        }
