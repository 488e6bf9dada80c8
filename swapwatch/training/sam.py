"""Sharpness-aware minimisation (Foret et al., ICLR 2021), around any optimiser.

Each step takes its gradient at weights moved uphill: first the batch's gradient g at w, then the
gradient at w + rho * g / |g|, which the optimiser applies to w. Minima whose loss stays low in a
neighbourhood of radius rho are favoured over sharp ones, a published aid to generalisation;
self-blended-image training (Shiohara & Yamasaki, CVPR 2022) used it with rho 0.05. A step costs
two forward and backward passes. The second pass draws its own dropout mask, as the published
implementations do.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch import nn


class SharpnessAware:
    """Moves trainable parameters to the uphill point and back. Use around one batch:
    `loss.backward(); sam.ascend(); <zero grads, loss at the moved weights>.backward();
    sam.descend(); optimiser.step()`."""

    def __init__(self, parameters: list[nn.Parameter], rho: float) -> None:
        if not rho > 0:
            raise ValueError(f"rho must be positive, got {rho}")
        self.parameters = [p for p in parameters if p.requires_grad]
        self.rho = rho
        self._kept: list[torch.Tensor] = []

    @torch.no_grad()
    def ascend(self) -> None:
        """Move each parameter by rho along the current gradient, normalised over all of them."""
        grads = [p.grad for p in self.parameters if p.grad is not None]
        if not grads:
            raise RuntimeError("ascend() needs the gradient of a backward pass")
        norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads]))
        scale = self.rho / (norm + 1e-12)
        # The weights themselves are kept, not the move: w + e - e is not w in floating point.
        self._kept = [p.detach().clone() for p in self.parameters]
        for p in self.parameters:
            if p.grad is not None:
                p.add_(p.grad * scale)

    @torch.no_grad()
    def descend(self) -> None:
        """Put every parameter back exactly where ascend() found it."""
        if len(self._kept) != len(self.parameters):
            raise RuntimeError("descend() without ascend()")
        for p, kept in zip(self.parameters, self._kept, strict=True):
            p.copy_(kept)
        self._kept = []


@contextlib.contextmanager
def batch_norm_statistics_kept(model: nn.Module) -> Iterator[None]:
    """A forward pass inside leaves batch-norm running statistics as they were: the second pass
    of a step sees the same batch at moved weights, and must not count it twice."""
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    momenta = [m.momentum for m in norms]
    for m in norms:
        m.momentum = 0.0
    try:
        yield
    finally:
        for m, momentum in zip(norms, momenta, strict=True):
            m.momentum = momentum
