"""The extra-signal protocol: a per-face detector that runs beside the engine.

A signal is declared in the entry point group `swapwatch.signals` as a factory that takes no
arguments. It sees the same aligned crops as the engine and returns one logit per crop, in the
engine's sense (positive: manipulated). How its logits join the engine's is the pipeline's
business; a signal only measures.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Protocol, runtime_checkable

import numpy as np

from swapwatch.plugins import SIGNALS, PluginLoadError, load


@runtime_checkable
class Signal(Protocol):
    name: str

    def infer(self, crops: np.ndarray) -> np.ndarray:
        """(N, S, S, 3) uint8 RGB crops -> (N,) float32 logits."""
        ...

    def close(self) -> None: ...


SignalFactory = Callable[[], Signal]


def load_signals(names: Iterable[str]) -> list[Signal]:
    """Build the named signals; PluginNotFound names the ones that are installed."""
    signals: list[Signal] = []
    for name in names:
        factory: SignalFactory = load(SIGNALS, name)
        signal = factory()
        if not isinstance(signal, Signal):
            raise PluginLoadError(f"signal {name!r} does not implement the Signal protocol")
        signals.append(signal)
    return signals
