"""Knowledge distillation (Hinton, Vinyals & Dean, 2015) from a trained detector to a cheaper one.

The student, e.g. the same network at a smaller input, learns from the batch's labels and from
the teacher's softened belief about each crop: the teacher sees the crop at its own input size,
the student the same crop shrunk to its own. With one logit the softened belief is a
probability, sigmoid(teacher / T), and the student's softened logit is matched to it by binary
cross-entropy. Multiplying that term by T^2 keeps its gradient on the scale of the label term's
as T changes (the paper's argument carries over to one logit unchanged).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from swapwatch.errors import ConfigError
from swapwatch.training.checkpoint import load_weights, provenance, read_checkpoint
from swapwatch.training.model import SwapDetector, detector_for_run

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class DistillConfig:
    weight: float = 0.5  # share of the teacher's term; the labels' term gets the rest
    temperature: float = 2.0

    def __post_init__(self) -> None:
        if not 0 < self.weight <= 1:
            raise ConfigError(f"the distillation weight must be within (0, 1], got {self.weight}")
        if not (math.isfinite(self.temperature) and self.temperature > 0):
            raise ConfigError(
                f"the distillation temperature must be positive, got {self.temperature}"
            )


def distillation_loss(
    student: torch.Tensor, teacher: torch.Tensor, labels: torch.Tensor, config: DistillConfig
) -> torch.Tensor:
    """(1 - w) * BCE(student, labels) + w * T^2 * BCE(student / T, sigmoid(teacher / T))."""
    hard = F.binary_cross_entropy_with_logits(student, labels)
    t = config.temperature
    soft_target = torch.sigmoid(teacher.detach() / t)
    soft = F.binary_cross_entropy_with_logits(student / t, soft_target)
    return (1.0 - config.weight) * hard + config.weight * t * t * soft


@dataclass(slots=True)
class Teacher:
    """A trained run's exported (EMA) weights, frozen, at the input size it was trained at."""

    model: SwapDetector
    record: dict[str, Any]

    @property
    def input_size(self) -> int:
        return self.model.input_size

    @torch.no_grad()
    def logits(self, x: torch.Tensor) -> torch.Tensor:
        logits: torch.Tensor = self.model(x)
        return logits


def load_teacher(checkpoint: Path, device: str) -> tuple[Teacher, dict[str, Any]]:
    """The teacher and its checkpoint's contents (the caller checks its split)."""
    state, data = read_checkpoint(checkpoint)
    model = detector_for_run(state.get("config") or {})
    load_weights(model, state["model"], checkpoint)
    model.to(device)
    model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    model.eval()
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    trained_steps = (state.get("config") or {}).get("steps")
    if trained_steps is not None and (state.get("step") or 0) < trained_steps:
        log.warning(
            "the teacher %s stopped at step %s of %s: a run still in progress teaches what it "
            "knew then",
            checkpoint,
            state.get("step"),
            trained_steps,
        )
    record = provenance(checkpoint, state, data) | {"input_size": model.input_size}
    return Teacher(model, record), state
