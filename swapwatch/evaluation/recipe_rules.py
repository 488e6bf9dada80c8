"""The rules that decide whether a recipe's model replaces the shipped one (benchmarks/README.md,
"How a model is chosen"), read from the figures of its seeds' validation runs.

(1) the mean over seeds of the pooled AUC (plain and poor call averaged) beats the shipped
    model's by more than the seeds' spread (max - min), with at least three seeds;
(2) each seed calls at most 10 % of the validation reals fake at its own operating point;
(3) the recipe's talking-head leave-out AUC is not, in either delivery, both under 0.5 and
    under the shipped model's on the same set (a pass by the second half alone is flagged: the
    card must lead with it);
(4) each seed's recordings' point catches at least half of the fake recording deliveries.
The seed to bundle is the eligible one with the highest pooled AUC.

A cheaper candidate judged against a shipped model of the same family reads rule (1) as
non-inferiority instead: its seed mean at most `margin` below the shipped model's pooled AUC
(the margin written before its runs, e.g. 0.02 for the distilled 128 px candidate).
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from swapwatch.datasets.splits import FakeKind, fake_kind
from swapwatch.evaluation.metrics import roc_auc
from swapwatch.evaluation.stored_rows import is_picture
from swapwatch.evaluation.yardstick import Judged

CONDITIONS = ("plain", "poor-call")
MIN_SEEDS = 3
MAX_REALS_CALLED_FAKE = 0.10
MIN_RECORDINGS_CAUGHT = 0.5
TALKING_HEAD_BAR = 0.5


@dataclass(frozen=True, slots=True)
class SeedFigures:
    """One seed's validation run, as the rules read it."""

    name: str
    pooled_auc: tuple[float, float]  # plain, poor call
    recordings_auc: tuple[float, float]  # recordings alone (live swaps against real recordings)
    reals_called_fake: int  # at its own operating point, recordings and pictures together
    reals: int
    fake_recording_deliveries: int
    fake_recording_deliveries_caught: int

    @property
    def pooled(self) -> float:
        return statistics.fmean(self.pooled_auc)

    @property
    def recordings(self) -> float:
        return statistics.fmean(self.recordings_auc)


@dataclass(frozen=True, slots=True)
class RuleReading:
    rule: str
    passed: bool
    why: str


def recordings_auc(stored: dict[str, Any]) -> float:
    """AUC of one delivery's live-swap recordings against its real recordings (amendment (4)),
    from a results file's compacted rows; a recording without a verdict ranks as an error, as
    in the yardstick."""
    scores, fakes = [], []
    for values in stored["rows"]:
        row = dict(zip(stored["fields"], values, strict=True))
        fake = row["label"] == "fake"
        if is_picture(row["name"]) or (fake and fake_kind(row["family"]) != FakeKind.LIVE_SWAP):
            continue
        verdict = row["verdict"]
        judged = Judged(row["name"], fake, row["family"], "", row["group"], row["score"], verdict)
        scores.append(judged.ranked_score)
        fakes.append(fake)
    auc = roc_auc(scores, fakes)
    if auc is None:
        raise ValueError("the recordings hold only one class")
    return auc


def pooled_auc(entry: dict[str, Any]) -> tuple[float, float]:
    """A detector's pooled AUC, plain and poor call, from its entry of a results file."""
    plain, poor = (entry["conditions"][c]["table"]["pooled"]["auc"] for c in CONDITIONS)
    return plain, poor


