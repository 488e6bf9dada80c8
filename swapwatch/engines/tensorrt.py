"""ONNX Runtime's TensorRT execution provider: its options, and the batch sizes to warm up.

Unverified on a GPU in this repository: the options are checked against ONNX Runtime's
documented names and formats, not against a TensorRT build.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

TENSORRT = "TensorrtExecutionProvider"
CUDA = "CUDAExecutionProvider"
CPU = "CPUExecutionProvider"
GPU_PROVIDERS = frozenset({TENSORRT, CUDA})


@dataclass(frozen=True, slots=True)
class TensorRtOptions:
    """What the TensorRT provider is told: precision, where engines are cached, and the batch
    sizes its one optimisation profile covers (1 to the shared batcher's `max_batch`), so a
    batch of any size the batcher makes runs the same engine instead of building another."""

    max_batch: int = 16
    fp16: bool = True
    cache_dir: Path | None = None
    workspace_mb: int = 2048

    def __post_init__(self) -> None:
        if self.max_batch < 1 or self.workspace_mb < 1:
            raise ValueError("max_batch and workspace_mb must be at least 1")

    def provider_options(self, input_name: str, input_size: int) -> dict[str, str]:
        """The provider's options for a model whose one input is `input_name`, NCHW, square
        `input_size` RGB crops: ONNX Runtime takes every value as a string."""

        def shape(batch: int) -> str:
            return f"{input_name}:{batch}x3x{input_size}x{input_size}"

        options = {
            "trt_fp16_enable": _flag(self.fp16),
            "trt_max_workspace_size": str(self.workspace_mb * 1024 * 1024),
            "trt_profile_min_shapes": shape(1),
            # The batcher fills its batches under load, when speed matters most.
            "trt_profile_opt_shapes": shape(self.max_batch),
            "trt_profile_max_shapes": shape(self.max_batch),
        }
        if self.cache_dir is not None:
            options |= {
                "trt_engine_cache_enable": _flag(True),
                "trt_engine_cache_path": str(self.cache_dir),
                "trt_timing_cache_enable": _flag(True),
                "trt_timing_cache_path": str(self.cache_dir),
            }
        return options


def session_providers(
    providers: Sequence[str], tensorrt: TensorRtOptions, input_name: str, input_size: int
) -> list[tuple[str, dict[str, str]]]:
    """`providers` as ONNX Runtime's `(name, options)` pairs, TensorRT's options filled in."""
    return [
        (name, tensorrt.provider_options(input_name, input_size) if name == TENSORRT else {})
        for name in providers
    ]


def _flag(value: bool) -> str:
    return "True" if value else "False"


def warmup_batch_sizes(providers: Sequence[str], max_batch: int) -> tuple[int, ...]:
    """The batch sizes to run once before live frames come. A GPU provider prepares each input
    shape on its first run (TensorRT its profile's execution context and kernels, cuDNN its
    algorithm search): every size the batcher can make, 1 to `max_batch`. On a CPU one run
    loads everything."""
    if providers and providers[0] in GPU_PROVIDERS:
        return tuple(range(1, max_batch + 1))
    return (1,)
