"""The yardstick: how a list of items fares when each is judged alone, as a user meets it.

Every item counts once, with the product's own verdict (`fake`, `real`, or none: inconclusive,
no face, unreadable). The ranking metrics treat an item without a verdict as an error, since a
user got no answer: a real one ranks above every fake, a fake below every real. So a detector
cannot look better by abstaining on hard items.

Pooled, per fake kind (live swaps, swap stills, talking heads) and per family (its fakes and its
reals apart):
- video AUC (items without a verdict as errors), and the AUC over the items with a score;
- the verdicts: reals called fake, fakes caught, items without a verdict;
- BPCER at APCER 5 % and 10 % (ISO/IEC 30107-3: the share of reals called fake where at most
  5 % / 10 % of fakes pass), each with the score threshold that gives it.

A kind's or family's fakes are ranked against every real of the list, and a family's reals against
every fake; its verdict counts are of its own items. A kind also gives, as a secondary figure,
its AUC against the reals of its own medium only (recordings against real recordings, pictures
against real pictures), the comparison its verdicts make now that each medium has its own
operating point. A fake family's AUC says how its fakes rank
among all the reals a user would meet, not only among the real halves of its own recordings
(the pairs figure, which it replaces).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from swapwatch.evaluation.metrics import DetCurve, roc_auc
from swapwatch.evaluation.stored_rows import is_picture

# Scores given to items without a verdict so that they rank as errors (scores lie in [0, 1]).
_REAL_WITHOUT_VERDICT = 2.0
_FAKE_WITHOUT_VERDICT = -1.0
APCER_TARGETS = (0.05, 0.10)


@dataclass(frozen=True, slots=True)
class Judged:
    """One item's outcome, as `scan` gives it."""

    name: str
    fake: bool
    family: str
    kind: str  # 'real' or the fake kind
    group: str
    score: float | None  # the video (or picture) score; None without one
    verdict: str | None  # 'fake' or 'real'; None for inconclusive, no face or unreadable
    why: str | None = None  # why there is no verdict

    @property
    def decided(self) -> bool:
        return self.verdict in ("fake", "real") and self.score is not None

    @property
    def ranked_score(self) -> float:
        """The score the ranking metrics use: a missing verdict ranks as an error."""
        if self.decided:
            assert self.score is not None
            return self.score
        return _FAKE_WITHOUT_VERDICT if self.fake else _REAL_WITHOUT_VERDICT


def _round(value: float | None) -> float | None:
    return None if value is None else round(float(value), 4)


def summary(own: Sequence[Judged], others: Sequence[Judged] = ()) -> dict[str, Any]:
    """Verdict counts of `own` items; ranking metrics of `own` against `others` as well (the
    other class, for a part that holds one class)."""
    reals = [j for j in own if not j.fake]
    fakes = [j for j in own if j.fake]
    ranked = [*own, *others]
    scores = np.array([j.ranked_score for j in ranked], np.float64)
    labels = np.array([j.fake for j in ranked], bool)
    decided = np.array([j.decided for j in ranked], bool)
    out: dict[str, Any] = {
        "reals": len(reals),
        "fakes": len(fakes),
        "ranked_against": len(others),
        "groups": len({j.group for j in own}),
        "reals_called_fake": sum(j.verdict == "fake" for j in reals),
        "fakes_caught": sum(j.verdict == "fake" for j in fakes),
        "reals_without_verdict": sum(not j.decided for j in reals),
        "fakes_without_verdict": sum(not j.decided for j in fakes),
        "auc": _round(roc_auc(scores, labels)) if len(ranked) else None,
        "auc_decided_only": (
            _round(roc_auc(scores[decided], labels[decided])) if decided.any() else None
        ),
    }
    out["real_called_fake_rate"] = _rate(out["reals_called_fake"], len(reals))
    out["fake_caught_rate"] = _rate(out["fakes_caught"], len(fakes))
    out["without_verdict_rate"] = _rate(
        out["reals_without_verdict"] + out["fakes_without_verdict"], len(own)
    )
    curve = DetCurve.build(scores, labels) if len(ranked) else None
    for target in APCER_TARGETS:
        key = f"bpcer_at_apcer_{round(target * 100)}"
        if curve is None:
            out[key] = None
            continue
        point = curve.at_apcer(target)
        out[key] = {
            "bpcer": _round(point.bpcer),
            "apcer": _round(point.apcer),
            # None where the threshold falls on an item without a verdict (no real score).
            "threshold": _round(point.threshold) if 0 <= point.threshold <= 1 else None,
        }
    return out


