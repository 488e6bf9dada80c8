"""Whether a recipe's model replaces the shipped one: rules (1)-(4) of benchmarks/README.md read
from its seeds' validation runs, its talking-head leave-out and the shipped model's runs.

    .venv/bin/python benchmarks/recipe_rules.py \\
        --shipped results/generalization-validation-v5.json:swapwatch-detector \\
        --seeds S0.json S1.json S2.json --leave-out LOKO.json \\
        --shipped-leave-out results/generalization-leave-out-talking-head.json:swapwatch-detector \\
        [--cannot-ship DETECTOR ...] [--non-inferiority MARGIN] \\
        [--out results/recipe-rules-NAME.json]

Each file is a `generalization.py` results file (`FILE.json[:DETECTOR]`, the file's first
detector by default). It prints each seed's figures, each rule's reading and the seed to bundle
where every rule passes; it exits 1 where a rule fails. `--non-inferiority MARGIN` judges a
cheaper candidate against a shipped model of its family: rule (1) then asks for its seed mean at
most MARGIN below the shipped model's pooled AUC instead of a gain beyond the seeds' spread.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from swapwatch.evaluation.recipe_rules import (  # noqa: E402
    pooled_auc,
    read_rules,
    seed_figures,
    seed_to_ship,
)
from swapwatch.evaluation.stored_rows import detector_results  # noqa: E402


def pooled_pair(spec: str) -> tuple[str, tuple[float, float]]:
    name, entry = detector_results(spec)
    return name, pooled_auc(entry)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shipped", required=True, help="the shipped model's validation run")
    parser.add_argument("--seeds", nargs="+", required=True, help="each seed's validation run")
    parser.add_argument("--leave-out", help="the recipe's talking-head leave-out run")
    parser.add_argument("--shipped-leave-out", help="the shipped model on the same leave-out set")
    parser.add_argument(
        "--cannot-ship",
        action="append",
        default=[],
        metavar="DETECTOR",
        help="a seed counted in the rules whose file cannot be bundled (e.g. lost)",
    )
    parser.add_argument(
        "--non-inferiority",
        type=float,
        metavar="MARGIN",
        help="rule (1) as non-inferiority: the seed mean at most MARGIN below the shipped model's",
    )
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    if args.non_inferiority is not None and not 0 <= args.non_inferiority < 1:
        parser.error(f"--non-inferiority must be within [0, 1), got {args.non_inferiority}")
    try:
        shipped_name, shipped = pooled_pair(args.shipped)
        seeds = [seed_figures(*detector_results(spec)) for spec in args.seeds]
        leave_out = pooled_pair(args.leave_out)[1] if args.leave_out else None
        shipped_leave_out = (
            pooled_pair(args.shipped_leave_out)[1] if args.shipped_leave_out else None
        )
    except (ValueError, KeyError) as exc:
        sys.exit(f"recipe_rules: {exc}")
    shipped_pooled = sum(shipped) / 2
    print(
        f"shipped {shipped_name}: pooled AUC {shipped[0]:.3f} / {shipped[1]:.3f} "
        f"({shipped_pooled:.4f})"
    )
    for s in seeds:
        print(
            f"{s.name}: pooled {s.pooled_auc[0]:.3f} / {s.pooled_auc[1]:.3f} ({s.pooled:.4f}); "
            f"live-swap recordings {s.recordings_auc[0]:.3f} / {s.recordings_auc[1]:.3f} "
            f"({s.recordings:.4f}); "
            f"at its point {s.reals_called_fake} of {s.reals} reals called fake, "
            f"{s.fake_recording_deliveries_caught} of {s.fake_recording_deliveries} fake recording "
            "deliveries caught"
        )
    readings = read_rules(seeds, shipped_pooled, leave_out, shipped_leave_out, args.non_inferiority)
    for reading in readings:
        print(f"rule ({reading.rule}) {'passes' if reading.passed else 'FAILS'}: {reading.why}")
    passed = all(r.passed for r in readings)
    chosen = seed_to_ship(seeds, set(args.cannot_ship)) if passed else None
    if not passed:
        print("bundle: none (a rule fails)")
    else:
        print(f"bundle: {chosen.name}" if chosen else "bundle: no eligible seed")
    if args.out:
        args.out.write_text(
            json.dumps(
                {
                    "shipped": {"detector": shipped_name, "pooled_auc": list(shipped)},
                    "seeds": [
                        asdict(s) | {"pooled": s.pooled, "recordings": s.recordings} for s in seeds
                    ],
                    "leave_out_auc": leave_out,
                    "shipped_leave_out_auc": shipped_leave_out,
                    "cannot_ship": args.cannot_ship,
                    "non_inferiority_margin": args.non_inferiority,
                    "rules": [asdict(r) for r in readings],
                    "bundle": chosen.name if chosen else None,
                },
                indent=1,
            )
            + "\n"
        )
        print(f"wrote {args.out}")
    return 0 if passed else 1


if __name__ == "__main__":
    raise SystemExit(main())
