"""`swapwatch train`: fine-tune the detector on real faces, their self-blends and recorded swaps.

Every `checkpoint_every` steps the whole state (weights, optimiser, schedule, step, random
generator) goes to `<out>/last.pt`, so a killed run resumes where it stopped with `--resume`.
The run's command, data and validation figures are written to `<out>/training.json`.
"""

from __future__ import annotations

import contextlib
import copy
import json
import logging
import math
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from swapwatch.datasets.crops import CROP_SIZE, CropCache, centre_window
from swapwatch.datasets.lists import MediaItem
from swapwatch.datasets.splits import SPLIT_SEED, FakeKind, TrainingSplit, fake_kind
from swapwatch.engines.base import shrunk
from swapwatch.errors import ConfigError
from swapwatch.evaluation.metrics import roc_auc
from swapwatch.training.augment import AugmentConfig
from swapwatch.training.backbones import DEFAULT_BACKBONE
from swapwatch.training.boundary import TAPPED_STAGE, BoundaryTask
from swapwatch.training.checkpoint import load_weights, provenance, read_checkpoint
from swapwatch.training.dataset import BlendBatch, CropPool, PairConfig, PairSampler, build_pool
from swapwatch.training.distill import DistillConfig, Teacher, distillation_loss, load_teacher
from swapwatch.training.model import INPUT_MEAN, INPUT_STD, SwapDetector, load_imagenet
from swapwatch.training.sam import SharpnessAware, batch_norm_statistics_kept
from swapwatch.training.sphere import SphereLoss, captured_unit_features

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class TrainConfig:
    out: Path
    steps: int = 1500
    pairs_per_batch: int = 16  # a batch holds this many reals and as many fakes
    lr: float = 3e-4
    weight_decay: float = 1e-4
    warmup_steps: int = 50
    validation_fraction: float = 0.25
    split_seed: str = SPLIT_SEED
    split_scheme: str = "groups-v2"  # see swapwatch.datasets.splits.TrainingSplit
    leave_out: str | None = None  # a fake kind never trained on (leave-one-kind-out runs)
    validation_pairs: int = 256  # self-blend pairs drawn once from validation reals
    validate_every: int = 100
    checkpoint_every: int = 25
    seed: int = 0
    threads: int = 0  # 0: torch decides
    device: str = "cpu"
    imagenet: bool = True
    # Start from this checkpoint's exported (EMA) weights instead of ImageNet's: fine-tuning a
    # trained detector on more data. A fresh optimiser and schedule; `--resume` still wins.
    init: Path | None = None
    recorded_pair_share: float = 0.3
    # The sharper crop of each recorded pair softened to its partner's sharpness
    # (swapwatch.training.sharpness), so that softness cannot stand for "fake".
    match_sharpness: bool = False
    # Likewise each self-blend and its real face (the blend softens or sharpens the face).
    match_blend_sharpness: bool = False
    ema_decay: float = 0.995  # validated, exported weights are this running mean of the weights
    # The network's backbone (swapwatch.training.backbones.BACKBONES): Lite0, or the deeper Lite1.
    backbone: str = DEFAULT_BACKBONE
    # The stem and this many of the backbone's first stages keep their initial weights and
    # batch-norm statistics (a recipe option: the early ImageNet layers frozen).
    frozen_stages: int = 0
    # The network's input side: crops (cut at CROP_SIZE) are shrunk to it by area averaging,
    # as the engine does at inference (a cheaper detector; benchmarks/README).
    input_size: int = CROP_SIZE
    # Sharpness-aware minimisation's radius (0: off): each step's gradient is taken at weights
    # moved this far uphill (swapwatch.training.sam), at twice the cost of a step.
    sam_rho: float = 0.0
    # Knowledge distillation from a trained run (swapwatch.training.distill): its last.pt, the
    # teacher's share of the loss and the temperature both logits are softened by.
    teacher: Path | None = None
    distill_weight: float = 0.5
    distill_temperature: float = 2.0
    # The blend-boundary head's share of the loss (0: off; swapwatch.training.boundary): a
    # training-only head taught where each self-blend's edge runs.
    boundary_weight: float = 0.0
    # The pooled features on the unit sphere before the classifier, and the weights of the two
    # terms that shape them there (swapwatch.training.sphere; 0: off; both need the first).
    unit_features: bool = False
    # A batch norm over the pooled features before the sphere, which spreads them over it
    # (swapwatch.training.model.UnitLength; needs the above).
    feature_batch_norm: bool = False
    uniformity_weight: float = 0.0
    alignment_weight: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)  # recorded as given: the command line


