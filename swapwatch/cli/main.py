"""Entry point of the `swapwatch` command."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from swapwatch.cli.common import (
    add_analysis_options,
    add_verdict_options,
    analyzer_from_args,
    close_analyzer,
    engine_from_args,
    source_from_args,
    verdict_settings,
)
from swapwatch.cli.progress import Progress
from swapwatch.errors import EndOfStream, SwapwatchError
from swapwatch.native_logs import keep_native_stderr_quiet
from swapwatch.stream.verdict import model_description
from swapwatch.version import __version__

INTERRUPTED = 130  # exit code after SIGINT or SIGTERM, as a shell reports Ctrl-C


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="swapwatch",
        description="Detect face swaps and other face deepfakes in video files and live streams.",
    )
    parser.add_argument("--version", action="version", version=f"swapwatch {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    scan = commands.add_parser(
        "scan",
        help="analyse a file or stream to its end and give a verdict",
        description="Analyse a video file or stream URL to its end (or --max-seconds) and print "
        "a verdict: fake, real or inconclusive.",
    )
    scan.add_argument("source", metavar="PATH_OR_URL")
    scan.add_argument("--json", action="store_true", help="print one JSON object")
    scan.add_argument(
        "--report",
        type=Path,
        metavar="FILE.html",
        help="write an HTML report: score timeline per face and thumbnails",
    )
    scan.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="progress on stderr (default: when stderr is a terminal)",
    )
    add_analysis_options(scan)
    add_verdict_options(scan.add_argument_group("verdict"))
    from swapwatch.cli.scan_events import add_event_options

    add_event_options(scan)
    scan.set_defaults(handler=cmd_scan)

    watch = commands.add_parser(
        "watch",
        help="live terminal view of a stream",
        description="Show a live, refreshing view of a stream: fps, faces, per-face score, alarms. "
        "A file is played at its own speed, as if it were live.",
    )
    watch.add_argument("source", metavar="URL_OR_PATH")
    add_analysis_options(watch)
    add_event_options(watch)
    watch.set_defaults(handler=cmd_watch)

    from swapwatch.cli.evaluate import add_eval_parser

    add_eval_parser(commands)

    from swapwatch.cli.training import add_export_parser, add_set_point_parser, add_train_parser

    add_train_parser(commands)
    add_export_parser(commands)
    add_set_point_parser(commands)

    from swapwatch.cli.serve import add_serve_parser

    add_serve_parser(commands)

    from swapwatch.cli.events import add_events_parser

    add_events_parser(commands)
    return parser


def cmd_scan(args: argparse.Namespace) -> int:
    from swapwatch.cli.interrupt import sigterm_as_interrupt

    with sigterm_as_interrupt():  # SIGTERM stops a scan as Ctrl-C does, never silently
        return _scan(args)


def _scan(args: argparse.Namespace) -> int:
    from swapwatch.cli.interrupt import (
        Interrupted,
        StoppableSource,
        hard_stop_from_args,
        run_until_signalled,
    )
    from swapwatch.stream.scan import scan

    source = source_from_args(args.source, args)
    if args.report is not None:
        from swapwatch.cli.report import check_report_path

        check_report_path(args.report)  # before a long scan, not after it
    engine = engine_from_args(args)
    settings = verdict_settings(args, engine.info)
    analyzer = analyzer_from_args(args, engine)
    show_progress = sys.stderr.isatty() if args.progress is None else args.progress
    progress = Progress(sys.stderr) if show_progress else None
    from swapwatch.cli.scan_events import events_from_args, events_stream_id
    from swapwatch.stream.scan import ScanEventSettings, ScanResult
    from swapwatch.stream.source import stream_name

    stoppable = StoppableSource(source)

    def end_detail(result: ScanResult | None) -> dict[str, Any]:
        """What a scan's `stream.ended` says: why it ended, and the verdict when there is one."""
        reason = "end" if stoppable.stopped_by is None else "interrupted"
        detail: dict[str, Any] = {"reason": reason}
        if result is not None:
            summary = result.to_json()
            detail |= {k: summary[k] for k in ("verdict", "score", "frames", "media_seconds")}
        return detail

    events = events_from_args(args)
    try:
        result = asyncio.run(
            run_until_signalled(
                stoppable,
                scan(
                    stoppable,
                    analyzer,
                    settings.video_config(analyzer.decision_config.min_frames),
                    keep_thumbnails=args.report is not None,
                    on_result=(lambda r: progress.update(r, source)) if progress else None,
                    model_description=model_description(engine, settings),
                    events=ScanEventSettings(
                        events,
                        events_stream_id(args),
                        {"source": stream_name(args.source)},
                        end_detail,
                    ),
                ),
                stop_began=hard_stop_from_args(args),
            )
        )
        partial = stoppable.stopped_by is not None
        summary = result.to_json() | {"partial": partial}
    except Interrupted:
        raise KeyboardInterrupt from None  # nothing was summed up: ends as an interrupt before
    except EndOfStream:
        if stoppable.stopped_by is None:
            raise
        raise KeyboardInterrupt from None  # stopped before the source opened
    finally:
        events.close()  # drains pending deliveries, also after a signal
        close_analyzer(analyzer, args)
        if progress:
            progress.done()
    if args.report is not None:
        from swapwatch.cli.report import write_report

        write_report(result, args.report)
    print(json.dumps(summary, indent=2) if args.json else _summary(summary))
    if partial:
        assert stoppable.stopped_by is not None
        print(
            f"swapwatch: interrupted by {stoppable.stopped_by.name}: the result covers "
            f"{summary['media_seconds']}s of media",
            file=sys.stderr,
        )
        return INTERRUPTED
    return 0


