"""`swapwatch eval`: measure a detector (or the MesoNet baseline) on a labelled list."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from swapwatch.cli.common import (
    add_decision_options,
    add_quality_options,
    add_verdict_options,
    non_negative_int,
    positive_float,
    positive_int,
    quality_from_args,
)
from swapwatch.datasets.lists import MediaItem, read_list, split_by_group
from swapwatch.engines import DEFAULT_ENGINE, Engine
from swapwatch.errors import ConfigError, SourceUnreadable
from swapwatch.evaluation.operating_point import BUDGET_RANGE, OperatingPointConfig
from swapwatch.fusion import DecisionConfig, Policy

SPLITS = ("all", "validation", "train")
BASELINES = ("mesonet",)


def baseline_spec(text: str) -> tuple[str, Path]:
    kind, sep, path = text.partition(":")
    if not sep or kind not in BASELINES or not path:
        raise argparse.ArgumentTypeError(
            f"expected {' or '.join(f'{b}:FILE' for b in BASELINES)}, got {text!r}"
        )
    return kind, Path(path)


def fraction(text: str) -> float:
    value = positive_float(text)
    if value >= 1:
        raise argparse.ArgumentTypeError(f"must be below 1: {text}")
    return value


def false_alarm_budget(text: str) -> float:
    value = positive_float(text)
    low, high = BUDGET_RANGE
    if value < low:
        raise argparse.ArgumentTypeError(
            f"must be at least {low:g}: below one false alarm in {1 / low:g} stream-hours, a few "
            f"recordings resampled cannot tell: {text}"
        )
    if value > high:
        raise argparse.ArgumentTypeError(f"must be at most {high:g}: {text}")
    return value


def add_eval_parser(commands: Any) -> None:
    """Register `eval` on the CLI's sub-command parsers."""
    parser: argparse.ArgumentParser = commands.add_parser(
        "eval",
        help="measure a detector on a labelled list: AUC, EER, APCER/BPCER, false alarms",
        description="Run the detector over every item of a labelled list, as `scan` would, and "
        "report video- and frame-level AUC, EER, APCER/BPCER at the model's threshold and at "
        "fixed operating points (ISO/IEC 30107-3 terms), and false alarms on real recordings, "
        "per family and pooled, with group-bootstrap confidence intervals.",
    )
    parser.add_argument(
        "list", type=Path, metavar="LIST.csv", help="CSV with file,label[,group,family,crop]"
    )
    parser.add_argument(
        "--root", type=Path, default=None, help="paths in the list are relative to this"
    )

    model = parser.add_argument_group("model")
    which = model.add_mutually_exclusive_group()
    which.add_argument("--model", type=Path, help="detector ONNX file (default: the bundled one)")
    which.add_argument(
        "--baseline",
        type=baseline_spec,
        metavar="mesonet:FILE.h5",
        help="evaluate a published baseline instead: MesoNet Keras weights (Meso4 or "
        "MesoInception4), fed swapwatch's face crops",
    )
    model.add_argument(
        "--engine",
        default=DEFAULT_ENGINE,
        metavar="NAME",
        help="inference engine: onnxruntime (default) or one a plugin adds (swapwatch.engines)",
    )
    model.add_argument("--device", choices=("auto", "cpu", "gpu"), default="auto")
    model.add_argument("--threads", type=positive_int, default=1, help="CPU threads (default 1)")

    data = parser.add_argument_group("items")
    data.add_argument(
        "--split",
        choices=SPLITS,
        default="all",
        help="validation: only the groups `swapwatch train` holds out; train: the others",
    )
    data.add_argument(
        "--validation-fraction",
        type=fraction,
        default=0.25,
        help="share of each family's groups held out, as given to `train` (default 0.25)",
    )
    data.add_argument(
        "--family",
        action="append",
        default=[],
        metavar="F",
        help="only this family (repeat for several)",
    )
    data.add_argument("--limit", type=positive_int, default=None, help="only the first N items")

    analysis = parser.add_argument_group("analysis")
    analysis.add_argument(
        "--rate", type=positive_float, default=15.0, help="frames per second analysed (default 15)"
    )
    analysis.add_argument(
        "--every", type=positive_int, default=None, metavar="N", help="analyse every Nth frame"
    )
    analysis.add_argument(
        "--max-seconds", type=positive_float, default=None, help="of each recording"
    )
    analysis.add_argument(
        "--reencode-kbps",
        type=positive_int,
        default=None,
        metavar="N",
        help="re-encode each recording to H.264 at N kbps first (robustness to live bitrates)",
    )
    add_decision_options(analysis)
    add_verdict_options(analysis)
    add_quality_options(analysis)

    point = parser.add_argument_group(
        "operating point",
        "From the list's real recordings: the smallest --cusum-h within a false-alarm budget "
        "(their face tracks resampled into many stream-hours) and a --video-threshold above "
        "every real recording. Measure your own real traffic, as `scan` and `serve` will see it.",
    )
    point.add_argument(
        "--false-alarms-per-hour",
        type=false_alarm_budget,
        default=OperatingPointConfig().false_alarms_per_hour,
        metavar="RATE",
        help="false alarms per stream-hour of one face you accept (default %(default)g: one in "
        "ten hours)",
    )

    output = parser.add_argument_group("output")
    output.add_argument(
        "--bootstrap",
        type=non_negative_int,
        default=1000,
        metavar="B",
        help="group-bootstrap resamples for the 95%% intervals (default 1000; 0: none)",
    )
    output.add_argument(
        "--seed", type=non_negative_int, default=0, help="of the bootstrap (default 0)"
    )
    output.add_argument("--json", action="store_true", help="print the report as JSON")
    output.add_argument(
        "--out", type=Path, metavar="FILE.json", help="also write the JSON report (with every item)"
    )
    output.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="a line per item on stderr (default on)",
    )
    parser.add_argument("-v", "--verbose", action="count", default=0)
    parser.set_defaults(handler=cmd_eval)


