"""The blur gate's rule (swapwatch.evaluation.blur_gate) on hand-made bins."""

from __future__ import annotations

import numpy as np

from swapwatch.evaluation.blur_gate import BlurBin, Readings, bin_members, blur_gate, read_bin
from swapwatch.evaluation.gate_rule import BinAuc, GateBin

RECORDED = BinAuc(0.85, True)
UNMEASURED = BinAuc(None, False)


def a_bin(
    lower: float,
    blend: float,
    recorded: BinAuc = RECORDED,
    evidence: float = -2.0,
    delivered: float | None = None,
) -> BlurBin:
    return BlurBin(GateBin(lower, BinAuc(blend, True), recorded, evidence), delivered)


def test_the_gate_falls_to_the_last_bin_whose_blends_and_swaps_still_read() -> None:
    bins = [
        a_bin(12, 0.94),
        a_bin(10, 0.93),
        a_bin(8, 0.91, BinAuc(0.81, True)),
        a_bin(6, 0.90, UNMEASURED),
        a_bin(4, 0.87),  # self-blends 0.07 below the sharp faces: closes
        a_bin(2, 0.95),  # never reached
    ]
    assert blur_gate(bins) == 6


def test_softened_swaps_that_are_no_longer_caught_keep_the_gate() -> None:
    assert blur_gate([a_bin(12, 0.94), a_bin(10, 0.94, BinAuc(0.70, True))]) == 12


def test_blurred_photos_as_sent_that_drift_towards_an_alarm_close_the_gate() -> None:
    # Softened faces alone would pass (c); the photos people actually sent at this sharpness
    # score 1.5 above the sharp faces, so (d) closes the bin.
    bins = [
        a_bin(12, 0.94, evidence=-2.0),
        a_bin(10, 0.94, evidence=-1.8, delivered=-1.2),
        a_bin(8, 0.94, evidence=-1.8, delivered=-0.5),
    ]
    assert blur_gate(bins) == 10


def test_a_bin_without_enough_photos_as_sent_is_read_on_its_softened_faces() -> None:
    bins = [
        a_bin(12, 0.94),
        a_bin(10, 0.93, delivered=None, evidence=-1.5),
        a_bin(8, 0.92, delivered=None, evidence=-0.5),  # softened reals 1.5 above: (c) fails
    ]
    assert blur_gate(bins) == 10


def test_the_present_gate_stays_where_not_even_the_sharp_faces_are_measured() -> None:
    unmeasured = BlurBin(GateBin(12, BinAuc(0.9, False), RECORDED, -2.0), None)
    assert blur_gate([unmeasured, a_bin(10, 0.94)]) is None


def readings(rows: list[tuple[float, float, float, bool, bool, str]]) -> Readings:
    """(sharpness, logit, blend logit, delivered, fake, group) each."""
    sharp, logit, blend, delivered, fake, group = zip(*rows, strict=True)
    return Readings(
        np.array(sharp),
        np.array(logit),
        np.array(blend),
        np.array(delivered),
        np.array(fake),
        np.array(group),
    )


def test_the_reference_holds_faces_as_sent_and_softened_copies_go_below_or_nowhere() -> None:
    nan = float("nan")
    read = readings(
        [
            (30.0, -2.0, 1.0, True, False, "a"),  # sharp, as sent: the reference
            (15.0, -1.0, 1.0, False, False, "a"),  # softened, still admitted: no bin
            (11.0, 0.0, 2.0, False, False, "b"),  # softened into 10-12
            (11.5, -1.5, 0.5, True, False, "c"),  # a photo sent at 11.5: 10-12
            (9.0, 2.0, nan, False, True, "f"),  # a softened fake into 8-10
        ]
    )
    members = {lower: np.flatnonzero(inside).tolist() for lower, _, inside in bin_members(read)}
    assert members[12.0] == [0] and members[10.0] == [2, 3] and members[8.0] == [4]
    assert sum(len(m) for m in members.values()) == 4  # the softened copy at 15 is in none


def test_photos_as_sent_speak_for_themselves_only_from_enough_groups() -> None:
    nan = float("nan")
    two_groups = readings(
        [(11.0, 1.0, nan, True, False, g) for g in "ab"]
        + [(11.0, -3.0, nan, False, False, g) for g in "cde"]
    )
    inside = np.ones(5, bool)
    blurred = read_bin(two_groups, 10.0, inside)
    assert blurred.delivered_real_evidence is None and blurred.read.real_evidence == -1.4
    three = readings([(11.0, 1.0, nan, True, False, g) for g in "abc"])
    assert read_bin(three, 10.0, np.ones(3, bool)).delivered_real_evidence == 1.0