def _summary(data: dict[str, Any]) -> str:
    """The human-readable form of the `scan --json` object."""
    score = data["score"]
    shown = "n/a" if score is None else f"{score:.3f}"
    lines = [f"{data['source']}: {str(data['verdict']).upper()} (score {shown})"]
    for track in data["tracks"]:
        t_score = "n/a" if track["score"] is None else f"{track['score']:.3f}"
        skipped = ", ".join(f"{k} {v}" for k, v in track["frames_skipped"].items()) or "none"
        lines.append(
            f"  face {track['track_id']}: score {t_score}, {track['frames_scored']} frames scored, "
            f"skipped: {skipped}{', ALARM' if track['alarm'] else ''}"
        )
    for alert in data["alerts"]:
        lines.append(f"  {alert['type']} face {alert['track_id']} at {alert['time']:.2f}s")
    frames = data["frames"]
    lines.append(
        f"  frames: {frames['decoded']} decoded, {frames['analysed']} analysed, "
        f"{frames['faces_scored']} faces scored in {data['elapsed_seconds']:.1f}s"
    )
    if data.get("partial"):
        lines.append(f"  partial: stopped after {data['media_seconds']:.2f}s of media")
    return "\n".join(lines)


def cmd_watch(args: argparse.Namespace) -> int:
    from swapwatch.cli.watch import watch

    return watch(args)


def configure_logging(verbosity: int) -> None:
    level = logging.WARNING if verbosity == 0 else logging.INFO if verbosity == 1 else logging.DEBUG
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # MediaPipe and LiteRT log from C++ through glog and TensorFlow's logger.
    if verbosity < 2:
        os.environ.setdefault("GLOG_minloglevel", "2")
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)  # recorded by `train`
    # The process's own command line, not a caller's `main([...])`: only then may a stop that
    # overruns end the process (cli.hard_stop), and native stderr be quieted.
    args.owns_process = argv is None
    if args.owns_process and args.verbose < 2:
        keep_native_stderr_quiet()
    configure_logging(args.verbose)
    try:
        return int(args.handler(args))
    except SwapwatchError as exc:
        print(f"swapwatch: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("swapwatch: interrupted", file=sys.stderr)
        return INTERRUPTED
