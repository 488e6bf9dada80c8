"""The one rule that turns injection signals into a verdict."""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass

from swapwatch.kyc.readings import Contribution, SignalReading

POINTS = {Contribution.NONE: 0, Contribution.WEAK: 1, Contribution.STRONG: 2}
RETRY_FROM = 2
FAIL_FROM = 4


class Verdict(enum.StrEnum):
    """A session's outcome, from best to worst."""

    PASS = "pass"
    RETRY = "retry"
    FAIL = "fail"


_ORDER = (Verdict.PASS, Verdict.RETRY, Verdict.FAIL)


def worse(a: Verdict, b: Verdict) -> Verdict:
    """The worse of two verdicts (a session takes the worst of its parts)."""
    return max(a, b, key=_ORDER.index)


@dataclass(frozen=True, slots=True)
class InjectionAssessment:
    """The injection part of a session's verdict, and the readings that made it."""

    verdict: Verdict
    points: int
    contributing: tuple[SignalReading, ...]  # the readings that counted, strongest first
    readings: tuple[SignalReading, ...]  # each signal once, by its strongest reading


def assess_injection(readings: Iterable[SignalReading]) -> InjectionAssessment:
    """Combine the signals' readings by one rule.

    Each signal counts once, by its strongest reading: weak = 1 point, strong = 2.
    - fewer than 2 points: `pass`;
    - 2 or 3 points (one strong signal; or two weak; or one strong and one weak): `retry`;
    - 4 points or more (two strong signals; one strong and two weak; four weak): `fail`.

    Why: every signal has an innocent explanation on its own. A virtual-camera label is strong
    evidence, and also what a streamer who routes a real webcam through OBS shows, and any
    attacker renames it; so one signal, however strong, can at most ask for a retry (a strong
    signal is 2 points, below FAIL_FROM). Strong + weak stays `retry` because the commonest weak
    companions of a strong signal come from the same software, not from independent evidence:
    OBS's output is both labelled "OBS Virtual Camera" and clocked by OBS's renderer (a perfectly
    regular frame clock), so the pair says no more than the label. A fail needs either two
    strong signals (say the label and a replayed fingerprint) or a strong one confirmed twice
    over (say the label, a noise-free picture and duplicated frames).
    """
    strongest: dict[str, SignalReading] = {}
    for reading in readings:
        held = strongest.get(reading.name)
        if held is None or POINTS[reading.contribution] > POINTS[held.contribution]:
            strongest[reading.name] = reading
    all_readings = tuple(strongest.values())
    contributing = tuple(
        sorted(
            (r for r in all_readings if r.contribution is not Contribution.NONE),
            key=lambda r: -POINTS[r.contribution],
        )
    )
    points = sum(POINTS[r.contribution] for r in contributing)
    if points >= FAIL_FROM:
        verdict = Verdict.FAIL
    elif points >= RETRY_FROM:
        verdict = Verdict.RETRY
    else:
        verdict = Verdict.PASS
    return InjectionAssessment(verdict, points, contributing, all_readings)
