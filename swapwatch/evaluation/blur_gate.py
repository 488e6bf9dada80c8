"""Where the blur gate belongs, by a rule fixed before measuring (benchmarks/blur_gate.py
measures; this decides).

Faces are binned by sharpness (the variance of the Laplacian of the face centre at 112 px, as
swapwatch.faces.quality reads it) from the present gate downwards. The reference bin holds the
faces the present gate admits, as delivered; every other bin holds the faces that fall in it as
delivered and, to have blurred fakes at all (the held-out groups hold one below the gate), every
admitted face softened (its crop shrunk and enlarged again, real and fake alike), in the bin of
its softened sharpness. A bin passes by swapwatch.evaluation.gate_rule's (a)-(c) against the
reference, and (d) where it holds real faces as delivered from at least MIN_GROUPS groups,
their mean evidence alone is at most DRIFT above the reference's: softened faces must not hide
how the blurred photos people actually send are scored. The gate is the lower edge of the last
bin, from the reference downwards, that passes.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from swapwatch.evaluation.gate_rule import (
    DRIFT,
    MIN_GROUPS,
    GateBin,
    bin_auc,
    bin_passes,
    outermost_gate,
)

# Lower edges, variance of the Laplacian at 112 px; the first is the gate the rule starts from.
EDGES = (12.0, 10.0, 8.0, 6.0, 4.0, 2.0, 0.0)
SOFTENING = (2.0, 3.0)  # each admitted crop shrunk by these factors, then enlarged back


@dataclass(frozen=True, slots=True)
class BlurBin:
    """What the rule reads of one bin: (a)-(c) over all its faces, and (d)'s figure."""

    read: GateBin  # edge: the bin's lower edge
    delivered_real_evidence: float | None  # None with fewer than MIN_GROUPS real groups

    @property
    def edge(self) -> float:
        return self.read.edge


@dataclass(frozen=True, slots=True)
class Readings:
    """Every crop the detector read, as parallel arrays."""

    sharpness: np.ndarray  # the quality gate's measure of the crop read
    logit: np.ndarray  # calibrated (logit / T)
    blend_logit: np.ndarray  # its self-blend's (softened alike); NaN for a fake face
    delivered: np.ndarray  # bool; False: a softened copy
    fake: np.ndarray  # bool
    group: np.ndarray  # str


def bin_members(readings: Readings) -> list[tuple[float, float, np.ndarray]]:
    """(lower edge, upper edge, which readings) of the reference bin, then of each bin below:
    the reference holds the faces as delivered that the present gate admits; a bin below, every
    reading in its range that is not in the reference (a softened copy still over the present
    gate lands in none)."""
    sharp = readings.sharpness
    reference = readings.delivered & (sharp >= EDGES[0])
    below = [
        (lower, upper, (sharp >= lower) & (sharp < upper) & ~reference)
        for upper, lower in itertools.pairwise(EDGES)
    ]
    return [(EDGES[0], float("inf"), reference), *below]


def read_bin(readings: Readings, lower: float, inside: np.ndarray) -> BlurBin:
    """What the rule reads of the readings `inside` one bin."""
    logit, blend, group = readings.logit, readings.blend_logit, readings.group
    evidence = np.clip(logit, -4, 4)
    reals = inside & ~readings.fake
    paired = reals & ~np.isnan(blend)
    sent = reals & readings.delivered
    read = GateBin(
        edge=lower,
        self_blend=bin_auc(
            np.concatenate([logit[paired], blend[paired]]),
            np.repeat([False, True], paired.sum()),
            np.concatenate([group[paired], group[paired]]),
        ),
        recorded=bin_auc(logit[inside], readings.fake[inside], group[inside]),
        real_evidence=_mean(evidence[reals]),
    )
    enough = len(set(group[sent])) >= MIN_GROUPS
    return BlurBin(read, _mean(evidence[sent]) if enough else None)


def _mean(values: np.ndarray) -> float | None:
    return round(float(values.mean()), 3) if len(values) else None


def blur_bin_passes(blurred: BlurBin, reference: BlurBin) -> bool:
    """Rules (a)-(d) for one bin against the reference bin."""
    if not bin_passes(blurred.read, reference.read):
        return False
    delivered, sharp = blurred.delivered_real_evidence, reference.read.real_evidence
    return delivered is None or (sharp is not None and delivered <= sharp + DRIFT)


def blur_gate(bins: Sequence[BlurBin]) -> float | None:
    """The gate in sharpness: the lower edge of the last bin, from the reference (the first)
    downwards, that passes; None where not even the reference does."""
    return outermost_gate(bins, blur_bin_passes)
