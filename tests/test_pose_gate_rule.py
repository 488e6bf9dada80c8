"""The pose gate's rule (swapwatch.evaluation.pose_gate) on hand-made bins."""

from __future__ import annotations

import numpy as np

from swapwatch.evaluation.gate_rule import BinAuc, GateBin, bin_auc
from swapwatch.evaluation.pose_gate import pose_gate

MEASURED_RECORDED = BinAuc(0.80, True)
UNMEASURED = BinAuc(None, False)


def a_bin(upper: float, blend: float | None, recorded: BinAuc, evidence: float = -2.0) -> GateBin:
    return GateBin(upper, BinAuc(blend, blend is not None), recorded, evidence)


def test_the_gate_is_the_last_bin_whose_self_blends_hold_within_the_drop() -> None:
    bins = [
        a_bin(10, 0.95, MEASURED_RECORDED),
        a_bin(20, 0.93, BinAuc(0.78, True)),
        a_bin(30, 0.91, UNMEASURED),  # no turned recorded swaps: the self-blends decide
        a_bin(40, 0.90, UNMEASURED),
        a_bin(50, 0.85, UNMEASURED),  # 0.10 below frontal: closes
        a_bin(60, 0.95, UNMEASURED),  # never reached
    ]
    assert pose_gate(bins) == 40


def test_a_measured_recorded_bin_that_falls_closes_the_gate() -> None:
    bins = [a_bin(10, 0.95, MEASURED_RECORDED), a_bin(20, 0.95, BinAuc(0.70, True))]
    assert pose_gate(bins) == 10


def test_a_bin_without_enough_real_groups_for_self_blends_closes_the_gate() -> None:
    bins = [
        a_bin(10, 0.95, MEASURED_RECORDED),
        GateBin(20, BinAuc(0.99, False), MEASURED_RECORDED, -2.0),
        a_bin(30, 0.95, UNMEASURED),
    ]
    assert pose_gate(bins) == 10


def test_turned_real_faces_drifting_towards_an_alarm_close_the_gate() -> None:
    bins = [
        a_bin(10, 0.95, MEASURED_RECORDED, evidence=-2.0),
        a_bin(20, 0.95, MEASURED_RECORDED, evidence=-1.1),  # within the drift of 1
        a_bin(30, 0.95, UNMEASURED, evidence=-0.5),  # 1.5 above frontal
    ]
    assert pose_gate(bins) == 20


def test_no_gate_where_the_frontal_bin_itself_is_not_measured() -> None:
    assert pose_gate([a_bin(10, None, MEASURED_RECORDED), a_bin(20, 0.9, UNMEASURED)]) is None


def test_an_auc_counts_as_measured_only_with_enough_groups_of_each_class() -> None:
    scores = np.array([0.1, 0.2, 0.3, 0.8, 0.9, 0.7])
    fake = np.array([False, False, False, True, True, True])
    few = bin_auc(scores, fake, np.array(["a", "b", "c", "d", "d", "e"]))
    assert few.auc == 1.0 and not few.measured  # two fake groups
    enough = bin_auc(scores, fake, np.array(["a", "b", "c", "d", "e", "f"]))
    assert enough.auc == 1.0 and enough.measured
    assert bin_auc(scores[:3], fake[:3], np.array(["a", "b", "c"])) == BinAuc(None, False)
