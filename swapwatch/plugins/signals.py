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

from swapwatch.errors import ConfigError
from swapwatch.plugins import SIGNALS, PluginLoadError, load


@runtime_checkable
class Signal(Protocol):
    name: str

    def infer(self, crops: np.ndarray) -> np.ndarray:
        """(N, S, S, 3) uint8 RGB crops -> (N,) float32 logits."""
        ...

    def close(self) -> None: ...


SignalFactory = Callable[[], Signal]


def parse_signal(text: str) -> tuple[str, float]:
    """`NAME` or `NAME:WEIGHT` (weight of its logit; default 1)."""
    name, sep, weight = text.partition(":")
    if not name.strip():
        raise ConfigError(f"signal {text!r}: expected NAME or NAME:WEIGHT")
    try:
        value = float(weight) if sep else 1.0
    except ValueError:
        raise ConfigError(f"signal {text!r}: weight {weight!r} is not a number") from None
    if not value >= 0:
        raise ConfigError(f"signal {text!r}: the weight must not be negative")
    return name.strip(), value


def load_signals(names: Iterable[str]) -> list[Signal]:
    """Build the named signals; PluginNotFound names the ones that are installed."""
    signals: list[Signal] = []
    try:
        for name in names:
            factory: SignalFactory = load(SIGNALS, name)
            signal = factory()
            if not isinstance(signal, Signal):
                raise PluginLoadError(f"signal {name!r} does not implement the Signal protocol")
            signals.append(signal)
    except BaseException:
        for built in signals:
            built.close()
        raise
    return signals
