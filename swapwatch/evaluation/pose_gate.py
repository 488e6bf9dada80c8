"""Where the pose gate belongs, by a rule fixed before measuring (benchmarks/pose_gate.py
measures; this decides).

Per bin of head turn (|yaw| in degrees), taking the frontal bin as reference, a bin passes when:
  (a) its self-blend AUC (real faces against their own self-blends) is measured, with at least
      MIN_GROUPS real groups, and is at most DROP below the frontal bin's;
  (b) where its recorded-fake AUC is measured (MIN_GROUPS groups of each class), that is at most
      DROP below the frontal bin's; unmeasured, (b) neither passes nor closes a bin, since
      held-out recorded swaps turned past about 30 degrees do not exist in the data;
  (c) its real faces' mean evidence is at most DRIFT above the frontal real faces': a turned
      real face must not push towards an alarm much more than a frontal one.
The gate is the upper edge of the last bin, from frontal outwards, that passes; the first bin
that fails closes it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from swapwatch.evaluation.metrics import roc_auc

BINS = (0.0, 10.0, 20.0, 30.0, 40.0, 50.0, 60.0, 90.0)  # |yaw|, degrees
DROP = 0.05  # largest fall of a bin's AUC below the frontal bin's
DRIFT = 1.0  # largest rise of turned real faces' mean evidence over frontal ones'
MIN_GROUPS = 3


@dataclass(frozen=True, slots=True)
class BinAuc:
    auc: float | None
    measured: bool  # at least MIN_GROUPS groups of each class


@dataclass(frozen=True, slots=True)
class PoseBin:
    """What the rule reads of one bin."""

    upper: float  # degrees
    self_blend: BinAuc
    recorded: BinAuc
    real_evidence: float | None  # mean clipped logit / T of its real faces


def bin_auc(scores: np.ndarray, is_fake: np.ndarray, groups: np.ndarray) -> BinAuc:
    """AUC of fakes over reals, counted as measured where each class has MIN_GROUPS groups."""
    counts = [len(set(groups[is_fake == c])) for c in (False, True)]
    auc = roc_auc(scores, is_fake) if min(counts) > 0 else None
    return BinAuc(
        None if auc is None else round(auc, 4), auc is not None and min(counts) >= MIN_GROUPS
    )


def bin_passes(turned: PoseBin, frontal: PoseBin) -> bool:
    """Rules (a)-(c) for one bin against the frontal one."""
    blend, reference = turned.self_blend, frontal.self_blend
    if not (blend.measured and reference.measured) or blend.auc is None or reference.auc is None:
        return False
    if blend.auc < reference.auc - DROP:
        return False
    recorded, recorded_reference = turned.recorded, frontal.recorded
    if (
        recorded.measured
        and recorded_reference.measured
        and recorded.auc is not None
        and recorded_reference.auc is not None
        and recorded.auc < recorded_reference.auc - DROP
    ):
        return False
    if turned.real_evidence is None or frontal.real_evidence is None:
        return False
    return turned.real_evidence <= frontal.real_evidence + DRIFT


def pose_gate(bins: Sequence[PoseBin]) -> float | None:
    """The gate in degrees: the upper edge of the last bin, from frontal (the first) outwards,
    that passes; None where not even the frontal bin does."""
    gate = None
    for turned in bins:
        if not bin_passes(turned, bins[0]):
            break
        gate = turned.upper
    return gate
