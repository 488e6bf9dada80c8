"""Inference backends behind one protocol, chosen by name."""

from __future__ import annotations

from pathlib import Path

from swapwatch.engines.base import Engine, ModelInfo

DEFAULT_ENGINE = "onnxruntime"


def create_engine(kind: str, model: Path, device: str = "auto", threads: int = 1) -> Engine:
    """Build the engine named `kind` (ours or one from a `swapwatch.engines` entry point)."""
    from swapwatch.plugins.engines import create_engine as create_plugin_engine

    return create_plugin_engine(kind, model, device=device, threads=threads)


__all__ = ["DEFAULT_ENGINE", "Engine", "ModelInfo", "create_engine"]
