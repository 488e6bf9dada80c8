"""MesoNet (Afchar et al., WIFS 2018) as a peer baseline: Meso4 and MesoInception4 in numpy.

The forward passes are re-implemented from the paper and the authors' published model code
(github.com/DariusAf/MesoNet, Apache-2.0) and read the authors' Keras weight files, which hold
plain arrays, with h5py; neither Keras nor TensorFlow is needed.

    Meso4           4 x [conv 'same' + ReLU, batch norm, max pool]: 8@3x3 /2, 8@5x5 /2,
                    16@5x5 /2, 16@5x5 /4; flatten; dense 16 + LeakyReLU(0.1); dense 1 + sigmoid
    MesoInception4  2 x [inception block, batch norm, max pool /2], then the last two Meso4 blocks
                    and the same head. Inception(a, b, c, d): 1x1@a | 1x1@b, 3x3@b |
                    1x1@c, 3x3@c dilation 2 | 1x1@d, 3x3@d dilation 3, concatenated;
                    (1, 4, 4, 2) then (2, 4, 4, 2). Every conv has a ReLU.

The head follows the published code (dense 16, LeakyReLU 0.1, dense 1); the Meso4 weight files
name no LeakyReLU layer, so the authors may have trained Meso4 with another activation there,
which the files cannot tell. Input: 256x256 RGB scaled to 0-1. The sigmoid output is P(real):
the authors trained with Keras' flow_from_directory, whose classes are alphabetical ('df' = 0,
'real' = 1).

As an `Engine` it is fed swapwatch's own aligned face crops (eyes level, the face mesh's extent
plus 30%), not the crops MesoNet was trained on (centred on the nose, 2.86 times the larger of
the eye-eye and eye-mouth distances, rotated upright): ours are about 8% wider, and cut and
resampled differently. Keep that in mind when comparing.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from swapwatch.engines.base import ModelInfo
from swapwatch.errors import ModelError

INPUT_SIZE = 256
BN_EPSILON = 1e-3  # Keras' BatchNormalization default
LEAKY_SLOPE = 0.1
INCEPTION_WIDTHS = ((1, 4, 4, 2), (2, 4, 4, 2))
BATCH = 32  # crops per forward pass (OpenCV filters at most 512 channels at once)


# Feature maps are kept as (C, H, W, N): each channel of the whole batch is then one
# contiguous (H, W, N) image, which OpenCV filters in one call (N "colour" channels at once).


@dataclass(frozen=True, slots=True)
class Conv:
    """A 'same'-padded, stride-1 convolution followed by a ReLU (as every MesoNet conv)."""

    kernel: np.ndarray  # (kh, kw, cin, cout), Keras layout
    bias: np.ndarray  # (cout,)
    dilation: int = 1

    def __call__(self, x: np.ndarray) -> np.ndarray:
        y = _conv_chwn(x, self.kernel, self.bias, self.dilation)
        np.maximum(y, 0.0, out=y)
        return y


@dataclass(frozen=True, slots=True)
class BatchNorm:
    """Inference batch norm folded into one scale and shift per channel."""

    scale: np.ndarray
    shift: np.ndarray

    @classmethod
    def from_keras(
        cls, gamma: np.ndarray, beta: np.ndarray, mean: np.ndarray, variance: np.ndarray
    ) -> BatchNorm:
        scale = gamma / np.sqrt(variance + BN_EPSILON)
        return cls(scale.astype(np.float32), (beta - mean * scale).astype(np.float32))

    def __call__(self, x: np.ndarray) -> np.ndarray:
        shape = (-1,) + (1,) * (x.ndim - 1)
        y: np.ndarray = x * self.scale.reshape(shape) + self.shift.reshape(shape)
        return y


@dataclass(frozen=True, slots=True)
class Dense:
    kernel: np.ndarray  # (cin, cout)
    bias: np.ndarray

    def __call__(self, x: np.ndarray) -> np.ndarray:
        y: np.ndarray = x @ self.kernel + self.bias
        return y


def _conv_chwn(x: np.ndarray, kernel: np.ndarray, bias: np.ndarray, dilation: int) -> np.ndarray:
    """(Cin, H, W, N) -> (Cout, H, W, N), no activation."""
    kh, kw, cin, cout = kernel.shape
    c, h, w, n = x.shape
    if c != cin:
        raise ValueError(f"input has {c} channels, kernel expects {cin}")
    if kh % 2 == 0 or kw % 2 == 0:
        raise ValueError("only odd kernels are supported ('same' padding is then symmetric)")
    out = np.empty((cout, h, w, n), np.float32)
    if kh == kw == 1:
        flat = kernel[0, 0].T @ x.reshape(cin, -1)  # (cout, H*W*N)
        out[:] = (flat + bias[:, None]).reshape(cout, h, w, n)
        return out
    taps = np.zeros((dilation * (kh - 1) + 1, dilation * (kw - 1) + 1, cin, cout), np.float32)
    taps[::dilation, ::dilation] = kernel  # a dilated kernel is a sparse larger one
    for o in range(cout):
        acc = out[o].reshape(h, w, n)
        acc[:] = bias[o]
        for i in range(cin):
            # Cross-correlation with zeros outside the image: TensorFlow's 'same' convolution.
            acc += cv2.filter2D(
                x[i], cv2.CV_32F, taps[:, :, i, o], borderType=cv2.BORDER_CONSTANT
            ).reshape(h, w, n)
    return out


def _pool_chwn(x: np.ndarray, size: int) -> np.ndarray:
    c, h, w, n = x.shape
    out_h, out_w = -(-h // size), -(-w // size)
    pad_h, pad_w = out_h * size - h, out_w * size - w
    if pad_h or pad_w:  # TensorFlow puts the odd padding row/column at the bottom/right
        x = np.pad(
            x,
            ((0, 0), (pad_h // 2, pad_h - pad_h // 2), (pad_w // 2, pad_w - pad_w // 2), (0, 0)),
            constant_values=-np.inf,
        )
    pooled: np.ndarray = x.reshape(c, out_h, size, out_w, size, n).max(axis=(2, 4))
    return pooled


def conv2d_same(
    x: np.ndarray, kernel: np.ndarray, bias: np.ndarray, dilation: int = 1
) -> np.ndarray:
    """(N, H, W, Cin) -> (N, H, W, Cout): Keras Conv2D(padding='same', strides=1), no
    activation, with a Keras-layout kernel (kh, kw, cin, cout) of odd size."""
    chwn = np.ascontiguousarray(x.astype(np.float32).transpose(3, 1, 2, 0))
    return _conv_chwn(chwn, kernel, bias, dilation).transpose(3, 1, 2, 0)


def max_pool_same(x: np.ndarray, size: int) -> np.ndarray:
    """(N, H, W, C): Keras MaxPooling2D(pool_size=size, padding='same')."""
    return _pool_chwn(x.transpose(3, 1, 2, 0), size).transpose(3, 1, 2, 0)


@dataclass(frozen=True, slots=True)
class Inception:
    """Four parallel branches, concatenated along channels: 1x1 | 1x1,3x3 | 1x1,3x3 d2 |
    1x1,3x3 d3 (convs in the order Keras created them)."""

    branches: tuple[tuple[Conv, ...], ...]

    def __call__(self, x: np.ndarray) -> np.ndarray:
        outputs = []
        for branch in self.branches:
            y = x
            for conv in branch:
                y = conv(y)
            outputs.append(y)
        return np.concatenate(outputs, axis=0)


Stage = Conv | Inception


@dataclass(frozen=True, slots=True)
class MesoNet:
    """A loaded Meso4 or MesoInception4."""

    name: str
    architecture: str  # "Meso4" or "MesoInception4"
    stages: tuple[tuple[Stage, BatchNorm, int], ...]  # (features, batch norm, pool size)
    hidden: Dense
    output: Dense

    @classmethod
    def load(cls, path: Path) -> MesoNet:
        """Read a Keras weight file of either network; raises ModelError when it is neither."""
        return _load(Path(path))

    def features(self, images: np.ndarray, stages: int | None = None) -> np.ndarray:
        """(N, H, W, 3) RGB in 0-1 -> (N, H', W', C) feature maps after the first `stages`
        blocks of [features, batch norm, max pool] (all four by default)."""
        x = np.ascontiguousarray(images.astype(np.float32).transpose(3, 1, 2, 0))
        for features, norm, pool in self.stages[:stages]:
            x = _pool_chwn(norm(features(x)), pool)
        return x.transpose(3, 1, 2, 0)

    def real_logit(self, images: np.ndarray) -> np.ndarray:
        """(N, 256, 256, 3) RGB in 0-1 -> (N,) logits of P(real)."""
        x = self.features(images)
        # Keras flattens each sample channels-last: (H, W, C), row-major.
        y = self.hidden(x.reshape(len(x), -1))
        y = np.where(y >= 0, y, LEAKY_SLOPE * y)
        return self.output(y)[:, 0]

    def real_probability(self, images: np.ndarray) -> np.ndarray:
        p: np.ndarray = 1.0 / (1.0 + np.exp(-self.real_logit(images)))
        return p


class MesoNetEngine:
    """MesoNet behind the `Engine` protocol: fake logit = logit(1 - P(real)) = -real logit."""

    def __init__(self, path: Path, batch: int = BATCH) -> None:
        self.path = Path(path)
        self.network = MesoNet.load(self.path)
        self.batch = batch
        self.info = ModelInfo(
            name=f"mesonet:{self.path.stem}",
            input_size=INPUT_SIZE,
            mean=(0.0, 0.0, 0.0),
            std=(1.0, 1.0, 1.0),
            temperature=1.0,
            trained=True,
            description=(
                f"MesoNet {self.network.architecture} baseline (Afchar et al. 2018), numpy "
                "re-implementation of the authors' weights; fed swapwatch's aligned face crops, "
                "not the face crops MesoNet was trained on"
            ),
            training={"weights": self.path.name, "source": "github.com/DariusAf/MesoNet"},
        )

    def infer(self, crops: np.ndarray) -> np.ndarray:
        side = self.info.input_size
        if crops.ndim != 4 or crops.shape[1:] != (side, side, 3):
            raise ModelError(f"crops of shape {crops.shape} do not fit model input {side}x{side}")
        logits = np.empty(len(crops), np.float32)
        for start in range(0, len(crops), self.batch):
            chunk = crops[start : start + self.batch].astype(np.float32) / np.float32(255.0)
            logits[start : start + len(chunk)] = -self.network.real_logit(chunk)
        return logits

    def warmup(self) -> None:
        self.infer(np.zeros((1, INPUT_SIZE, INPUT_SIZE, 3), np.uint8))

    def close(self) -> None:
        pass


# Loading ------------------------------------------------------------------------------------

_SUFFIX = re.compile(r"^(.*?)(?:_(\d+))?$")


def _load(path: Path) -> MesoNet:
    try:
        import h5py
    except ImportError as exc:
        raise ModelError(
            "reading MesoNet weights needs h5py: pip install 'swapwatch[eval]'"
        ) from exc
    if not path.is_file():
        raise ModelError(f"model file not found: {path}")
    try:
        with h5py.File(path, "r") as f:
            layers = _keras_layers(f)
    except (OSError, KeyError, ValueError) as exc:
        raise ModelError(f"cannot load MesoNet weights {path}: {exc}") from exc
    try:
        return _assemble(path.stem, layers)
    except (ValueError, IndexError) as exc:
        raise ModelError(f"{path} is not a Meso4 or MesoInception4 weight file: {exc}") from exc


def _keras_layers(f: object) -> dict[str, list[list[np.ndarray]]]:
    """Weights of each layer type, layers in the order Keras created them (by name suffix),
    each as its arrays in Keras' order (kernel, bias; gamma, beta, mean, variance)."""
    import h5py

    assert isinstance(f, h5py.File)
    root = f.get("model_weights", f)  # a full model file, or a weights file
    by_type: dict[str, list[tuple[int, list[np.ndarray]]]] = {}
    for raw in root.attrs["layer_names"]:
        name = raw.decode() if isinstance(raw, bytes) else str(raw)
        group = root[name]
        names = [
            n.decode() if isinstance(n, bytes) else str(n) for n in group.attrs["weight_names"]
        ]
        if not names:
            continue
        match = _SUFFIX.match(name)
        assert match is not None  # the pattern matches any string
        kind, number = match.group(1), int(match.group(2) or 0)
        arrays = [np.asarray(group[n], dtype=np.float32) for n in names]
        by_type.setdefault(kind, []).append((number, arrays))
    return {
        kind: [a for _, a in sorted(found, key=lambda x: x[0])] for kind, found in by_type.items()
    }


