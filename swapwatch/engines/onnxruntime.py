"""ONNX Runtime backend: TensorRT or CUDA providers when present, CPU otherwise."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from swapwatch.engines.base import METADATA_KEY, ModelInfo, normalise
from swapwatch.engines.tensorrt import CPU, CUDA, TENSORRT, TensorRtOptions, session_providers
from swapwatch.errors import EngineError, ModelError

log = logging.getLogger(__name__)

PREFERRED_PROVIDERS = (TENSORRT, CUDA, CPU)


def choose_providers(device: str, available: Sequence[str]) -> list[str]:
    """The execution providers for `device`, best first: `auto` takes what is installed
    (TensorRT, CUDA, then the CPU, without a word when a GPU one is missing); `gpu` and
    `tensorrt` refuse to run on the CPU instead."""
    if device == "cpu":
        return [CPU]
    if device not in ("auto", "gpu", "tensorrt"):
        raise EngineError(f"unknown device {device!r} (auto, cpu, gpu or tensorrt)")
    providers = [p for p in PREFERRED_PROVIDERS if p in available]
    if device == "gpu" and providers == [CPU]:
        raise EngineError("no GPU execution provider in this onnxruntime install")
    if device == "tensorrt" and TENSORRT not in providers:
        raise EngineError(
            "device 'tensorrt': this onnxruntime has no TensorRT execution provider "
            f"(it has {', '.join(available)}); install onnxruntime-gpu and TensorRT, or set "
            "the device to auto"
        )
    return providers


class OnnxRuntimeEngine:
    """Runs a swapwatch ONNX model (one logit per crop) in ONNX Runtime."""

    def __init__(
        self,
        path: Path,
        device: str = "auto",
        threads: int = 1,
        tensorrt: TensorRtOptions | None = None,
    ) -> None:
        import onnxruntime as ort

        if not path.is_file():
            raise ModelError(f"model file not found: {path}")
        providers = choose_providers(device, ort.get_available_providers())
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.log_severity_level = 3
        try:
            # TensorRT's profile names the model's input, known once the model is loaded: a
            # CPU session reads it, then the providers are set (before TensorRT builds).
            first = [CPU] if providers[0] == TENSORRT else providers
            self._session = ort.InferenceSession(str(path), options, providers=first)
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
        if providers[0] == TENSORRT:
            chosen = session_providers(
                providers, tensorrt or TensorRtOptions(), self._input_name, self.info.input_size
            )
            try:
                self._session.set_providers(chosen)
            except Exception as exc:  # onnxruntime raises its own untyped errors
                raise EngineError(f"TensorRT: {str(exc).splitlines()[0]}") from exc
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
        size = self.info.cut_size
        self.infer(np.zeros((1, size, size, 3), np.uint8))

    def close(self) -> None:
        self._session = None
