"""Where the pose gate belongs, by a rule fixed before measuring (benchmarks/pose_gate.py
measures; this decides).

Faces are binned by head turn (|yaw| in degrees); the frontal bin is the reference and each
bin's edge its upper one, read by swapwatch.evaluation.gate_rule: (a) self-blend AUC at most
DROP below the frontal bin's, (b) recorded-fake AUC likewise where measured (held-out recorded
swaps turned past about 30 degrees do not exist in the data), (c) real faces' mean evidence at
most DRIFT above the frontal real faces'. The gate is the upper edge of the last bin, from
frontal outwards, that passes.
"""

from __future__ import annotations

from collections.abc import Sequence

from swapwatch.evaluation.gate_rule import GateBin, bin_passes, outermost_gate

BINS = (0.0, 10.0, 20.0, 30.0, 40.0, 50.0, 60.0, 90.0)  # |yaw|, degrees


def pose_gate(bins: Sequence[GateBin]) -> float | None:
    """The gate in degrees: the upper edge of the last bin, from frontal (the first) outwards,
    that passes; None where not even the frontal bin does."""
    return outermost_gate(bins, bin_passes)
