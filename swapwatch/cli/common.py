"""Options shared by the analysis commands, and building the pipeline from them."""

from __future__ import annotations

import argparse
import logging
import math
import sys
from pathlib import Path
from typing import NoReturn

from swapwatch.engines import DEFAULT_ENGINE, Engine, load_detector
from swapwatch.engines.base import ModelInfo
from swapwatch.errors import ConfigError
from swapwatch.faces.quality import QualityConfig, warn_if_turn_looks_like_a_ratio
from swapwatch.fusion import DecisionConfig, Policy
from swapwatch.models import resolve_detector
from swapwatch.stream.assembly import AnalysisSettings, build_analyzer
from swapwatch.stream.assembly import close_analyzer as close_stream_analyzer
from swapwatch.stream.pipeline import StreamAnalyzer
from swapwatch.stream.source import AvSource, SourceOptions
from swapwatch.stream.verdict import DEFAULT_DECISION, DEFAULT_VIDEO, VerdictSettings
from swapwatch.stream.verdict import verdict_settings as resolve_verdict_settings
from swapwatch.timing import StageTimer

DEFAULT_QUALITY = QualityConfig()

log = logging.getLogger(__name__)


def positive_float(text: str) -> float:
    value = _number(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be positive: {text}")
    return value


def open_probability(text: str) -> float:
    value = _number(text)
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"must be strictly between 0 and 1: {text}")
    return value


def non_negative_float(text: str) -> float:
    value = _number(text)
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"must not be negative: {text}")
    return value


def turn_degrees(text: str) -> float:
    value = _number(text)
    if not 0 < value <= 90:
        raise argparse.ArgumentTypeError(f"must be above 0 and at most 90 degrees: {text}")
    warn_if_turn_looks_like_a_ratio(value, log)
    return value


def replaced_max_yaw(text: str) -> NoReturn:
    raise argparse.ArgumentTypeError(
        "--max-yaw (the nose's offset between the cheeks, 0-1) was replaced by --max-turn "
        "DEGREES: 0.85 was a turn of about 30"
    )


def luma(text: str) -> float:
    value = _number(text)
    if not 0 <= value <= 255:
        raise argparse.ArgumentTypeError(f"must be within 0-255: {text}")
    return value


def _number(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"not a finite number: {text!r}")
    return value


