"""Reading `swapwatch train` checkpoints safely: tensors and plain values only, one-line errors."""

from __future__ import annotations

import hashlib
import io
from pathlib import Path
from typing import Any

import torch

from swapwatch.errors import ConfigError
from swapwatch.training.model import SwapDetector


def read_checkpoint(checkpoint: Path) -> tuple[dict[str, Any], bytes]:
    """The checkpoint's contents and its bytes (for a digest)."""
    path = checkpoint.expanduser()
    if not path.is_file():
        raise ConfigError(f"no such checkpoint {checkpoint}")
    data = path.read_bytes()
    try:
        # Tensors and plain values only: a checkpoint from elsewhere runs no code.
        state = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as exc:  # a file that is no checkpoint fails in many ways; one line for all
        raise ConfigError(
            f"cannot read checkpoint {checkpoint}: not a PyTorch file of tensors and plain "
            f"values ({type(exc).__name__})"
        ) from exc
    weights = state.get("model") if isinstance(state, dict) else None
    if not isinstance(weights, dict) or not all(
        isinstance(v, torch.Tensor) for v in weights.values()
    ):
        raise ConfigError(f"{checkpoint} is not a swapwatch training checkpoint")
    return state, data


def load_weights(model: SwapDetector, weights: dict[str, torch.Tensor], checkpoint: Path) -> None:
    """Load `weights` into `model`, or say in one line how they do not fit it."""
    expected = model.state_dict()
    problems = {
        "missing": sorted(expected.keys() - weights.keys()),
        "unexpected": sorted(weights.keys() - expected.keys()),
        "of another shape": sorted(
            k for k in expected.keys() & weights.keys() if weights[k].shape != expected[k].shape
        ),
    }
    if any(problems.values()):
        found = "; ".join(
            f"{len(names)} weights {kind} (e.g. {', '.join(names[:3])})"
            for kind, names in problems.items()
            if names
        )
        raise ConfigError(f"{checkpoint} does not fit the detector: {found}")
    model.load_state_dict(weights)


def provenance(checkpoint: Path, state: dict[str, Any], data: bytes) -> dict[str, Any]:
    """Where weights another run starts from or learns from came from: the resolved path, its
    digest, its step and the commands of the run that made it."""
    commands = state.get("commands") or []
    return {
        "checkpoint": str(checkpoint.expanduser().resolve()),
        "sha256": hashlib.sha256(data).hexdigest(),
        "step": state.get("step"),
        "command": commands[0] if commands else None,
        "commands": commands,
    }