def to_tensor(images: np.ndarray, device: str) -> torch.Tensor:
    """uint8 NHWC -> normalised float NCHW, as `engines.base.normalise` does at inference."""
    x = torch.from_numpy(images).to(device).permute(0, 3, 1, 2).float().div_(255.0)
    mean = torch.tensor(INPUT_MEAN, device=device).view(1, 3, 1, 1)
    std = torch.tensor(INPUT_STD, device=device).view(1, 3, 1, 1)
    return ((x - mean) / std).contiguous()


def training_batch(images: np.ndarray, size: int, device: str) -> torch.Tensor:
    """A training step's input: `to_tensor` of the crops shrunk to `size`, laid out
    channels-last like the model it trains. The same values, but the depthwise convolutions
    train 1.5 times as fast on this CPU in that layout (benchmarks/README, `train_step.py`).
    Export, calibration and batch-norm refits keep the channels-first layout they always had."""
    x = to_tensor(shrunk(images, size), device)
    return x.contiguous(memory_format=torch.channels_last)


def learning_rate(step: int, config: TrainConfig) -> float:
    if step < config.warmup_steps:
        return config.lr * (step + 1) / config.warmup_steps
    progress = (step - config.warmup_steps) / max(1, config.steps - config.warmup_steps)
    return config.lr * 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


