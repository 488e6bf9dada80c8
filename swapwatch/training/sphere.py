"""Feature-level regularisation on the unit sphere, used in training only.

The detector's pooled features are put on the unit sphere before its classifier, and two terms
of Wang & Isola (ICML 2020) shape them there: *alignment* pulls features of the same label
together (their mean squared distance), *uniformity* spreads the whole batch over the sphere
(the log of the mean Gaussian potential, `t = 2`, over every pair). GenD (Yermakov et al., 2025)
found this, with weights 0.5 (uniformity) and 0.1 (alignment) beside the cross-entropy, to carry a
deepfake detector to datasets it never trained on: features spread over the sphere keep more of
what the pretrained network saw, rather than collapsing onto the few directions that separate the
training fakes. The normalisation stays in the exported model (the classifier was trained on unit
features); the two terms cost one pairwise distance matrix of the batch.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import nn

from swapwatch.training.model import SwapDetector

UNIFORMITY_T = 2.0  # Wang & Isola's potential, as GenD used it


def squared_distances(embeddings: torch.Tensor) -> torch.Tensor:
    """(N, N) |a - b|^2 of every pair, without a square root: smooth where two features
    coincide (the diagonal too)."""
    norms = embeddings.pow(2).sum(dim=1)
    return (norms[:, None] + norms[None, :] - 2.0 * embeddings @ embeddings.T).clamp_min(0.0)


def alignment(embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean squared distance between unit features of the same label (0 where no two share
    one)."""
    same = (labels[:, None] == labels[None, :]).triu(diagonal=1).to(embeddings.dtype)
    # A masked mean rather than indexing: no host round trip to count the pairs on a GPU.
    return (squared_distances(embeddings) * same).sum() / same.sum().clamp_min(1.0)


def uniformity(embeddings: torch.Tensor, t: float = UNIFORMITY_T) -> torch.Tensor:
    """log E exp(-t |x - y|^2) over every pair of the batch: lower where the features spread."""
    n = embeddings.shape[0]
    first, second = torch.triu_indices(n, n, offset=1, device=embeddings.device)
    squared = squared_distances(embeddings)[first, second]
    return torch.logsumexp(-t * squared, dim=0) - math.log(squared.numel())


@dataclass(frozen=True)
class SphereLoss:
    """Both terms, weighted, of a batch's unit features and their labels (0 real, 1 fake)."""

    uniformity_weight: float
    alignment_weight: float

    def __call__(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        total = embeddings.sum() * 0.0
        if self.uniformity_weight:
            total = total + self.uniformity_weight * uniformity(embeddings)
        if self.alignment_weight:
            total = total + self.alignment_weight * alignment(embeddings, labels.round())
        return total


@contextmanager
def captured_unit_features(model: SwapDetector) -> Iterator[list[torch.Tensor]]:
    """While open, each forward pass of `model` leaves its unit features (before dropout) in
    the list."""
    if not model.unit_features:
        raise ValueError("the detector does not put its features on the unit sphere")
    taken: list[torch.Tensor] = []

    def keep(_module: nn.Module, _inputs: object, output: torch.Tensor) -> None:
        taken.append(output)

    handle = model.embedding.register_forward_hook(keep)
    try:
        yield taken
    finally:
        handle.remove()