def seed_figures(name: str, entry: dict[str, Any]) -> SeedFigures:
    """A detector's entry of a `generalization.py` validation results file."""
    conditions = entry["conditions"]
    missing = [c for c in CONDITIONS if c not in conditions]
    if missing:
        raise ValueError(f"{name}: no {' or '.join(missing)} delivery")
    point = entry.get("operating_point") or {}
    pictures = point.get("pictures")
    if point.get("threshold") is None or not pictures:
        raise ValueError(f"{name}: no operating point for each medium (run set on them first)")
    plain, poor = (conditions[c] for c in CONDITIONS)
    return SeedFigures(
        name=name,
        pooled_auc=pooled_auc(entry),
        recordings_auc=(recordings_auc(plain["items"]), recordings_auc(poor["items"])),
        reals_called_fake=point["reals_called_fake"] + pictures["reals_called_fake"],
        reals=point["real_recordings"] + pictures["real_pictures"],
        fake_recording_deliveries=point["fake_deliveries"],
        fake_recording_deliveries_caught=point["fake_deliveries_caught"],
    )


def read_rules(
    seeds: Sequence[SeedFigures],
    shipped_pooled: float,
    leave_out_auc: tuple[float, float] | None,
    shipped_leave_out_auc: tuple[float, float] | None,
    non_inferiority_margin: float | None = None,
) -> list[RuleReading]:
    pooled = [s.pooled for s in seeds]
    mean = statistics.fmean(pooled)
    spread = max(pooled) - min(pooled)
    gain = mean - shipped_pooled
    if non_inferiority_margin is None:
        holds = gain > spread
        test = f"seed spread {spread:.4f}"
    else:
        holds = gain >= -non_inferiority_margin
        test = f"non-inferiority margin {non_inferiority_margin:.4f} (seed spread {spread:.4f})"
    readings = [
        RuleReading(
            "1",
            len(seeds) >= MIN_SEEDS and holds,
            f"mean pooled AUC {mean:.4f} over {len(seeds)} seeds, {gain:+.4f} over the shipped "
            f"{shipped_pooled:.4f}, {test}"
            + ("" if len(seeds) >= MIN_SEEDS else f"; needs at least {MIN_SEEDS} seeds"),
        )
    ]
    for seed in seeds:
        rate = seed.reals_called_fake / seed.reals
        readings.append(
            RuleReading(
                "2",
                rate <= MAX_REALS_CALLED_FAKE,
                f"{seed.name}: {seed.reals_called_fake} of {seed.reals} reals called fake "
                f"({rate:.1%}) at its point",
            )
        )
    readings.append(_talking_heads(leave_out_auc, shipped_leave_out_auc))
    for seed in seeds:
        caught, of = seed.fake_recording_deliveries_caught, seed.fake_recording_deliveries
        readings.append(
            RuleReading(
                "4",
                of > 0 and caught >= MIN_RECORDINGS_CAUGHT * of,
                f"{seed.name}: its recordings' point catches {caught} of {of} fake deliveries",
            )
        )
    return readings


def _talking_heads(
    auc: tuple[float, float] | None, shipped: tuple[float, float] | None
) -> RuleReading:
    if auc is None:
        return RuleReading("3", False, "no talking-head leave-out run")
    below_bar = [a < TALKING_HEAD_BAR for a in auc]
    if not any(below_bar):
        return RuleReading("3", True, f"leave-out AUC {_pair(auc)}, not under 0.5")
    if shipped is None:
        return RuleReading("3", False, f"leave-out AUC {_pair(auc)} under 0.5, no shipped figure")
    rejected = any(b and a < s for a, s, b in zip(auc, shipped, below_bar, strict=True))
    return RuleReading(
        "3",
        not rejected,
        f"leave-out AUC {_pair(auc)} under 0.5"
        + (
            f" and under the shipped model's {_pair(shipped)}: rejected"
            if rejected
            else f" but not under the shipped model's {_pair(shipped)}: passes by that alone, "
            "and the card leads with talking heads not caught"
        ),
    )


def _pair(values: tuple[float, float]) -> str:
    return f"{values[0]:.3f} / {values[1]:.3f}"


def seed_to_ship(seeds: Sequence[SeedFigures], cannot_ship: set[str]) -> SeedFigures | None:
    """The eligible seed with the highest pooled AUC (its file must exist to be bundled)."""
    eligible = [s for s in seeds if s.name not in cannot_ship]
    return max(eligible, key=lambda s: s.pooled, default=None)
