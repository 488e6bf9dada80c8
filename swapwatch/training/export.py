"""`swapwatch export`: a trained checkpoint -> one self-contained, calibrated ONNX file.

The temperature T (evidence = logit / T) is fitted on the validation groups of the training
data by minimising the negative log-likelihood, so that the evidence the decision rule adds up
is a calibrated log-likelihood ratio. The ONNX file is checked against PyTorch before it is kept.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import torch
import torch.nn.functional as F

from swapwatch.datasets.crops import CROP_SIZE, CropCache, centre_window
from swapwatch.datasets.lists import MediaItem
from swapwatch.datasets.splits import TrainingSplit
from swapwatch.engines.base import METADATA_KEY, ModelInfo, shrunk
from swapwatch.engines.onnxruntime import OnnxRuntimeEngine
from swapwatch.errors import ModelError
from swapwatch.evaluation.metrics import roc_auc
from swapwatch.training.checkpoint import load_weights, read_checkpoint
from swapwatch.training.dataset import PairConfig, PairSampler, build_pool
from swapwatch.training.model import INPUT_MEAN, INPUT_STD, SwapDetector, detector_for_run
from swapwatch.training.quantize import FLOAT_LEADING_CONVS, QuantizeReport, quantize
from swapwatch.training.train import predict, to_tensor

log = logging.getLogger(__name__)

OPSET = 17
PARITY_TOLERANCE = 1e-3  # logits; float32 kernels differ in summation order, not more
CALIBRATION_BLENDS = 512
INT8_RANGE_CROPS = 256


@dataclass(frozen=True, slots=True)
class ExportReport:
    path: Path
    temperature: float
    calibration: dict[str, Any]
    parity_max_difference: float
    size_bytes: int
    int8: QuantizeReport | None = None

    def __str__(self) -> str:
        text = (
            f"wrote {self.path} ({self.size_bytes / 1e6:.1f} MB): temperature "
            f"{self.temperature:.3f}, ONNX Runtime vs PyTorch max logit difference "
            f"{self.parity_max_difference:.2e}\ncalibration: {json.dumps(self.calibration)}"
        )
        return text if self.int8 is None else f"{text}\n{self.int8}"


def fit_temperature(logits: np.ndarray, labels: np.ndarray) -> float:
    """The T > 0 minimising binary cross-entropy of logits / T (a 1-D convex search)."""
    if len(set(labels.tolist())) < 2:
        raise ModelError("calibration needs both real and fake examples")
    z = torch.from_numpy(logits.astype(np.float64))
    y = torch.from_numpy(labels.astype(np.float64))

    def nll(log_t: float) -> float:
        return float(F.binary_cross_entropy_with_logits(z / math.exp(log_t), y))

    # Golden-section search on log T over T in [0.05, 20].
    lo, hi = math.log(0.05), math.log(20.0)
    ratio = (math.sqrt(5) - 1) / 2
    a, b = hi - ratio * (hi - lo), lo + ratio * (hi - lo)
    fa, fb = nll(a), nll(b)
    for _ in range(60):
        if fa < fb:
            hi, b, fb = b, a, fa
            a = hi - ratio * (hi - lo)
            fa = nll(a)
        else:
            lo, a, fa = a, b, fb
            b = lo + ratio * (hi - lo)
            fb = nll(b)
    return math.exp((lo + hi) / 2)


def training_split(state: dict[str, Any], validation_fraction: float | None) -> TrainingSplit:
    """How the run that made `state` split its groups, with the fraction overridden if given."""
    recorded = TrainingSplit.from_record(state.get("config") or {})
    if validation_fraction is None or validation_fraction == recorded.validation_fraction:
        return recorded
    log.warning(
        "the training run held out %s of the groups for validation; calibrating on %s of them "
        "may fit the temperature on groups the model trained on",
        recorded.validation_fraction,
        validation_fraction,
    )
    return dataclasses.replace(recorded, validation_fraction=validation_fraction)


def load_checkpoint(path: Path) -> tuple[SwapDetector, dict[str, Any]]:
    state, _ = read_checkpoint(path)
    model = detector_for_run(state.get("config") or {})
    load_weights(model, state["model"], path)
    model.eval()
    return model, state


def refit_batch_norm(model: SwapDetector, crops: np.ndarray, batch: int = 64) -> None:
    """Re-estimate every batch-norm layer's running statistics from `crops` (uint8, cut at
    CROP_SIZE) shrunk to the model's input size: weights trained at one input size meet other
    statistics at another. The statistics become the plain average over the batches (equal
    batches: over the crops); nothing else changes."""
    norms = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    momenta = [m.momentum for m in norms]
    images = shrunk(crops, model.input_size)
    model.eval()  # dropout off; only the batch-norm layers collect statistics
    for norm in norms:
        norm.reset_running_stats()
        norm.momentum = None  # a cumulative average rather than an exponential one
        norm.train()
    try:
        with torch.no_grad():
            for i in range(0, len(images), batch):
                model(to_tensor(np.ascontiguousarray(images[i : i + batch]), "cpu"))
    finally:
        for norm, momentum in zip(norms, momenta, strict=True):
            norm.momentum = momentum
        model.eval()


def calibration_set(
    items: Sequence[MediaItem], cache: CropCache, split: TrainingSplit, seed: int = 7
) -> tuple[np.ndarray, np.ndarray, dict[str, int]]:
    """Validation crops as the detector will see them: reals, recorded fakes, self-blends."""
    _, validation = split.apply(items)
    if not validation:
        raise ModelError("the data has no validation groups to calibrate on")
    pool = build_pool(validation, cache)
    if not len(pool.real_indices):
        groups = ", ".join(sorted({i.group for i in validation}))
        raise ModelError(f"the validation groups ({groups}) hold no real face to calibrate on")
    reals = centre_window(pool.crops[pool.real_indices])
    fakes = centre_window(pool.crops[pool.fake])
    rng = np.random.default_rng(seed)
    sampler = PairSampler(pool, train=False, config=PairConfig(recorded_pair_share=0.0))
    blends = np.stack([sampler.sample(rng)[1] for _ in range(CALIBRATION_BLENDS)])
    images = np.concatenate([reals, fakes, blends])
    labels = np.concatenate([np.zeros(len(reals)), np.ones(len(fakes) + len(blends))])
    counts = {"real": len(reals), "recorded_fake": len(fakes), "self_blend": len(blends)}
    return np.ascontiguousarray(images), labels.astype(np.float32), counts


def range_crops(
    items: Sequence[MediaItem], cache: CropCache, split: TrainingSplit, count: int, seed: int = 11
) -> np.ndarray:
    """Crops of the training groups (reals and their self-blends) for int8 activation ranges."""
    train, _ = split.apply(items)
    pool = build_pool(train, cache)
    rng = np.random.default_rng(seed)
    reals = pool.real_indices[rng.permutation(len(pool.real_indices))[: count // 2]]
    sampler = PairSampler(pool, train=False, config=PairConfig(recorded_pair_share=0.0))
    blends = [sampler.sample(rng)[1] for _ in range(count - len(reals))]
    return np.ascontiguousarray(np.concatenate([centre_window(pool.crops[reals]), blends]))


def export(
    checkpoint: Path,
    out: Path,
    items: Sequence[MediaItem],
    cache: CropCache,
    name: str = "swapwatch-detector",
    description: str = "",
    validation_fraction: float | None = None,
    int8_out: Path | None = None,
    input_size: int | None = None,
    batch_norm_crops: int = 0,
    int8_float_convs: int = FLOAT_LEADING_CONVS,
) -> ExportReport:
    """Export the checkpoint to `out`; with `int8_out`, also its checked int8 version.

    The temperature is fitted on the validation groups of `items`, split as the training run
    split them unless `validation_fraction` says otherwise. `input_size` runs the trained
    weights at another input (crops still cut at CROP_SIZE and shrunk to it), and
    `batch_norm_crops` re-estimates the batch-norm statistics there on that many crops of the
    training groups (reals and their self-blends) first. The int8 version keeps its first
    `int8_float_convs` convolutions float.
    """
    if int8_out is not None and not items:
        raise ModelError("an int8 export needs the training data (for ranges and the check)")
    if batch_norm_crops and not items:
        raise ModelError("re-estimating batch-norm statistics needs the training data")
    model, state = load_checkpoint(checkpoint)
    split = training_split(state, validation_fraction)
    run_record = _run_record(checkpoint)
    trained_size = model.input_size
    if input_size is not None:
        model.input_size = input_size
    if batch_norm_crops:
        refit_batch_norm(model, range_crops(items, cache, split, batch_norm_crops, seed=13))
    calibration: dict[str, Any] = {}
    if items:
        images, labels, counts = calibration_set(items, cache, split)
        logits = predict(model, images, "cpu")
        temperature = fit_temperature(logits, labels)
        calibration = {
            **split.to_json(),
            "examples": counts,
            "auc": roc_auc(logits, labels),
            "nll_before": float(
                F.binary_cross_entropy_with_logits(
                    torch.from_numpy(logits), torch.from_numpy(labels)
                )
            ),
            "nll_after": float(
                F.binary_cross_entropy_with_logits(
                    torch.from_numpy(logits / temperature), torch.from_numpy(labels)
                )
            ),
        }
        probe = images[:: max(1, len(images) // 64)][:64]
    else:
        temperature = 1.0
        probe = np.random.default_rng(0).integers(0, 256, (16, CROP_SIZE, CROP_SIZE, 3), np.uint8)
        log.warning("no data given: temperature left at 1 (uncalibrated)")

    info = ModelInfo(
        name=name,
        input_size=model.input_size,
        crop_size=CROP_SIZE if model.input_size != CROP_SIZE else 0,
        mean=INPUT_MEAN,
        std=INPUT_STD,
        temperature=round(temperature, 4),
        trained=True,
        description=description
        or f"EfficientNet-{model.backbone.name.title()}, one fake logit, self-blend training",
        training={
            "backbone": model.backbone.name,
            "steps": state.get("step"),
            "command": run_record.get("command"),
            "data": run_record.get("data"),
            "init": run_record.get("init"),  # the checkpoint a fine-tune started from
            "teacher": run_record.get("teacher"),  # the run a distilled model learned from
            "input_size_trained": trained_size,
            "batch_norm_refit_crops": batch_norm_crops,
            "validation": (state.get("history") or [{}])[-1],
            "calibration": calibration,
        },
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_suffix(".partial.onnx")
    with warnings.catch_warnings():
        # The TorchScript exporter is deprecated, but it writes one self-contained file
        # without needing onnxscript; the dynamo exporter gains nothing for a plain CNN.
        warnings.simplefilter("ignore", DeprecationWarning)
        _export_onnx(model, partial)
    proto = onnx.load(str(partial))
    onnx.helper.set_model_props(proto, {METADATA_KEY: info.to_json()})
    onnx.checker.check_model(proto)
    onnx.save(proto, str(partial))

    difference = parity(model, partial, probe)
    if difference > PARITY_TOLERANCE:
        partial.unlink()
        raise ModelError(
            f"ONNX output differs from PyTorch by {difference:.2e} (> {PARITY_TOLERANCE})"
        )
    partial.replace(out)
    int8 = None
    if int8_out is not None:
        int8 = quantize(
            out,
            int8_out,
            range_crops(items, cache, split, INT8_RANGE_CROPS),
            images,
            labels,
            fit_temperature,
            float_convs=int8_float_convs,
        )
    return ExportReport(out, temperature, calibration, difference, out.stat().st_size, int8)


def _export_onnx(model: SwapDetector, path: Path) -> None:
    side = model.input_size
    torch.onnx.export(
        model,
        (torch.zeros(1, 3, side, side),),
        str(path),
        input_names=["crops"],
        output_names=["logits"],
        dynamic_axes={"crops": {0: "batch"}, "logits": {0: "batch"}},
        opset_version=OPSET,
        dynamo=False,
    )


def parity(model: SwapDetector, onnx_path: Path, crops: np.ndarray) -> float:
    """Largest |logit difference| between PyTorch and the ONNX file run as swapwatch runs it."""
    engine = OnnxRuntimeEngine(onnx_path, device="cpu", threads=1)
    try:
        ours = engine.infer(crops)
    finally:
        engine.close()
    reference = predict(model, crops, "cpu")
    return float(np.abs(ours - reference).max())


def _run_record(checkpoint: Path) -> dict[str, Any]:
    record = checkpoint.parent / "training.json"
    if not record.is_file():
        return {}
    data: dict[str, Any] = json.loads(record.read_text())
    return data
