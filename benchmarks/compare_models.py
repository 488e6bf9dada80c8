"""Two detectors on the same yardstick items: the difference of their pooled AUC, with a paired
bootstrap over groups.

    .venv/bin/python benchmarks/compare_models.py A.json[:DETECTOR] B.json[:DETECTOR]
        [--resamples 2000] [--out benchmarks/results/compare-A-B.json]

Both files are `generalization.py` results on the same part (the validation part, as a rule); each
item keeps the score and verdict its detector gave it, and an item without a verdict ranks as an
error, as in the yardstick. The figure is the pooled AUC with plain and poor-call deliveries
averaged, B minus A. The bootstrap draws groups (identity or recording) with replacement, the same
draw for both detectors, so that the 35 tiles of one picture or a person's many photos move
together; real pictures, whose results keep no group, count as one group each (nearly all real
photos are of different people; the real tiles beside swap stills share their fakes' groups and
some low-resolution sets repeat people, so the interval is somewhat too narrow). On the validation
part 35 of the 48 fakes are one group (trump-cage): the interval mostly says how often that group
is drawn. It reports the difference, its 95 % percentile interval and the
share of draws in which B is lower. Scores are read as the results store them (4 decimals), so a
detector whose scores crowd near 0 or 1 gets an AUC a few ten-thousandths off its run's own.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from swapwatch.evaluation.metrics import (  # noqa: E402
    group_resamples,
    percentile_interval,
    roc_auc,
)
from swapwatch.evaluation.stored_rows import DECIDED, detector_results  # noqa: E402
from swapwatch.evaluation.yardstick import Judged  # noqa: E402

CONDITIONS = ("plain", "poor-call")


def detector_entry(spec: str) -> tuple[str, dict[str, Any]]:
    """`FILE.json[:NAME]` -> (name, that detector's results); the first detector by default."""
    try:
        return detector_results(spec)
    except ValueError as exc:
        sys.exit(f"compare_models: {exc}")


def ranked(stored: Any) -> dict[tuple[str, ...], tuple[str, bool, float]]:
    """Item key -> (group, fake, ranked score) of one delivery condition's stored rows."""
    if not isinstance(stored, dict) or "rows" not in stored:
        sys.exit(
            "compare_models: a results file without per-item rows (made before they were kept)"
        )
    out: dict[tuple[str, ...], tuple[str, bool, float]] = {}
    for values in stored["rows"]:
        row = dict(zip(stored["fields"], values, strict=True))
        fake = row["label"] == "fake"
        judged = Judged(
            row["name"], fake, row["family"], "", row["group"], row["score"], row["verdict"]
        )
        out[(row["name"], row["label"])] = (row["group"], fake, judged.ranked_score)
    for family, pictures in stored["real_pictures"].items():
        for i, (score, verdict, _why) in enumerate(pictures):
            decided = verdict in DECIDED
            judged = Judged("", False, family, "real", "", score if decided else None, verdict)
            out[(family, str(i))] = (f"{family}#{i}", False, judged.ranked_score)
    return out


def paired_arrays(
    a: dict[str, Any], b: dict[str, Any]
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(group per item, fake per item, scores of A (conditions x items), scores of B)."""
    keys: list[tuple[str, ...]] | None = None
    scores_a, scores_b = [], []
    groups: list[str] = []
    fakes: list[bool] = []
    for condition in CONDITIONS:
        if condition not in a["conditions"] or condition not in b["conditions"]:
            sys.exit(f"compare_models: both runs need the {condition} delivery")
        rows_a = ranked(a["conditions"][condition]["items"])
        rows_b = ranked(b["conditions"][condition]["items"])
        if set(rows_a) != set(rows_b):
            sys.exit(f"compare_models: the two runs scored different items ({condition})")
        if keys is None:
            keys = sorted(rows_a)
            groups = [rows_a[k][0] for k in keys]
            fakes = [rows_a[k][1] for k in keys]
        scores_a.append([rows_a[k][2] for k in keys])
        scores_b.append([rows_b[k][2] for k in keys])
    return np.array(groups), np.array(fakes), np.array(scores_a), np.array(scores_b)


def pooled_auc(scores: np.ndarray, fakes: np.ndarray) -> float:
    """Mean over the delivery conditions of the AUC of all items."""
    values = [roc_auc(row, fakes) for row in scores]
    return float(np.mean([v for v in values if v is not None]))


def compare(a: dict[str, Any], b: dict[str, Any], resamples: int, seed: int = 0) -> dict[str, Any]:
    groups, fakes, scores_a, scores_b = paired_arrays(a, b)

    def difference(drawn: np.ndarray) -> float | None:
        if not fakes[drawn].any() or fakes[drawn].all():
            return None
        return pooled_auc(scores_b[:, drawn], fakes[drawn]) - pooled_auc(
            scores_a[:, drawn], fakes[drawn]
        )

    values = [difference(drawn) for drawn in group_resamples(groups.tolist(), resamples, seed)]
    interval = percentile_interval(values)
    assert interval is not None
    defined = np.array([v for v in values if v is not None])
    return {
        "auc_a": round(pooled_auc(scores_a, fakes), 4),
        "auc_b": round(pooled_auc(scores_b, fakes), 4),
        "difference": round(pooled_auc(scores_b, fakes) - pooled_auc(scores_a, fakes), 4),
        "interval_95": [round(interval.low, 4), round(interval.high, 4)],
        "share_b_lower": round(float((defined < 0).mean()), 4),
        "resamples": interval.resamples,
        "items": len(fakes),
        "groups": len(set(groups.tolist())),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("a", help="RESULTS.json[:DETECTOR], the reference")
    parser.add_argument("b", help="RESULTS.json[:DETECTOR], the candidate")
    parser.add_argument("--resamples", type=int, default=2000)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    if args.resamples < 100:
        parser.error("--resamples must be at least 100")
    name_a, a = detector_entry(args.a)
    name_b, b = detector_entry(args.b)
    result = {"a": name_a, "b": name_b, **compare(a, b, args.resamples)}
    print(
        f"{name_b} - {name_a}: pooled AUC (plain and poor call averaged) {result['auc_b']} - "
        f"{result['auc_a']} = {result['difference']:+.4f}, 95 % interval "
        f"[{result['interval_95'][0]:+.4f}, {result['interval_95'][1]:+.4f}] over "
        f"{result['resamples']} group draws; {name_b} lower in {result['share_b_lower']:.1%}"
    )
    if args.out:
        args.out.write_text(json.dumps(result, indent=2) + "\n")
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
