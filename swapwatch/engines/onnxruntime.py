"""ONNX Runtime backend: TensorRT or CUDA providers when present, CPU otherwise."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from swapwatch.engines.base import METADATA_KEY, ModelInfo, normalise
from swapwatch.errors import EngineError, ModelError

log = logging.getLogger(__name__)

PREFERRED_PROVIDERS = (
    "TensorrtExecutionProvider",
    "CUDAExecutionProvider",
    "CPUExecutionProvider",
)


class OnnxRuntimeEngine:
    """Runs a swapwatch ONNX model (one logit per crop) in ONNX Runtime."""

    def __init__(self, path: Path, device: str = "auto", threads: int = 1) -> None:
        import onnxruntime as ort

        if not path.is_file():
            raise ModelError(f"model file not found: {path}")
        available = ort.get_available_providers()
        if device == "cpu":
            providers = ["CPUExecutionProvider"]
        elif device in ("auto", "gpu"):
            providers = [p for p in PREFERRED_PROVIDERS if p in available]
            if device == "gpu" and providers == ["CPUExecutionProvider"]:
                raise EngineError("no GPU execution provider in this onnxruntime install")
        else:
            raise EngineError(f"unknown device {device!r} (auto, cpu or gpu)")
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.log_severity_level = 3
        try:
            self._session = ort.InferenceSession(str(path), options, providers=providers)
        except Exception as exc:  # onnxruntime raises its own untyped errors for bad files
            raise ModelError(f"cannot load model {path}: {str(exc).splitlines()[0]}") from exc
        meta = self._session.get_modelmeta().custom_metadata_map
        if METADATA_KEY not in meta:
            raise ModelError(
                f"{path} has no swapwatch metadata (input size, normalisation, temperature); "
                "export it with `swapwatch export`"
            )
        self.info = ModelInfo.from_json(meta[METADATA_KEY])
        inputs = self._session.get_inputs()
        if len(inputs) != 1:
            raise ModelError(f"{path}: expected one input, found {len(inputs)}")
        self._input_name = inputs[0].name
        self.providers = self._session.get_providers()
        self.path = path
        log.info("loaded %s (%s) on %s", path.name, self.info.name, self.providers[0])

    def infer(self, crops: np.ndarray) -> np.ndarray:
        if len(crops) == 0:
            return np.zeros((0,), np.float32)
        tensor = normalise(crops, self.info)
        try:
            (out,) = self._session.run(None, {self._input_name: tensor})
        except Exception as exc:  # translated at the boundary: onnxruntime has no error tree
            raise EngineError(f"inference failed: {str(exc).splitlines()[0]}") from exc
        logits = np.asarray(out, np.float32).reshape(len(crops), -1)
        if logits.shape[1] != 1:
            raise EngineError(f"model returned {logits.shape[1]} values per crop, expected 1")
        return logits[:, 0]

    def warmup(self) -> None:
        size = self.info.input_size
        self.infer(np.zeros((1, size, size, 3), np.uint8))

    def close(self) -> None:
        self._session = None
