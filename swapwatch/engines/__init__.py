"""Inference backends behind one protocol, chosen by name.

An engine plugin (entry point group `swapwatch.engines`) is a factory
`(model: Path, device: str, threads: int) -> Engine` (a class whose constructor takes those
keywords fits), see swapwatch.engines.base.Engine.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from swapwatch.engines.base import Engine, ModelInfo
from swapwatch.models import resolve_detector
from swapwatch.plugins import ENGINES, available, load

DEFAULT_ENGINE = "onnxruntime"

EngineFactory = Callable[..., Engine]


def engine_names() -> list[str]:
    return sorted(available(ENGINES))


def create_engine(
    kind: str, model: Path, device: str = "auto", threads: int = 1, **options: Any
) -> Engine:
    """Build the engine named `kind` (ours or one from a `swapwatch.engines` entry point);
    `options` are that backend's own (`tensorrt=` for `onnxruntime`), given only when set."""
    factory: EngineFactory = load(ENGINES, kind)
    return factory(model, device=device, threads=threads, **options)


def load_detector(
    model: Path | None = None, kind: str = DEFAULT_ENGINE, device: str = "auto", threads: int = 1
) -> Engine:
    """The detector, warmed up: `model` (default: the bundled one for `device`) in the engine
    named `kind`. Raises ModelNotInstalled, ModelError or EngineError."""
    engine = create_engine(kind, resolve_detector(model, device), device=device, threads=threads)
    try:
        engine.warmup()
    except BaseException:
        engine.close()
        raise
    return engine


__all__ = [
    "DEFAULT_ENGINE",
    "Engine",
    "ModelInfo",
    "create_engine",
    "engine_names",
    "load_detector",
]