def _integer(text: str, minimum: int, rule: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < minimum:
        raise argparse.ArgumentTypeError(f"{rule}: {text}")
    return value


def positive_int(text: str) -> int:
    return _integer(text, 1, "must be at least 1")


def non_negative_int(text: str) -> int:
    return _integer(text, 0, "must not be negative")


def add_analysis_options(parser: argparse.ArgumentParser) -> None:
    model = parser.add_argument_group("model")
    model.add_argument("--model", type=Path, help="detector ONNX file (default: the bundled one)")
    model.add_argument(
        "--engine",
        default=DEFAULT_ENGINE,
        metavar="NAME",
        help="inference engine: onnxruntime (default) or one a plugin adds (swapwatch.engines)",
    )
    model.add_argument(
        "--device",
        choices=("auto", "cpu", "gpu"),
        default="auto",
        help="where the detector runs (default: a GPU when one is usable)",
    )
    model.add_argument(
        "--threads",
        type=positive_int,
        default=1,
        help="CPU threads for the detector (default 1; decoding uses another)",
    )
    model.add_argument(
        "--signal",
        action="append",
        default=[],
        metavar="NAME[:WEIGHT]",
        help="add an extra detection signal from a plugin (swapwatch.signals); its calibrated "
        "logit, times WEIGHT (default 1), joins the detector's evidence (repeatable)",
    )

    source = parser.add_argument_group("source")
    source.add_argument(
        "--rate",
        type=positive_float,
        default=15.0,
        help="frames per second to analyse (files: sets the stride; default 15)",
    )
    source.add_argument(
        "--every",
        type=positive_int,
        default=None,
        metavar="N",
        help="files: analyse every Nth frame instead (1 = every frame)",
    )
    source.add_argument(
        "--max-seconds", type=positive_float, default=None, help="stop after this much media time"
    )
    source.add_argument(
        "--crop",
        type=crop_fractions,
        default=None,
        metavar="L,T,R,B",
        help="analyse only this part of each frame, as fractions (e.g. 0.5,0,1,1: right half)",
    )
    source.add_argument(
        "--listen",
        action="store_true",
        help="wait for a publisher to push to the URL (rtmp://, srt://, tcp://)",
    )
    source.add_argument(
        "--hwaccel",
        choices=("cuda",),
        default=None,
        help="try hardware decoding; falls back to software",
    )
    source.add_argument(
        "--timeout",
        type=positive_float,
        default=15.0,
        help="seconds to wait when opening or reading a network source",
    )

    add_decision_options(parser.add_argument_group("decision"))
    add_quality_options(parser.add_argument_group("quality gate"))
    parser.add_argument("-v", "--verbose", action="count", default=0)


def add_decision_options(rule: argparse._ArgumentGroup) -> None:
    """The decision rule's options, shared by the commands that analyse."""
    rule.add_argument(
        "--policy",
        choices=[p.value for p in Policy],
        default=Policy.MONITORING.value,
        help="kyc: alarms stand until reviewed; monitoring: alarms clear",
    )
    rule.add_argument(
        "--cusum-h",
        type=positive_float,
        default=None,
        help="alarm threshold of the CUSUM (default: the model's operating point, else "
        f"{DEFAULT_DECISION.h:g})",
    )
    rule.add_argument(
        "--min-frames",
        type=positive_int,
        default=DEFAULT_DECISION.min_frames,
        help="scored frames a face needs before it may alarm",
    )


def add_verdict_options(verdict: argparse._ArgumentGroup) -> None:
    """The video-level verdict's threshold, for the commands that give one."""
    verdict.add_argument(
        "--video-threshold",
        type=open_probability,
        default=None,
        metavar="P",
        help="score at or above which the verdict is fake, for recordings and pictures alike "
        "(an alarm makes it fake anyway); `eval` recommends one from real recordings (default: "
        "the model's operating point, which has one for each, else "
        f"{DEFAULT_VIDEO.threshold:g})",
    )


def verdict_settings(args: argparse.Namespace, info: ModelInfo) -> VerdictSettings:
    """An option wins, then the model's operating point, then the built-in default."""
    return resolve_verdict_settings(
        info, getattr(args, "video_threshold", None), getattr(args, "cusum_h", None)
    )


def add_quality_options(gate: argparse._ArgumentGroup) -> None:
    """The quality gate's options: faces failing one are not scored, and say why."""
    gate.add_argument(
        "--min-face",
        type=positive_float,
        default=DEFAULT_QUALITY.min_face_px,
        metavar="PX",
        help="smallest face side in pixels that is scored "
        f"(default {DEFAULT_QUALITY.min_face_px:g})",
    )
    gate.add_argument(
        "--max-turn",
        type=turn_degrees,
        default=DEFAULT_QUALITY.max_turn,
        metavar="DEGREES",
        help="largest head turn scored, degrees read from the face mesh: 0 frontal, 90 profile "
        f"(default {DEFAULT_QUALITY.max_turn:g}; the model trained on faces turned up to about "
        "30)",
    )
    gate.add_argument("--max-yaw", type=replaced_max_yaw, help=argparse.SUPPRESS)
    gate.add_argument(
        "--min-brightness",
        type=luma,
        default=DEFAULT_QUALITY.min_brightness,
        metavar="LUMA",
        help="darkest face scored: mean luma 0-255 of the face centre "
        f"(default {DEFAULT_QUALITY.min_brightness:g})",
    )
    gate.add_argument(
        "--min-sharpness",
        type=non_negative_float,
        default=DEFAULT_QUALITY.min_sharpness,
        metavar="VAR",
        help="blurriest face scored: variance of the Laplacian of the face centre at 112 px "
        f"(default {DEFAULT_QUALITY.min_sharpness:g}; 0 scores every blur)",
    )


def quality_from_args(args: argparse.Namespace) -> QualityConfig:
    try:
        return QualityConfig(
            min_face_px=args.min_face,
            max_turn=args.max_turn,
            min_brightness=args.min_brightness,
            min_sharpness=args.min_sharpness,
        )
    except ValueError as exc:
        raise ConfigError(str(exc)) from exc


def crop_fractions(text: str) -> tuple[float, float, float, float]:
    try:
        left, top, right, bottom = (float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected four fractions L,T,R,B, got {text!r}") from None
    if not (0 <= left < right <= 1 and 0 <= top < bottom <= 1):
        raise argparse.ArgumentTypeError(f"crop {text!r} is not inside 0-1 with L<R and T<B")
    return left, top, right, bottom


def source_from_args(
    url: str, args: argparse.Namespace, live: bool | None = None, pace: bool = False
) -> AvSource:
    options = SourceOptions(
        live=live,
        stride=args.every or 0,
        max_rate=None if args.every else args.rate,
        hwaccel=args.hwaccel,
        listen=args.listen,
        open_timeout=args.timeout,
        read_timeout=args.timeout,
        max_seconds=args.max_seconds,
        pace=pace,
        crop=args.crop,
    )
    return AvSource(url, options)


def engine_from_args(args: argparse.Namespace) -> Engine:
    path = resolve_detector(args.model, args.device)
    engine = load_detector(path, args.engine, device=args.device, threads=args.threads)
    if not engine.info.trained:
        print(
            f"swapwatch: warning: {path.name} is not a trained detector; its scores mean nothing",
            file=sys.stderr,
        )
    return engine


def analyzer_from_args(
    args: argparse.Namespace, engine: Engine, timer: StageTimer | None = None
) -> StreamAnalyzer:
    try:
        decision = DecisionConfig(
            h=verdict_settings(args, engine.info).cusum_h,
            min_frames=args.min_frames,
            policy=Policy(args.policy),
        )
    except ValueError as exc:
        raise ConfigError(str(exc)) from exc
    settings = AnalysisSettings(
        decision=decision,
        quality=quality_from_args(args),
        signals=tuple(args.signal),
        quiet=args.verbose < 2,
        warmup=True,
    )
    return build_analyzer(engine, settings, timer)


def close_analyzer(analyzer: StreamAnalyzer, args: argparse.Namespace) -> None:
    close_stream_analyzer(analyzer, quiet=args.verbose < 2)