def select_items(args: argparse.Namespace) -> list[MediaItem]:
    items = read_list(args.list, args.root)
    if args.split != "all":
        train, validation = split_by_group(items, args.validation_fraction)
        items = validation if args.split == "validation" else train
    if args.family:
        known = {i.family for i in items}
        unknown = sorted(set(args.family) - known)
        if unknown:
            raise ConfigError(
                f"no family {', '.join(unknown)} in the {args.split} items of {args.list} "
                f"(families: {', '.join(sorted(known)) or 'none'})"
            )
        items = [i for i in items if i.family in args.family]
    if args.limit is not None:
        items = items[: args.limit]
    if not items:
        raise ConfigError(f"no items to evaluate in the {args.split} split of {args.list}")
    return items


def cmd_eval(args: argparse.Namespace) -> int:
    from swapwatch.cli.common import verdict_settings
    from swapwatch.evaluation.report import ReportConfig, build_report, render_text
    from swapwatch.evaluation.runner import EvalConfig, ItemResult, ItemStatus, evaluate

    items = select_items(args)
    if args.out is not None and not args.out.parent.is_dir():
        raise ConfigError(f"cannot write {args.out}: no such folder {args.out.parent}")
    engine = _engine(args)  # its operating point is the default verdict rule
    settings = verdict_settings(args, engine.info)
    try:
        config = EvalConfig(
            rate=args.rate,
            every=args.every,
            max_seconds=args.max_seconds,
            decision=DecisionConfig(
                h=settings.cusum_h, min_frames=args.min_frames, policy=Policy(args.policy)
            ),
            quality=quality_from_args(args),
            reencode_kbps=args.reencode_kbps,
            video_threshold=settings.video_threshold,
            picture_threshold=settings.picture_threshold,
            quiet=args.verbose < 2,
        )
    except ValueError as exc:
        engine.close()
        raise ConfigError(str(exc)) from exc

    def on_item(done: int, total: int, result: ItemResult) -> None:
        score = "n/a" if result.score is None else f"{result.score:.3f}"
        verdict = (
            result.verdict.value
            if result.status.value == "scored" and result.verdict
            else result.status.value
        )
        extra = f", {result.alarms_raised} alarm(s)" if result.alarms_raised else ""
        if result.error:
            extra += f": {result.error}"
        print(
            f"[{done}/{total}] {result.item.name} ({result.item.label.value}, "
            f"{result.item.family}): {verdict} score {score}, {result.faces_scored} faces"
            f"{extra} in {result.elapsed:.1f}s",
            file=sys.stderr,
            flush=True,
        )

    run = evaluate(items, lambda: engine, config, on_item if args.progress else None)
    context = {
        "list": str(args.list),
        "split": args.split,
        "families_selected": args.family or None,
        "limit": args.limit,
        "baseline": args.baseline[0] if args.baseline else None,
    }
    report_config = ReportConfig(
        resamples=args.bootstrap,
        seed=args.seed,
        operating_point=OperatingPointConfig(false_alarms_per_hour=args.false_alarms_per_hour),
    )
    report = build_report(run, report_config, context=context)
    if args.json:
        print(json.dumps(report, indent=1))
    else:
        print(render_text(report))
    if args.out is not None:
        try:
            args.out.write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"cannot write {args.out}: {exc.strerror or exc}") from exc
    if all(r.status is ItemStatus.ERROR for r in run.results):
        raise SourceUnreadable(f"none of the {len(run.results)} items could be read")
    return 0


def _engine(args: argparse.Namespace) -> Engine:
    if args.baseline is not None:
        from swapwatch.evaluation.mesonet import MesoNetEngine

        _, path = args.baseline
        engine = MesoNetEngine(path)
        engine.warmup()
        return engine
    from swapwatch.cli.common import engine_from_args

    return engine_from_args(args)
