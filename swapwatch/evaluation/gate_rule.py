"""The rule the quality gates are placed by (fixed before measuring; benchmarks/pose_gate.py and
benchmarks/blur_gate.py measure, swapwatch.evaluation.pose_gate and .blur_gate decide).

Bins run from a reference bin (faces the detector reads best: frontal, or sharp) outwards; a
bin passes against the reference when:
  (a) its self-blend AUC (real faces against their own self-blends) is measured, with at least
      MIN_GROUPS real groups, and is at most DROP below the reference's;
  (b) where its recorded-fake AUC is measured (MIN_GROUPS groups of each class), that is at most
      DROP below the reference's; unmeasured, (b) neither passes nor closes a bin;
  (c) its real faces' mean evidence is at most DRIFT above the reference's: a face the gate
      would newly admit must not push a real person towards an alarm much more than the faces
      it admits now.
The gate is the edge of the last bin, from the reference outwards, that passes; the first bin
that fails closes it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol, TypeVar

import numpy as np

from swapwatch.evaluation.metrics import roc_auc

DROP = 0.05  # largest fall of a bin's AUC below the reference bin's
DRIFT = 1.0  # largest rise of a bin's real faces' mean evidence over the reference's
MIN_GROUPS = 3


@dataclass(frozen=True, slots=True)
class BinAuc:
    auc: float | None
    measured: bool  # at least MIN_GROUPS groups of each class


@dataclass(frozen=True, slots=True)
class GateBin:
    """What the rule reads of one bin."""

    edge: float  # where the gate stands if this is the last bin that passes
    self_blend: BinAuc
    recorded: BinAuc
    real_evidence: float | None  # mean clipped logit / T of its real faces


class _Edged(Protocol):
    @property
    def edge(self) -> float: ...


Bin = TypeVar("Bin", bound=_Edged)


def bin_auc(scores: np.ndarray, is_fake: np.ndarray, groups: np.ndarray) -> BinAuc:
    """AUC of fakes over reals, counted as measured where each class has MIN_GROUPS groups."""
    counts = [len(set(groups[is_fake == c])) for c in (False, True)]
    auc = roc_auc(scores, is_fake) if min(counts) > 0 else None
    return BinAuc(
        None if auc is None else round(auc, 4), auc is not None and min(counts) >= MIN_GROUPS
    )


def bin_passes(candidate: GateBin, reference: GateBin) -> bool:
    """Rules (a)-(c) for one bin against the reference bin."""
    blend, blend_reference = candidate.self_blend, reference.self_blend
    if (
        not (blend.measured and blend_reference.measured)
        or blend.auc is None
        or blend_reference.auc is None
    ):
        return False
    if blend.auc < blend_reference.auc - DROP:
        return False
    recorded, recorded_reference = candidate.recorded, reference.recorded
    if (
        recorded.measured
        and recorded_reference.measured
        and recorded.auc is not None
        and recorded_reference.auc is not None
        and recorded.auc < recorded_reference.auc - DROP
    ):
        return False
    if candidate.real_evidence is None or reference.real_evidence is None:
        return False
    return candidate.real_evidence <= reference.real_evidence + DRIFT


def outermost_gate(bins: Sequence[Bin], passes: Callable[[Bin, Bin], bool]) -> float | None:
    """The edge of the last bin, from the reference (the first) outwards, that passes; None
    where not even the reference does."""
    gate = None
    for candidate in bins:
        if not passes(candidate, bins[0]):
            break
        gate = candidate.edge
    return gate
