"""The detector as one batched actor shared by every stream, and the `Engine` that reaches it.

A plain threaded Ray actor around the same `BatchingEngine` the single-process service uses:
each stream's analysis thread sends its crops, the actor's threads wait in one batching queue,
one inference runs per batch. Ray Serve would add HTTP proxies, a controller and autoscaling
this needs none of (streams reach the detector through Ray calls, not HTTP); several such actors
behind a pool are the next step when one accelerator is not enough.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from swapwatch.engines.base import Engine, ModelInfo
from swapwatch.engines.batching import BatchingEngine
from swapwatch.errors import EngineError

INFER_TIMEOUT_S = 30.0  # a batch that takes longer is a detector in trouble (restarting)


class DetectorService:
    """Made with `ray.remote` (a threaded actor) by `connect.RayCluster.start_detector`."""

    def __init__(self, make_engine: Callable[[], Engine], max_batch: int, max_wait: float) -> None:
        self._engine = BatchingEngine(make_engine(), max_batch, max_wait)
        self._engine.warmup()

    def info(self) -> ModelInfo:
        return self._engine.info

    def infer(self, crops: np.ndarray) -> np.ndarray:
        return self._engine.infer(crops)


class RemoteEngine:
    """An `Engine` whose inference runs in the shared detector actor."""

    def __init__(self, handle: Any, info: ModelInfo) -> None:
        self.handle = handle  # a Ray actor handle (it travels to the stream actors)
        self.info = info

    def infer(self, crops: np.ndarray) -> np.ndarray:
        import ray
        from ray.exceptions import GetTimeoutError, RayError

        try:
            logits: np.ndarray = ray.get(self.handle.infer.remote(crops), timeout=INFER_TIMEOUT_S)
        except (RayError, GetTimeoutError) as exc:
            raise EngineError(f"the shared detector did not answer: {exc}") from exc
        return logits

    def warmup(self) -> None:
        """The detector actor warmed itself up when it started."""

    def close(self) -> None:
        """The detector is the front's to stop, not a stream's."""