def _conv(weights: list[np.ndarray], dilation: int = 1) -> Conv:
    kernel, bias = weights
    if kernel.ndim != 4 or bias.shape != (kernel.shape[3],):
        raise ValueError(f"conv weights of shapes {kernel.shape}, {bias.shape}")
    return Conv(kernel, bias, dilation)


def _norm(weights: list[np.ndarray]) -> BatchNorm:
    gamma, beta, mean, variance = weights
    return BatchNorm.from_keras(gamma, beta, mean, variance)


def _dense(weights: list[np.ndarray]) -> Dense:
    kernel, bias = weights
    if kernel.ndim != 2 or bias.shape != (kernel.shape[1],):
        raise ValueError(f"dense weights of shapes {kernel.shape}, {bias.shape}")
    return Dense(kernel, bias)


def _assemble(name: str, layers: dict[str, list[list[np.ndarray]]]) -> MesoNet:
    convs = layers.get("conv2d", [])
    norms = layers.get("batch_normalization", [])
    denses = layers.get("dense", [])
    if len(norms) != 4 or len(denses) != 2:
        raise ValueError(f"{len(norms)} batch norms and {len(denses)} dense layers, need 4 and 2")
    stages: list[tuple[Stage, BatchNorm, int]] = []
    if len(convs) == 4:
        architecture = "Meso4"
        for conv, norm, pool in zip(convs, norms, (2, 2, 2, 4), strict=True):
            stages.append((_conv(conv), _norm(norm), pool))
    elif len(convs) == 16:
        architecture = "MesoInception4"
        for block in range(2):
            c = convs[7 * block : 7 * block + 7]
            inception = Inception(
                (
                    (_conv(c[0]),),
                    (_conv(c[1]), _conv(c[2])),
                    (_conv(c[3]), _conv(c[4], dilation=2)),
                    (_conv(c[5]), _conv(c[6], dilation=3)),
                )
            )
            widths = tuple(branch[-1].kernel.shape[3] for branch in inception.branches)
            if widths != INCEPTION_WIDTHS[block]:
                raise ValueError(f"inception block {block + 1} has branch widths {widths}")
            stages.append((inception, _norm(norms[block]), 2))
        stages.append((_conv(convs[14]), _norm(norms[2]), 2))
        stages.append((_conv(convs[15]), _norm(norms[3]), 4))
    else:
        raise ValueError(f"{len(convs)} conv layers, need 4 (Meso4) or 16 (MesoInception4)")
    network = MesoNet(name, architecture, tuple(stages), _dense(denses[0]), _dense(denses[1]))
    _check_shapes(network)
    return network


def _check_shapes(network: MesoNet) -> None:
    """Channels must chain from RGB through every stage to the 1024 inputs of the head."""
    channels = 3
    side = INPUT_SIZE
    for features, norm, pool in network.stages:
        if isinstance(features, Conv):
            if features.kernel.shape[2] != channels:
                raise ValueError(
                    f"a conv expects {features.kernel.shape[2]} channels, gets {channels}"
                )
            channels = features.kernel.shape[3]
        else:
            for branch in features.branches:
                if branch[0].kernel.shape[2] != channels:
                    raise ValueError("an inception branch does not take the previous channels")
            channels = sum(branch[-1].kernel.shape[3] for branch in features.branches)
        if norm.scale.shape != (channels,):
            raise ValueError(f"batch norm over {norm.scale.shape} for {channels} channels")
        side = -(-side // pool)
    if network.hidden.kernel.shape[0] != side * side * channels:
        raise ValueError(
            f"the dense layer takes {network.hidden.kernel.shape[0]} inputs, "
            f"not {side * side * channels}"
        )
    if network.output.kernel.shape != (network.hidden.kernel.shape[1], 1):
        raise ValueError(f"output layer of shape {network.output.kernel.shape}")