def _rate(count: int, total: int) -> float | None:
    return round(count / total, 4) if total else None


def yardstick(items: Sequence[Judged]) -> dict[str, Any]:
    """The whole table: pooled, per kind and per family (each class apart), every part scored
    against all items of the other class."""
    reals = [j for j in items if not j.fake]
    fakes = [j for j in items if j.fake]
    by_kind: dict[str, list[Judged]] = {}
    by_family: dict[tuple[str, bool], list[Judged]] = {}
    for j in items:
        if j.fake:  # the reals of every kind are the pooled row's
            by_kind.setdefault(j.kind, []).append(j)
        by_family.setdefault((j.family, j.fake), []).append(j)

    def against_others(part: list[Judged]) -> dict[str, Any]:
        return summary(part, reals if part[0].fake else fakes)

    def kind_row(part: list[Judged]) -> dict[str, Any]:
        return {**against_others(part), "auc_same_medium": _round(auc_same_medium(part, reals))}

    return {
        "pooled": summary(items),
        "kinds": {k: kind_row(v) for k, v in sorted(by_kind.items())},
        "families": {
            f"{family} ({'fake' if fake else 'real'})": {
                "kind": v[0].kind,
                **against_others(v),
            }
            for (family, fake), v in sorted(by_family.items())
        },
        "without_verdict": dict(
            Counter(f"{j.kind}: {j.why or 'no verdict'}" for j in items if not j.decided)
        ),
    }


def auc_same_medium(fakes: Sequence[Judged], reals: Sequence[Judged]) -> float | None:
    """AUC over the (fake, real) pairs of one medium: each fake recording against the real
    recordings, each fake picture against the real pictures (items without a verdict ranked as
    errors; ties count half)."""
    wins = pairs = 0.0
    for picture in (False, True):
        f = np.array([j.ranked_score for j in fakes if is_picture(j.name) == picture])
        r = np.array([j.ranked_score for j in reals if is_picture(j.name) == picture])
        if not len(f) or not len(r):
            continue
        wins += float((f[:, None] > r[None, :]).sum() + 0.5 * (f[:, None] == r[None, :]).sum())
        pairs += len(f) * len(r)
    return wins / pairs if pairs else None


def format_table(table: dict[str, Any], title: str) -> str:
    """Plain-text rows: one per pooled / kind / family."""
    head = (
        f"{title}\n{'':34s} {'reals':>5s} {'fakes':>5s} {'vs':>5s} {'AUC':>6s} {'AUC*':>6s} "
        f"{'real>fake':>9s} {'caught':>7s} {'no verdict':>10s} {'BPCER@5':>7s} {'BPCER@10':>8s}"
    )
    lines = [head]

    def row(name: str, s: dict[str, Any]) -> str:
        def f(v: float | None) -> str:
            return "   -  " if v is None else f"{v:6.3f}"

        def b(key: str) -> str:
            v = s[key]
            return "-" if v is None else f"{v['bpcer']:.3f}"

        no_verdict = s["reals_without_verdict"] + s["fakes_without_verdict"]
        return (
            f"{name[:34]:34s} {s['reals']:5d} {s['fakes']:5d} {s['ranked_against']:5d} "
            f"{f(s['auc'])} "
            f"{f(s['auc_decided_only'])} {s['reals_called_fake']:>9d} "
            f"{s['fakes_caught']:>7d} {no_verdict:>10d} {b('bpcer_at_apcer_5'):>7s} "
            f"{b('bpcer_at_apcer_10'):>8s}"
        )

    lines.append(row("pooled", table["pooled"]))
    for kind, s in table["kinds"].items():
        lines.append(row(f"kind {kind}", s))
    for family, s in table["families"].items():
        lines.append(row(f"  {family}", s))
    lines.append(
        "vs: items of the other class a row is ranked against. AUC*: items with a verdict only."
    )
    return "\n".join(lines)
