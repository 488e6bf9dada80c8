"""Post-training int8 quantization of an exported detector: ONNX Runtime static QDQ.

Activation ranges come from crops of the training groups; the int8 model is then checked on the
validation crops against the float model it came from, and refused when it ranks them worse by
more than `MAX_AUC_DROP`. Its temperature is fitted again on its own logits, because rounding
moves them a little. On a CPU with VNNI the int8 model runs about twice as fast.

The first convolutions stay float (`FLOAT_LEADING_CONVS`): they see the face at full resolution,
where the detector's cue is the finest detail; 8 bits at the first block cost it most (the
stem's 32 output channels share one activation scale). Measured on detector-v22-allmatch seed
0's validation crops: float AUC 0.8833; every layer int8 0.8714; the stem float 0.8744; the stem
and the first depthwise convolution float (the stem's output never rounded) 0.8825
(benchmarks/README.md, "int8 with the first layers float").
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnxruntime.quantization import (
    CalibrationDataReader,
    CalibrationMethod,
    QuantFormat,
    QuantType,
    quantize_static,
)
from onnxruntime.quantization.shape_inference import quant_pre_process

from swapwatch.engines.base import METADATA_KEY, ModelInfo, normalise
from swapwatch.engines.onnxruntime import OnnxRuntimeEngine
from swapwatch.errors import ModelError
from swapwatch.evaluation.metrics import roc_auc

log = logging.getLogger(__name__)

MAX_AUC_DROP = 0.01
CALIBRATION_BATCH = 16
FLOAT_LEADING_CONVS = 2


@dataclass(frozen=True, slots=True)
class QuantizeReport:
    path: Path
    size_bytes: int
    temperature: float
    auc_float: float
    auc_int8: float
    max_probability_difference: float
    float_convs: int = 0

    def __str__(self) -> str:
        return (
            f"wrote {self.path} ({self.size_bytes / 1e6:.1f} MB, int8, first {self.float_convs} "
            f"convolutions float): temperature "
            f"{self.temperature:.3f}; validation AUC float {self.auc_float:.4f} -> int8 "
            f"{self.auc_int8:.4f}; largest calibrated-probability change "
            f"{self.max_probability_difference:.3f}"
        )


class _Crops(CalibrationDataReader):  # type: ignore[misc]
    def __init__(self, crops: np.ndarray, info: ModelInfo, input_name: str) -> None:
        self._batches = self._iterate(crops, info, input_name)

    @staticmethod
    def _iterate(
        crops: np.ndarray, info: ModelInfo, input_name: str
    ) -> Iterator[dict[str, np.ndarray]]:
        for start in range(0, len(crops), CALIBRATION_BATCH):
            yield {input_name: normalise(crops[start : start + CALIBRATION_BATCH], info)}

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._batches, None)


def quantize(
    float_model: Path,
    out: Path,
    range_crops: np.ndarray,
    check_crops: np.ndarray,
    check_labels: np.ndarray,
    fit_temperature: Any,
    max_auc_drop: float = MAX_AUC_DROP,
    float_convs: int = FLOAT_LEADING_CONVS,
) -> QuantizeReport:
    """Write the int8 version of `float_model` to `out`; uint8 NHWC crops in, as at inference.
    The first `float_convs` convolutions (in graph order) stay float."""
    if float_convs < 0:
        raise ModelError(f"the number of float convolutions must not be negative: {float_convs}")
    source = onnx.load(str(float_model))
    props = {p.key: p.value for p in source.metadata_props}
    if METADATA_KEY not in props:
        raise ModelError(f"{float_model} has no swapwatch metadata: export it first")
    if out.resolve() == float_model.resolve():
        raise ModelError(f"the int8 model would overwrite its float model {float_model}")
    info = ModelInfo.from_json(props[METADATA_KEY])
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_suffix(".partial.onnx")
    try:
        report = _quantize(
            float_model,
            info,
            source.graph.input[0].name,
            partial,
            range_crops,
            check_crops,
            check_labels,
            fit_temperature,
            max_auc_drop,
            float_convs,
        )
    except BaseException:
        partial.unlink(missing_ok=True)
        # An int8 file from an earlier float model must not stay beside this one.
        out.unlink(missing_ok=True)
        raise
    partial.replace(out)
    return replace(report, path=out, size_bytes=out.stat().st_size)


def _quantize(
    float_model: Path,
    info: ModelInfo,
    input_name: str,
    partial: Path,
    range_crops: np.ndarray,
    check_crops: np.ndarray,
    check_labels: np.ndarray,
    fit_temperature: Any,
    max_auc_drop: float,
    float_convs: int,
) -> QuantizeReport:
    with tempfile.TemporaryDirectory() as scratch:
        prepared = Path(scratch) / "prepared.onnx"
        quant_pre_process(str(float_model), str(prepared), skip_symbolic_shape=True)
        kept_float = leading_convs(prepared, float_convs)
        quantize_static(
            str(prepared),
            str(partial),
            _Crops(range_crops, info, input_name),
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            calibrate_method=CalibrationMethod.MinMax,
            nodes_to_exclude=kept_float,
        )
    float_logits = _logits(float_model, check_crops)
    int8_logits = _logits(partial, check_crops)
    temperature = float(fit_temperature(int8_logits, check_labels))
    auc_float, auc_int8 = roc_auc(float_logits, check_labels), roc_auc(int8_logits, check_labels)
    if auc_float is None or auc_int8 is None:
        raise ModelError("the quantization check needs real and fake crops")
    difference = float(
        np.abs(
            _sigmoid(int8_logits / temperature) - _sigmoid(float_logits / info.temperature)
        ).max()
    )
    if auc_int8 < auc_float - max_auc_drop:
        raise ModelError(
            f"int8 quantization costs too much: validation AUC {auc_float:.4f} -> "
            f"{auc_int8:.4f} (more than {max_auc_drop} lower)"
        )
    training = dict(info.training or {})
    training["quantization"] = {
        "method": "onnxruntime static QDQ, per-channel int8 weights, uint8 activations, min-max",
        "float_convs": kept_float,
        "range_crops": len(range_crops),
        "check_crops": len(check_crops),
        "auc_float": round(auc_float, 5),
        "auc_int8": round(auc_int8, 5),
        "max_probability_difference": round(difference, 4),
        "float_temperature": info.temperature,
    }
    quantized = replace(info, temperature=round(temperature, 4), training=training)
    proto = onnx.load(str(partial))
    onnx.helper.set_model_props(proto, {METADATA_KEY: quantized.to_json()})
    onnx.checker.check_model(proto)
    onnx.save(proto, str(partial))
    return QuantizeReport(partial, 0, temperature, auc_float, auc_int8, difference, len(kept_float))


def leading_convs(model: Path, count: int) -> list[str]:
    """Names of the first `count` convolutions of `model` in graph (topological) order."""
    if count == 0:
        return []
    convs = [n.name for n in onnx.load(str(model)).graph.node if n.op_type == "Conv"]
    if len(convs) < count:
        raise ModelError(f"{count} float convolutions asked, the model has {len(convs)}")
    return convs[:count]


def _logits(model: Path, crops: np.ndarray, batch: int = 64) -> np.ndarray:
    engine = OnnxRuntimeEngine(model, device="cpu", threads=0)
    try:
        return np.concatenate(
            [engine.infer(crops[i : i + batch]) for i in range(0, len(crops), batch)]
        )
    finally:
        engine.close()


def _sigmoid(x: np.ndarray) -> np.ndarray:
    result: np.ndarray = 1.0 / (1.0 + np.exp(-x))
    return result
