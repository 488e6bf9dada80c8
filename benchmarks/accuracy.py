"""Accuracy of the detector on the validation identities of ../shared/data, next to MesoNet.

    .venv/bin/python benchmarks/accuracy.py [--model FILE.onnx] [--list MANIFEST.csv]
        [--mesonet FILE.h5 | --no-mesonet] [--kbps 300] [--bootstrap 1000]
        [--out benchmarks/results/accuracy.json]

Four runs of `swapwatch eval --split validation` (the groups the detector never trained on):
our detector and MesoNet, each on the clips as they are and re-encoded to H.264 at --kbps.
Then the operating point: the CUSUM threshold h is swept over the held-out real face tracks,
block-resampled into synthetic stream-hours (false alarms per hour), and over the fake tracks
(share alarmed, median delay). The per-face cost of the model is measured by
benchmarks/pipeline.py, not here.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data"

from machine import write_results  # noqa: E402

from swapwatch.datasets.lists import MediaItem, read_list, split_by_group  # noqa: E402
from swapwatch.engines import create_engine  # noqa: E402
from swapwatch.evaluation.operating_point import OperatingPointConfig, operating_point  # noqa: E402
from swapwatch.evaluation.report import ReportConfig, build_report  # noqa: E402
from swapwatch.evaluation.runner import EvalConfig, EvalRun, ItemResult, evaluate  # noqa: E402
from swapwatch.models import DEFAULT_DETECTOR  # noqa: E402

FALSE_ALARM_BUDGET = 0.1  # per stream-hour: one false alarm in ten hours of one face


def run_eval(items: list[MediaItem], factory: Any, kbps: int | None, label: str) -> EvalRun:
    def progress(done: int, total: int, result: ItemResult) -> None:
        score = "n/a" if result.score is None else f"{result.score:.3f}"
        print(
            f"  [{label} {done}/{total}] {result.item.name} ({result.item.label.value}): "
            f"{score}, {result.alarms_raised} alarm(s)",
            file=sys.stderr,
            flush=True,
        )

    return evaluate(items, factory, EvalConfig(reencode_kbps=kbps), progress)


def headline(report: dict[str, Any]) -> dict[str, Any]:
    pooled = report["pooled"]
    live = report["families"].get("live-swap-deepfacelive")

    def pick(level: dict[str, Any]) -> dict[str, Any]:
        return {
            "auc": level["auc"],
            "eer": {k: level["eer"][k] for k in ("value", "ci")},
            "apcer_at_0.5": level["at_threshold"]["apcer"],
            "bpcer_at_0.5": level["at_threshold"]["bpcer"],
        }

    return {
        "video": pick(pooled["video"]),
        "frame": pick(pooled["frame"]),
        "live_swap_pairs_video_auc": live["video"]["auc"] if live else None,
        "live_swap_pairs_frame_auc": live["frame"]["auc"] if live else None,
        "alarms_on_real": pooled["alarms"],
        "counts": report["counts"],
    }


def slim(report: dict[str, Any]) -> dict[str, Any]:
    """The report without per-frame numbers (they stay in the run, not in the results file)."""
    per_frame = ("frame_logits", "track_evidence", "track_logits", "path")
    items = [{k: v for k, v in item.items() if k not in per_frame} for item in report["items"]]
    return {**report, "items": items}


def pooled_operating_point(runs: list[EvalRun]) -> dict[str, Any]:
    """h and the video threshold from the held-out real recordings of every run (as they are
    and re-encoded), as `swapwatch eval` recommends them for one list."""
    results = [r for run in runs for r in run.results]
    budget = OperatingPointConfig(false_alarms_per_hour=FALSE_ALARM_BUDGET)
    point = operating_point(results, runs[0].config.decision, budget)
    assert point is not None, "no held-out real recording was scored"
    return point


def fmt(estimate: dict[str, Any] | None) -> str:
    if not estimate or estimate.get("value") is None:
        return "n/a"
    ci = estimate.get("ci")
    return f"{estimate['value']:.3f}" + (f" [{ci[0]:.2f}, {ci[1]:.2f}]" if ci else "")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", type=Path, default=DEFAULT_DETECTOR)
    parser.add_argument("--list", type=Path, default=DATA / "manifest.csv")
    parser.add_argument(
        "--mesonet", type=Path, default=DATA / "baselines" / "mesonet" / "Meso4_DF.h5"
    )
    parser.add_argument("--no-mesonet", action="store_true")
    parser.add_argument("--kbps", type=int, default=300)
    parser.add_argument("--bootstrap", type=int, default=1000)
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks/results/accuracy.json")
    args = parser.parse_args()

    _, items = split_by_group(read_list(args.list))
    print(f"{len(items)} validation items in {len({i.group for i in items})} groups", flush=True)
    detectors: list[tuple[str, Any]] = [
        ("swapwatch", lambda: create_engine("onnxruntime", args.model, device="cpu", threads=1))
    ]
    if not args.no_mesonet:
        from swapwatch.evaluation.mesonet import MesoNetEngine

        detectors.append(("mesonet-" + args.mesonet.stem, lambda: MesoNetEngine(args.mesonet)))

    results: dict[str, Any] = {}
    ours: list[EvalRun] = []
    config = ReportConfig(resamples=args.bootstrap)
    for name, factory in detectors:
        for kbps in (None, args.kbps):
            label = f"{name}" + (f"@{kbps}kbps" if kbps else "")
            run = run_eval(items, factory, kbps, label)
            if name == "swapwatch":
                ours.append(run)
            report = build_report(
                run, config, context={"list": str(args.list), "split": "validation"}
            )
            results[label] = {"headline": headline(report), "report": slim(report)}

    point = pooled_operating_point(ours)
    print()
    print(f"{'run':34} {'video AUC':20} {'pairs video AUC':20} {'frame AUC':20} alarms/h on reals")
    for label, entry in results.items():
        h = entry["headline"]
        alarms = h["alarms_on_real"]
        print(
            f"{label:34} {fmt(h['video']['auc']):20} {fmt(h['live_swap_pairs_video_auc']):20} "
            f"{fmt(h['frame']['auc']):20} {alarms['raised_on_real']} raised in "
            f"{alarms['real_hours'] * 60:.1f} min of real video"
        )
    print(
        f"\noperating point ({point['real_track_seconds']} s of held-out real face tracks, "
        "as they are and re-encoded):"
    )
    for row in point["sweep"]:
        print(
            f"  h={row['h']:>5}: {row['false_alarms_per_hour']:7.3f} false alarms/h, "
            f"fake tracks alarmed {row['fake_tracks_alarmed']}, "
            f"median delay {row['median_delay_seconds']} s"
        )
    chosen = point["at_recommended_h"]
    print(
        f"  recommended h for {FALSE_ALARM_BUDGET}/h: {point['recommended_h']} "
        f"(bound by {point['binding']}: {point['bounds']}) "
        f"({chosen['false_alarms_per_hour']}/h; fake tracks alarmed "
        f"{chosen['fake_tracks_alarmed']}, median delay {chosen['median_delay_seconds']} s); "
        f"default {point['current_h']}: {point['at_current_h']['false_alarms_per_hour']}/h"
    )
    video = point["video"]
    print(
        f"  video threshold above every held-out real recording: {video['threshold']} "
        f"(highest real {video['highest_real_score']}; "
        f"{video['fakes_at_or_above']}/{video['fakes']} fakes at or above)"
    )

    model = args.model.relative_to(REPO) if args.model.is_relative_to(REPO) else args.model
    print()
    write_results(
        args.out,
        "accuracy",
        {"model": str(model), "runs": results, "operating_point": point},
        indent=1,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
