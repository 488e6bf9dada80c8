"""A blend-boundary head beside the detector's logit (Face X-ray, Li et al., CVPR 2020; LAA-Net,
Nguyen et al., CVPR 2024), used in training only.

A self-blend's mask M is known, so besides "fake" the network can be told where two faces were
mixed: the map B = 4 M (1 - M), 1 where they mix half and half, 0 where either is alone (along the
blend's soft edge, or across its region when the blend is at partial strength). A small head
reads the backbone's stride-16 features (14 x 14 at 224 px) and is taught B there (nothing where
an occluder hides the crop), 0 for every real face, and nothing for a recorded fake, whose mask
is unknown.
The published claim is that a detector made to find the boundary learns the blend's traces rather
than whatever else separates its training fakes, and so holds up on methods it never saw. The head
is not part of the exported model: scoring costs what it did.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from swapwatch.training.dataset import BlendBatch
from swapwatch.training.model import SwapDetector, conv_bn

# The head reads the output of the backbone's fifth stage (112 channels at stride 16 in Lite0
# and Lite1): fine enough to place an edge, deep enough to carry what the classifier uses.
TAPPED_STAGE = 5
HIDDEN_CHANNELS = 64


def tapped_channels(model: SwapDetector) -> int:
    return model.backbone.stages[TAPPED_STAGE - 1].channels


class BoundaryHead(nn.Module):
    """(N, C, h, w) stride-16 features -> (N, h, w) boundary logits."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.body = nn.Sequential(conv_bn(channels, HIDDEN_CHANNELS, 3), nn.ReLU6(inplace=True))
        self.out = nn.Conv2d(HIDDEN_CHANNELS, 1, 1)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        logits: torch.Tensor = self.out(self.body(features))
        return logits.squeeze(1)


@contextmanager
def tapped_features(model: SwapDetector) -> Iterator[list[torch.Tensor]]:
    """While open, each forward pass of `model` leaves its stride-16 features in the list."""
    taken: list[torch.Tensor] = []

    def keep(_module: nn.Module, _inputs: object, output: torch.Tensor) -> None:
        taken.append(output)

    handle = model.blocks[model.last_block_of(TAPPED_STAGE)].register_forward_hook(keep)
    try:
        yield taken
    finally:
        handle.remove()


def boundary_maps(masks: np.ndarray, uncovered: np.ndarray, side: int) -> np.ndarray:
    """(N, S, S) blend masks M in [0, 1] -> (N, side, side) maps B = 4 M (1 - M): 1 where the
    two faces mix half and half, so along the blend's soft edge and, for a blend at partial
    strength, across its whole region (Face X-ray's definition, on the mask actually used).
    Zero where an occluder covers the crop (`uncovered`, as the masks), then area-averaged down
    to the head's resolution."""
    if masks.ndim != 3 or uncovered.shape != masks.shape:
        raise ValueError(
            f"masks and uncovered must be N x S x S, got {masks.shape} and {uncovered.shape}"
        )
    full = (4.0 * masks * (1.0 - masks) * uncovered).astype(np.float32)
    return np.stack([cv2.resize(m, (side, side), interpolation=cv2.INTER_AREA) for m in full]).clip(
        0.0, 1.0
    )


def boundary_loss(logits: torch.Tensor, targets: torch.Tensor, known: torch.Tensor) -> torch.Tensor:
    """Per-pixel binary cross-entropy against the maps, over the faces whose map is `known`
    (reals and self-blends; not recorded fakes): a zero loss when none is."""
    if not bool(known.any()):
        return logits.sum() * 0.0  # keeps the graph: the step's backward still runs through it
    return F.binary_cross_entropy_with_logits(logits[known], targets[known])


class BoundaryTask:
    """The head and its share of a step's loss."""

    def __init__(self, weight: float, model: SwapDetector, device: str) -> None:
        """A head for `model`'s backbone."""
        if not weight > 0:
            raise ValueError(f"the boundary loss weight must be positive, got {weight}")
        self.weight = weight
        self.head = BoundaryHead(tapped_channels(model)).to(device)

    def logits_and_loss(
        self, model: SwapDetector, x: torch.Tensor, batch: BlendBatch
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The model's fake logits for `x` (the batch's crops), and the head's weighted loss
        against the batch's maps where they are known."""
        with tapped_features(model) as taken:
            logits = model(x)
        features = taken[-1]
        maps = boundary_maps(batch.masks, batch.uncovered, features.shape[-1])
        targets = torch.from_numpy(maps).to(features.device)
        where = torch.from_numpy(batch.known).to(features.device)
        return logits, self.weight * boundary_loss(self.head(features), targets, where)