@dataclass(slots=True)
class ValidationSet:
    """Fixed crops to follow training by: self-blends of held-out reals, held-out recorded pairs
    (frame-matched halves of live-swap recordings), and, per fake kind, held-out recorded fakes
    against one group-balanced sample of held-out reals."""

    blends: tuple[np.ndarray, np.ndarray]
    recorded: tuple[np.ndarray, np.ndarray] | None
    reals: np.ndarray | None = None  # (R, S, S, 3) the reals the kinds are ranked against
    kinds: dict[str, np.ndarray] = field(default_factory=dict)  # kind -> (F, S, S, 3) fakes

    @staticmethod
    def build(pool: CropPool, pairs: int, seed: int) -> ValidationSet:
        rng = np.random.default_rng(seed)
        sampler = PairSampler(pool, train=False, config=PairConfig(recorded_pair_share=0.0))
        blends = sampler.batch(pairs, rng)
        recorded = None
        if len(pool.pairs):
            chosen = pool.pairs[rng.permutation(len(pool.pairs))[:pairs]]
            images = np.concatenate(
                [centre_window(pool.crops[chosen[:, 0]]), centre_window(pool.crops[chosen[:, 1]])]
            )
            labels = np.concatenate([np.zeros(len(chosen)), np.ones(len(chosen))])
            recorded = (np.ascontiguousarray(images), labels.astype(np.float32))
        fakes_by_kind: dict[str, list[int]] = {}
        for index in np.flatnonzero(pool.fake):
            fakes_by_kind.setdefault(fake_kind(pool.family[index]).value, []).append(int(index))
        kinds = {}
        for kind, indices in sorted(fakes_by_kind.items()):
            picked = rng.permutation(np.asarray(indices))[: pairs // 2]
            kinds[kind] = np.ascontiguousarray(centre_window(pool.crops[np.sort(picked)]))
        reals = None
        if kinds:
            drawn = sorted({sampler.real_index(rng) for _ in range(pairs)})
            reals = np.ascontiguousarray(centre_window(pool.crops[drawn]))
        return ValidationSet(blends, recorded, reals, kinds)


def selection_figure(figures: dict[str, float | None]) -> float:
    """What chooses the checkpoint (fixed before training, benchmarks/README.md): the mean
    over fake kinds of the held-out recorded fakes' AUC against held-out reals; the self-blend
    AUC where the validation groups hold no recorded fake."""
    per_kind = [v for k, v in figures.items() if k.startswith("kind_") and v is not None]
    if per_kind:
        return float(np.mean(per_kind))
    return float(figures.get("blend_auc") or 0.0)


@torch.no_grad()
def predict(model: SwapDetector, images: np.ndarray, device: str, batch: int = 64) -> np.ndarray:
    model.eval()
    images = shrunk(images, model.input_size)
    out = [
        model(to_tensor(images[i : i + batch], device)).float().cpu().numpy()
        for i in range(0, len(images), batch)
    ]
    return np.concatenate(out) if out else np.zeros(0, np.float32)


def evaluate(
    model: SwapDetector, validation: ValidationSet, device: str
) -> dict[str, float | None]:
    figures: dict[str, float | None] = {}
    for name, data in (("blend", validation.blends), ("recorded", validation.recorded)):
        if data is None:
            continue
        images, labels = data
        logits = predict(model, images, device)
        loss = F.binary_cross_entropy_with_logits(
            torch.from_numpy(logits), torch.from_numpy(labels)
        )
        figures[f"{name}_auc"] = roc_auc(logits, labels)
        figures[f"{name}_loss"] = float(loss)
    if validation.reals is not None and validation.kinds:
        real_logits = predict(model, validation.reals, device)
        for kind, fakes in validation.kinds.items():
            fake_logits = predict(model, fakes, device)
            scores = np.concatenate([real_logits, fake_logits])
            labels = np.r_[np.zeros(len(real_logits)), np.ones(len(fake_logits))]
            figures[f"kind_{kind}_auc"] = roc_auc(scores, labels)
    figures["selection"] = selection_figure(figures)
    return figures


def data_summary(train: list[MediaItem], validation: list[MediaItem]) -> dict[str, Any]:
    def count(items: list[MediaItem]) -> dict[str, Any]:
        families: dict[str, dict[str, int]] = {}
        for item in items:
            entry = families.setdefault(item.family, {"real": 0, "fake": 0})
            entry[item.label.value] += 1
        return {"items": len(items), "groups": len({i.group for i in items}), "families": families}

    return {
        "train": count(train),
        "validation": count(validation),
        "validation_groups": sorted({i.group for i in validation}),
    }


def train(items: list[MediaItem], config: TrainConfig, cache: CropCache, resume: bool) -> Path:
    """Run (or resume) training; returns the path of the final checkpoint."""
    if config.boundary_weight and config.frozen_stages >= TAPPED_STAGE:
        raise ConfigError(
            f"--boundary-weight reads stage {TAPPED_STAGE}, which --frozen-stages "
            f"{config.frozen_stages} keeps frozen: its head would teach the detector nothing"
        )
    if (config.uniformity_weight or config.alignment_weight) and not config.unit_features:
        raise ConfigError("--uniformity and --alignment shape unit features: add --unit-features")
    if config.feature_batch_norm and not config.unit_features:
        raise ConfigError("--feature-batch-norm comes before the sphere: add --unit-features")
    if config.threads:
        torch.set_num_threads(config.threads)
    torch.manual_seed(config.seed)
    model = SwapDetector(
        unit_features=config.unit_features,
        backbone=config.backbone,
        feature_batch_norm=config.feature_batch_norm,
    )
    last = config.out / "last.pt"
    state = read_checkpoint(last)[0] if (resume and last.is_file()) else None
    # Checked before the crops load, so that a bad checkpoint fails at once.
    split = split_of(config)
    if state is not None:
        init_record = state.get("init")
        _check_same_init(config.init, init_record)
        _check_same_split(split, state, "this run was started", "--resume")
        _check_same_option(state, "backbone", "--backbone", config.backbone, DEFAULT_BACKBONE)
        _check_same_option(state, "frozen_stages", "--frozen-stages", config.frozen_stages, 0)
        _check_same_option(
            state, "match_sharpness", "--match-sharpness", config.match_sharpness, False
        )
        _check_same_option(
            state,
            "match_blend_sharpness",
            "--match-blend-sharpness",
            config.match_blend_sharpness,
            False,
        )
        _check_same_option(state, "sam_rho", "--sam", config.sam_rho, 0.0)
        _check_same_option(state, "input_size", "--input-size", config.input_size, CROP_SIZE)
        _check_same_option(
            state, "boundary_weight", "--boundary-weight", config.boundary_weight, 0.0
        )
        _check_same_option(state, "unit_features", "--unit-features", config.unit_features, False)
        _check_same_option(
            state,
            "feature_batch_norm",
            "--feature-batch-norm",
            config.feature_batch_norm,
            False,
        )
        _check_same_option(
            state, "uniformity_weight", "--uniformity", config.uniformity_weight, 0.0
        )
        _check_same_option(state, "alignment_weight", "--alignment", config.alignment_weight, 0.0)
        _check_same_teacher(config, state.get("teacher"))
        if config.teacher is not None:
            _check_same_option(
                state, "distill_weight", "--distill-weight", config.distill_weight, 0.5
            )
            _check_same_option(
                state,
                "distill_temperature",
                "--distill-temperature",
                config.distill_temperature,
                2.0,
            )
    elif config.init is not None:
        init_record = load_initial_weights(model, config.init, split)
    else:
        init_record = None
        if config.imagenet:
            load_imagenet(model)
        elif config.frozen_stages:
            raise ConfigError(
                "--frozen-stages keeps the early layers' initial weights: it needs ImageNet's "
                "or --init's, not random ones"
            )
    teacher: Teacher | None = None
    if config.teacher is not None:
        teacher, teacher_state = load_teacher(config.teacher, config.device)
        # A teacher that trained on this run's validation or lockbox groups, or on the kind it
        # leaves out, would hand the student what it learned there.
        _check_same_split(
            split, teacher_state, f"the teacher {config.teacher} was trained", "--teacher"
        )
        recorded_teacher = state.get("teacher") if state is not None else None
        if recorded_teacher and recorded_teacher["sha256"] != teacher.record["sha256"]:
            raise ConfigError(
                f"the teacher {config.teacher} has changed since this run started (another "
                "file at the same path); --resume needs the one it started with"
            )
        log.info(
            "distilling from %s (step %s, %d px), weight %g, temperature %g",
            teacher.record["checkpoint"],
            teacher.record["step"],
            teacher.input_size,
            config.distill_weight,
            config.distill_temperature,
        )
    distill = DistillConfig(config.distill_weight, config.distill_temperature) if teacher else None
    config.out.mkdir(parents=True, exist_ok=True)
    train_items, validation_items = split.apply(items)
    log.info(
        "loading face crops of %d training and %d validation items",
        len(train_items),
        len(validation_items),
    )
    train_pool = build_pool(train_items, cache)
    validation_pool = build_pool(validation_items, cache) if validation_items else None
    log.info("training pool: %s", train_pool.summary())
    augment = AugmentConfig()
    sampler = PairSampler(
        train_pool,
        augment,
        config=PairConfig(
            recorded_pair_share=config.recorded_pair_share,
            match_sharpness=config.match_sharpness,
            match_blend_sharpness=config.match_blend_sharpness,
        ),
    )
    validation = (
        ValidationSet.build(validation_pool, config.validation_pairs, config.seed + 1)
        if validation_pool is not None and len(validation_pool.real_indices)
        else None
    )

    model.to(config.device)
    # See `training_batch`. torch's stubs lack the keyword Module.to takes at run time.
    model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    model.input_size = config.input_size
    model.freeze_early_stages(config.frozen_stages)
    ema = copy.deepcopy(model).eval()
    for parameter in ema.parameters():
        parameter.requires_grad_(False)
    boundary = (
        BoundaryTask(config.boundary_weight, model, config.device)
        if config.boundary_weight
        else None
    )
    sphere = (
        SphereLoss(config.uniformity_weight, config.alignment_weight)
        if config.uniformity_weight or config.alignment_weight
        else None
    )
    # What the optimiser trains: the detector and, with the boundary task, its head.
    trained = torch.nn.ModuleList([model] if boundary is None else [model, boundary.head])
    optimiser = torch.optim.AdamW(
        [p for p in trained.parameters() if p.requires_grad],
        lr=config.lr,
        weight_decay=config.weight_decay,
    )
    # Sharpness is the detector's: its step is not shrunk by the head's gradient.
    sam = SharpnessAware(list(model.parameters()), config.sam_rho) if config.sam_rho else None
    rng = np.random.default_rng(config.seed)
    step = 0
    history: list[dict[str, Any]] = []
    commands = [str(config.extra.get("command", " ".join(sys.argv)))]
    # The checkpoint chosen by `selection_figure` on the validation groups (a selection set:
    # the lockbox and leave-one-kind-out runs are the tests).
    best: dict[str, Any] = {"selection": -1.0, "step": None}
    if state is not None:
        model.load_state_dict(
            state["training_model"] if "training_model" in state else state["model"]
        )
        ema.load_state_dict(state["model"])
        if boundary is not None:
            boundary.head.load_state_dict(state["boundary_head"])
        optimiser.load_state_dict(state["optimiser"])
        rng.bit_generator.state = state["rng"]
        if "torch_rng" in state:  # dropout's draws go on where they stopped, not from the seed
            torch.set_rng_state(state["torch_rng"])
        step, history = state["step"], state["history"]
        if (config.out / "best.pt").is_file() and "best" in state:
            best.update(state["best"])
        commands = [*state.get("commands", []), *commands]
        log.info("resumed at step %d of %d", step, config.steps)

    def save(path: Path) -> None:
        partial = path.with_suffix(".partial")
        torch.save(
            {
                "model": ema.state_dict(),  # what export reads
                "training_model": model.state_dict(),
                "optimiser": optimiser.state_dict(),
                "rng": rng.bit_generator.state,
                "torch_rng": torch.get_rng_state(),
                "step": step,
                "history": history,
                "commands": commands,
                "config": _jsonable(asdict(config)),
                "best": dict(best),
                "init": init_record,
                "teacher": teacher.record if teacher else None,
                "boundary_head": boundary.head.state_dict() if boundary else None,
            },
            partial,
        )
        partial.replace(path)

    record = {
        "command": commands[0],
        "commands": commands,  # the first run, then each --resume
        "config": _jsonable(asdict(config)),
        "data": data_summary(train_items, validation_items),
        "init": init_record,
        "teacher": teacher.record if teacher else None,
        "train_pool": train_pool.summary(),
        "validation_pool": validation_pool.summary() if validation_pool else None,
        "torch": torch.__version__,
    }
    losses: list[float] = []
    # Each loss's weighted parts beside the logit's: the boundary head's, the sphere's terms'.
    parts: dict[str, list[float]] = {}
    started = time.monotonic()
    while step < config.steps:
        trained.train()
        for group in optimiser.param_groups:
            group["lr"] = learning_rate(step, config)
        blended: BlendBatch | None = None
        if boundary is not None:  # the same draws as `batch`, with the blends' masks
            blended = sampler.batch_with_masks(config.pairs_per_batch, rng)
            images, labels = blended.images, blended.labels
        else:
            images, labels = sampler.batch(config.pairs_per_batch, rng)
        x = training_batch(images, config.input_size, config.device)
        y = torch.from_numpy(labels).to(config.device)
        taught = (
            teacher.logits(training_batch(images, teacher.input_size, config.device))
            if teacher is not None
            else None
        )
        tasks = ExtraTasks(boundary, blended, sphere)
        loss, extra = batch_loss(model, x, y, taught, distill, tasks)
        optimiser.zero_grad(set_to_none=True)
        loss.backward()  # type: ignore[no-untyped-call]
        if sam is not None:
            sam.ascend()
            try:
                optimiser.zero_grad(set_to_none=True)
                with batch_norm_statistics_kept(trained):
                    moved, _ = batch_loss(model, x, y, taught, distill, tasks)
                moved.backward()  # type: ignore[no-untyped-call]
            finally:
                sam.descend()
        optimiser.step()
        update_ema(ema, model, config.ema_decay if step >= config.warmup_steps else 0.0)
        losses.append(loss.item())
        for name, value in extra.items():
            parts.setdefault(name, []).append(value.item())
        step += 1
        if step % 10 == 0:
            rate = 10 / max(1e-9, time.monotonic() - started)
            started = time.monotonic()
            part = ", ".join(
                f"{name} {np.mean(values[-10:]):.4f}" for name, values in parts.items()
            )
            part = f" ({part})" if part else ""
            log.info(
                "step %d/%d loss %.4f%s (%.2f steps/s)",
                step,
                config.steps,
                float(np.mean(losses[-10:])),
                part,
                rate,
            )
        done = step == config.steps
        if validation is not None and (step % config.validate_every == 0 or done):
            figures = evaluate(ema, validation, config.device)
            entry = {
                "step": step,
                "train_loss": float(np.mean(losses[-config.validate_every :])),
                **figures,
            }
            for name, values in parts.items():  # of the loss above, each weighted part
                entry[f"train_{name}_loss"] = float(np.mean(values[-config.validate_every :]))
            history.append(entry)
            log.info("validation %s", json.dumps(entry))
            if (figures.get("selection") or 0.0) > best["selection"]:
                best.update(selection=figures.get("selection") or 0.0, step=step)
                save(config.out / "best.pt")
        if step % config.checkpoint_every == 0 or done:
            save(last)
            record["history"] = history
            record["steps_done"] = step
            record["best_step"] = best["step"]
            (config.out / "training.json").write_text(json.dumps(record, indent=2) + "\n")
    return last


@dataclass(frozen=True)
class ExtraTasks:
    """What a batch's loss adds to the logit's: the boundary head's (with the batch's blend
    masks) and the unit sphere's terms; each None where off."""

    boundary: BoundaryTask | None = None
    blended: BlendBatch | None = None
    sphere: SphereLoss | None = None


def batch_loss(
    model: SwapDetector,
    x: torch.Tensor,
    labels: torch.Tensor,
    taught: torch.Tensor | None,
    distill: DistillConfig | None,
    tasks: ExtraTasks,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """A batch's whole loss at the model's current weights: `step_loss` plus each extra task's,
    and those extra parts by name ("boundary", "sphere")."""
    parts: dict[str, torch.Tensor] = {}
    with contextlib.ExitStack() as stack:
        seen = (
            stack.enter_context(captured_unit_features(model)) if tasks.sphere is not None else None
        )
        if tasks.boundary is not None and tasks.blended is not None:
            logits, parts["boundary"] = tasks.boundary.logits_and_loss(model, x, tasks.blended)
        else:
            logits = model(x)
    if seen is not None and tasks.sphere is not None:
        if len(seen) != 1:  # each path runs the detector once
            raise RuntimeError(f"the unit features were seen {len(seen)} times in one pass")
        parts["sphere"] = tasks.sphere(seen[0], labels)
    loss = step_loss(logits, labels, taught, distill)
    for part in parts.values():
        loss = loss + part
    return loss, parts


def step_loss(
    logits: torch.Tensor,
    labels: torch.Tensor,
    taught: torch.Tensor | None,
    distill: DistillConfig | None,
) -> torch.Tensor:
    """A batch's loss: against the labels, or with a teacher's logits (`taught`) distilled."""
    if taught is None or distill is None:
        return F.binary_cross_entropy_with_logits(logits, labels)
    return distillation_loss(logits, taught, labels, distill)


def split_of(config: TrainConfig) -> TrainingSplit:
    return TrainingSplit(
        scheme=config.split_scheme,
        validation_fraction=config.validation_fraction,
        seed=config.split_seed,
        leave_out=FakeKind(config.leave_out) if config.leave_out else None,
    )


def load_initial_weights(
    model: SwapDetector, checkpoint: Path, split: TrainingSplit | None = None
) -> dict[str, Any]:
    """Load a `swapwatch train` checkpoint's exported (EMA) weights; returns where they came
    from: the resolved path, its digest, and the run that made it. With `split`, refuses a
    checkpoint trained on another split: it may have learned this split's validation or
    lockbox groups, or the kind this run leaves out."""
    state, data = read_checkpoint(checkpoint)
    trained_on = str((state.get("config") or {}).get("backbone", DEFAULT_BACKBONE))
    if trained_on != model.backbone.name:
        raise ConfigError(
            f"{checkpoint} is a {trained_on} detector and this run trains {model.backbone.name}: "
            f"--init needs a run of the same backbone (add --backbone {trained_on})"
        )
    load_weights(model, state["model"], checkpoint)
    if split is not None:
        _check_same_split(split, state, f"{checkpoint} was trained", "--init")
    if bool((state.get("config") or {}).get("unit_features", False)) != model.unit_features:
        log.warning(
            "%s was trained %s its features on the unit sphere and this run %s: its classifier "
            "meets features of another scale, and its first logits are off",
            checkpoint,
            "with" if not model.unit_features else "without",
            "puts them there" if model.unit_features else "does not",
        )
    record = provenance(checkpoint, state, data)
    log.info("starting from %s (step %s)", record["checkpoint"], state.get("step"))
    return record


def _check_same_split(
    split: TrainingSplit, state: dict[str, Any], subject: str, option: str
) -> None:
    recorded = TrainingSplit.from_record(state.get("config") or {})
    if recorded != split:
        raise ConfigError(
            f"{subject} on another split ({_describe(recorded)}) than this one "
            f"({_describe(split)}); {option} would mix them: a group one of them trained on "
            "may be validation or lockbox in the other (use another --out, or the same split)"
        )


def _describe(split: TrainingSplit) -> str:
    left_out = f", without {split.leave_out.value}" if split.leave_out else ""
    return f"{split.scheme}, seed {split.seed}, validation {split.validation_fraction}{left_out}"


@torch.no_grad()
def _check_same_init(requested: Path | None, recorded: dict[str, Any] | None) -> None:
    """A resumed run goes on from where it started; another `--init` would contradict it."""
    if requested is None:
        return
    started = recorded["checkpoint"] if recorded else None
    if started != str(requested.expanduser().resolve()):
        raise ConfigError(
            f"this run started from {started or 'ImageNet weights'}; --resume goes on from "
            f"there, so --init {requested} does not apply (drop --init, or use another --out)"
        )


def _check_same_teacher(config: TrainConfig, recorded: dict[str, Any] | None) -> None:
    """A resumed run keeps the teacher (and its settings) it started with, or none."""
    started = recorded["checkpoint"] if recorded else None
    requested = str(config.teacher.expanduser().resolve()) if config.teacher else None
    if started != requested:
        raise ConfigError(
            f"this run was started with --teacher {started or '(none)'}; --resume needs the "
            f"same, not {requested or '(none)'} (or use another --out)"
        )


def _check_same_option(
    state: dict[str, Any], key: str, option: str, requested: float | str, default: float | str
) -> None:
    """A resumed run keeps the recipe setting it started with (older runs: `default`)."""
    recorded = type(requested)((state.get("config") or {}).get(key, default))
    if recorded != requested:
        if isinstance(requested, bool):  # a flag: said as given or not
            started = f"{'with' if recorded else 'without'} {option}"
            needed = "it" if recorded else "none"
            raise ConfigError(
                f"this run was started {started}; --resume needs the same, not {needed} "
                "(or use another --out)"
            )
        raise ConfigError(
            f"this run was started with {option} {_shown(recorded)}; --resume needs the same, "
            f"not {_shown(requested)} (or use another --out)"
        )


def _shown(value: float | str) -> str:
    return value if isinstance(value, str) else f"{value:g}"


def update_ema(ema: torch.nn.Module, model: torch.nn.Module, decay: float) -> None:
    for averaged, current in zip(ema.parameters(), model.parameters(), strict=True):
        if not current.requires_grad:  # frozen: averaging would only add rounding
            averaged.copy_(current)
            continue
        averaged.mul_(decay).add_(current.detach(), alpha=1.0 - decay)
    for kept, buffer in zip(ema.buffers(), model.buffers(), strict=True):
        kept.copy_(buffer)  # batch-norm statistics are taken as they are


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    return value
