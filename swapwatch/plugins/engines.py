"""Building engines through the `swapwatch.engines` entry points.

An engine plugin is a factory `(model: Path, device: str, threads: int) -> Engine` (a class
whose constructor takes those keywords fits), see swapwatch.engines.base.Engine.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from swapwatch.engines.base import Engine
from swapwatch.plugins import ENGINES, available, load

EngineFactory = Callable[..., Engine]


def engine_names() -> list[str]:
    return sorted(available(ENGINES))


def create_engine(kind: str, model: Path, device: str = "auto", threads: int = 1) -> Engine:
    factory: EngineFactory = load(ENGINES, kind)
    return factory(model, device=device, threads=threads)
