"""How the detector holds up as the live bitrate falls: the validation identities of
../shared/data as they are and re-encoded to H.264 at each --kbps, as a live encoder would send
them (`swapwatch eval --reencode-kbps`).

    .venv/bin/python benchmarks/bitrate.py [--model FILE.onnx] [--kbps 1200 600 300 150]
        [--bootstrap 200] [--out benchmarks/results/bitrate.json]

Per bitrate: the live-swap pairs' video AUC (the target is 0.95), frame AUC, how many swapped
and real recordings get a `fake` verdict (threshold or alarm), alarms raised on real recordings,
and the mean evidence (logit / T, clipped to +-4 as the alarm rule sums it) of real and swapped
faces. The side-by-side recordings are re-encoded whole, so both halves share one encode and
the bitrate is split between two faces.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data"

from accuracy import fmt, run_eval  # noqa: E402
from machine import write_results  # noqa: E402

from swapwatch.datasets.lists import read_list, split_by_group  # noqa: E402
from swapwatch.engines import create_engine  # noqa: E402
from swapwatch.evaluation.report import ReportConfig, build_report  # noqa: E402
from swapwatch.evaluation.runner import EvalRun  # noqa: E402
from swapwatch.fusion import DecisionConfig, Verdict  # noqa: E402
from swapwatch.models import DEFAULT_DETECTOR  # noqa: E402

PAIRS_FAMILY = "live-swap-deepfacelive"


def summarise(run: EvalRun, bootstrap: int) -> dict[str, Any]:
    report = build_report(run, ReportConfig(resamples=bootstrap))
    pairs = report["families"].get(PAIRS_FAMILY)
    clip = DecisionConfig().evidence_clip
    recordings = [r for r in run.results if r.is_video]
    fakes = [r for r in recordings if r.item.is_fake]
    reals = [r for r in recordings if not r.item.is_fake]

    def mean_evidence(results: list[Any]) -> float | None:
        logits = [r.frame_logits for r in results if len(r.frame_logits)]
        if not logits:
            return None
        return round(float(np.clip(np.concatenate(logits), -clip, clip).mean()), 3)

    return {
        "pairs_video_auc": pairs["video"]["auc"] if pairs else None,
        "frame_auc": report["pooled"]["frame"]["auc"],
        "fakes_called_fake": sum(r.verdict is Verdict.FAKE for r in fakes),
        "fakes": len(fakes),
        "reals_called_fake": sum(r.verdict is Verdict.FAKE for r in reals),
        "reals": len(reals),
        "alarms_on_real": sum(r.alarms_raised for r in reals),
        "mean_evidence_real": mean_evidence(reals),
        "mean_evidence_fake": mean_evidence(fakes),
        "scores": {r.item.name: r.score for r in recordings if r.item.family == PAIRS_FAMILY},
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", type=Path, default=DEFAULT_DETECTOR)
    parser.add_argument("--list", type=Path, default=DATA / "manifest.csv")
    parser.add_argument("--kbps", type=int, nargs="+", default=[1200, 600, 300, 150])
    parser.add_argument("--bootstrap", type=int, default=200)
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks/results/bitrate.json")
    args = parser.parse_args()

    _, items = split_by_group(read_list(args.list))
    print(f"{len(items)} validation items in {len({i.group for i in items})} groups", flush=True)

    def factory() -> Any:
        return create_engine("onnxruntime", args.model, device="cpu", threads=1)

    rows: dict[str, Any] = {}
    for kbps in [None, *sorted(args.kbps, reverse=True)]:
        label = "as they are" if kbps is None else f"{kbps} kbit/s"
        run = run_eval(items, factory, kbps, label)
        rows[label] = {"kbps": kbps, **summarise(run, args.bootstrap)}

    print()
    print(
        f"{'bitrate':13} {'pairs video AUC':20} {'frame AUC':20} {'swaps flagged':>13} "
        f"{'reals flagged':>13} {'alarms, real':>12} {'evidence real / swapped':>24}"
    )
    for label, row in rows.items():
        evidence = f"{row['mean_evidence_real']} / {row['mean_evidence_fake']}"
        print(
            f"{label:13} {fmt(row['pairs_video_auc']):20} {fmt(row['frame_auc']):20} "
            f"{row['fakes_called_fake']:>6} of {row['fakes']:<4} {row['reals_called_fake']:>6} of "
            f"{row['reals']:<4} {row['alarms_on_real']:>12} {evidence:>24}"
        )
    model = args.model.relative_to(REPO) if args.model.is_relative_to(REPO) else args.model
    print()
    write_results(args.out, "bitrate", {"model": str(model), "rows": rows}, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
