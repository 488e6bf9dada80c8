"""The one rule that combines injection signals: its whole truth table."""

from __future__ import annotations

import itertools

import pytest

from swapwatch.kyc.combination import Verdict, assess_injection, worse
from swapwatch.kyc.readings import Contribution, SignalReading

NONE, WEAK, STRONG = Contribution.NONE, Contribution.WEAK, Contribution.STRONG
SIGNALS = ("camera_label", "frame_clock", "sensor_noise", "replayed_session")


def reading(name: str, contribution: Contribution) -> SignalReading:
    return SignalReading(name, 1.0, "u", 0.5, contribution, f"{name} is {contribution}")


def expected(contributions: tuple[Contribution, ...]) -> Verdict:
    strong = contributions.count(STRONG)
    weak = contributions.count(WEAK)
    if strong >= 2 or (strong == 1 and weak >= 2) or weak >= 4:
        return Verdict.FAIL
    if strong == 1 or weak >= 2:
        return Verdict.RETRY
    return Verdict.PASS


@pytest.mark.parametrize(
    "contributions", list(itertools.product((NONE, WEAK, STRONG), repeat=len(SIGNALS)))
)
def test_truth_table(contributions: tuple[Contribution, ...]) -> None:
    readings = [reading(n, c) for n, c in zip(SIGNALS, contributions, strict=True)]
    assessment = assess_injection(readings)
    assert assessment.verdict is expected(contributions)
    assert len(assessment.contributing) == sum(c is not NONE for c in contributions)
    assert len(assessment.readings) == len(SIGNALS)


@pytest.mark.parametrize("contribution", [NONE, WEAK, STRONG])
def test_no_single_signal_fails_a_session(contribution: Contribution) -> None:
    assert assess_injection([reading("camera_label", contribution)]).verdict is not Verdict.FAIL


def test_a_virtual_camera_label_alone_asks_for_a_retry() -> None:
    assessment = assess_injection(
        [
            reading("camera_label", STRONG),
            reading("frame_clock", NONE),
            reading("sensor_noise", NONE),
        ]
    )
    assert assessment.verdict is Verdict.RETRY
    assert [r.name for r in assessment.contributing] == ["camera_label"]


def test_one_signal_reported_twice_counts_once_by_its_strongest_reading() -> None:
    twice = [reading("camera_label", STRONG), reading("camera_label", STRONG)]
    assessment = assess_injection(twice)
    assert (assessment.verdict, assessment.points) == (Verdict.RETRY, 2)
    mixed = assess_injection([reading("sensor_noise", WEAK), reading("sensor_noise", NONE)])
    assert mixed.readings[0].contribution is WEAK


def test_contributing_readings_come_strongest_first() -> None:
    assessment = assess_injection(
        [reading("frame_clock", WEAK), reading("camera_label", STRONG), reading("x", NONE)]
    )
    assert [r.name for r in assessment.contributing] == ["camera_label", "frame_clock"]


def test_worse_takes_the_worse_verdict() -> None:
    assert worse(Verdict.PASS, Verdict.RETRY) is Verdict.RETRY
    assert worse(Verdict.FAIL, Verdict.RETRY) is Verdict.FAIL
    assert worse(Verdict.PASS, Verdict.PASS) is Verdict.PASS
