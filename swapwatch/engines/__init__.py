"""Inference backends behind one protocol, chosen by name."""

from __future__ import annotations

from pathlib import Path

from swapwatch.engines.base import Engine, ModelInfo
from swapwatch.errors import ConfigError

ENGINE_TYPES = ("onnxruntime",)


def create_engine(kind: str, model: Path, device: str = "auto", threads: int = 1) -> Engine:
    """Build the engine named `kind` for a model file."""
    if kind == "onnxruntime":
        from swapwatch.engines.onnxruntime import OnnxRuntimeEngine

        return OnnxRuntimeEngine(model, device=device, threads=threads)
    raise ConfigError(f"unknown engine {kind!r} (available: {', '.join(ENGINE_TYPES)})")


__all__ = ["ENGINE_TYPES", "Engine", "ModelInfo", "create_engine"]
