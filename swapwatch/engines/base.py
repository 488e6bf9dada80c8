"""The engine protocol: a batch of aligned face crops in, one fake logit per crop out."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol, runtime_checkable

import cv2
import numpy as np

from swapwatch.errors import EngineError, ModelError

# Key under which a model file carries its ModelInfo as JSON (ONNX metadata_props).
METADATA_KEY = "swapwatch"
# 2 adds the operating point, 3 its picture threshold; older files are still read.
METADATA_VERSION = 3
READABLE_VERSIONS = (1, 2, 3)


@dataclass(frozen=True, slots=True)
class OperatingPoint:
    """The verdict settings chosen for this model on held-out real footage, which `scan`,
    `watch`, `eval` and the service use unless told otherwise: a recording is called fake when
    its video score reaches `video_threshold` or a face track's CUSUM reaches `cusum_h`; a
    still picture when its score reaches `picture_threshold` (`video_threshold` in a point set
    before pictures had their own)."""

    video_threshold: float
    cusum_h: float
    set_on: str  # the footage it was chosen on, in words
    real_recordings: int
    reals_called_fake: int
    real_called_fake_upper_95: float  # one-sided 95 % Clopper-Pearson bound of the rate
    model_sha256: str = ""  # the file it was measured on: same weights, metadata without it
    picture_threshold: float | None = None
    real_pictures: int = 0
    pictures_called_fake: int = 0
    picture_called_fake_upper_95: float | None = None

    def __post_init__(self) -> None:
        for threshold in (self.video_threshold, self.picture_threshold):
            if threshold is not None and not 0 < threshold < 1:
                raise ModelError(f"operating point threshold {threshold} not within (0, 1)")
        if not self.cusum_h > 0:
            raise ModelError(f"operating point cusum_h must be positive, got {self.cusum_h}")
        if not 0 <= self.reals_called_fake <= self.real_recordings:
            raise ModelError("operating point: reals called fake outside 0..real_recordings")
        if not 0 <= self.pictures_called_fake <= self.real_pictures:
            raise ModelError("operating point: pictures called fake outside 0..real_pictures")

    @property
    def threshold_for_pictures(self) -> float:
        return self.video_threshold if self.picture_threshold is None else self.picture_threshold


@dataclass(frozen=True, slots=True)
class ModelInfo:
    """What a detector needs around it: how to feed it and how to read its output."""

    name: str
    input_size: int  # square side of the network's input, pixels
    mean: tuple[float, float, float]  # per-channel, applied to RGB scaled to 0-1
    std: tuple[float, float, float]
    temperature: float = 1.0  # calibration: evidence = logit / temperature
    trained: bool = True  # False for test models: the CLI warns that their scores mean nothing
    description: str = ""
    training: dict[str, Any] = field(default_factory=dict)  # data summary, metrics, command
    operating_point: OperatingPoint | None = None  # None: the rule's built-in defaults
    # Side the face crops are cut at when it is larger than the input: they are shrunk to the
    # input by pixel-area averaging, in training and here alike. 0: cut at the input size.
    crop_size: int = 0

    def __post_init__(self) -> None:
        if not 32 <= self.input_size <= 1024:
            raise ModelError(f"model input_size {self.input_size} out of range 32-1024")
        if self.crop_size and not self.input_size <= self.crop_size <= 1024:
            raise ModelError(f"model crop_size {self.crop_size} not within input_size-1024")
        if len(self.mean) != 3 or len(self.std) != 3 or min(self.std) <= 0:
            raise ModelError("model mean/std must be three numbers, std positive")
        if not self.temperature > 0:
            raise ModelError(f"model temperature must be positive, got {self.temperature}")

    @property
    def cut_size(self) -> int:
        """The side face crops are cut at for this model."""
        return self.crop_size or self.input_size

    def to_json(self) -> str:
        return json.dumps({"version": METADATA_VERSION, **asdict(self)}, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> ModelInfo:
        try:
            raw = json.loads(text)
            version = raw.pop("version", None)
            if version not in READABLE_VERSIONS:
                raise ModelError(
                    f"unsupported model metadata version {version!r}: this swapwatch reads "
                    f"{', '.join(map(str, READABLE_VERSIONS))}; a newer release made the model"
                )
            raw["mean"] = tuple(float(v) for v in raw["mean"])
            raw["std"] = tuple(float(v) for v in raw["std"])
            if raw.get("operating_point") is not None:
                raw["operating_point"] = OperatingPoint(**raw["operating_point"])
            return cls(**raw)
        except (ValueError, TypeError, KeyError) as exc:
            raise ModelError(f"malformed model metadata: {exc}") from exc


@runtime_checkable
class Engine(Protocol):
    """An inference backend. Implementations: one module each under swapwatch.engines."""

    info: ModelInfo

    def infer(self, crops: np.ndarray) -> np.ndarray:
        """(N, S, S, 3) uint8 RGB crops -> (N,) float32 fake logits (uncalibrated)."""
        ...

    def warmup(self) -> None:
        """Run once on dummy input so the first real frame is not slow."""
        ...

    def close(self) -> None: ...


def shrunk(crops: np.ndarray, size: int) -> np.ndarray:
    """(N, S, S, 3) crops shrunk to size x size by pixel-area averaging (as training does)."""
    if crops.shape[1] == size:
        return crops
    out = np.empty((len(crops), size, size, crops.shape[3]), crops.dtype)
    for i, crop in enumerate(crops):
        out[i] = cv2.resize(crop, (size, size), interpolation=cv2.INTER_AREA)
    return out


def normalise(crops: np.ndarray, info: ModelInfo) -> np.ndarray:
    """uint8 NHWC crops (cut at the model's cut size) -> float32 NCHW tensor as the model was
    trained on."""
    side = info.cut_size
    if crops.ndim != 4 or crops.shape[1:] != (side, side, 3):
        raise ModelError(f"crops of shape {crops.shape} do not fit model input {side}x{side}")
    crops = shrunk(crops, info.input_size)
    # (c / 255 - mean) / std == c * a + b, per channel. The uint8 crops are transposed to NCHW
    # as they are widened to float (one copy), not after (a second, four times larger).
    inv_std = 1.0 / np.asarray(info.std, np.float32)
    a = (inv_std / np.float32(255.0))[:, None, None]
    b = (-np.asarray(info.mean, np.float32) * inv_std)[:, None, None]
    x = crops.transpose(0, 3, 1, 2).astype(np.float32, order="C")
    x *= a
    x += b
    return x


def detector_logits(engine: Engine, crops: np.ndarray) -> np.ndarray:
    """The detector's logits for `crops`, checked: one finite value per crop.

    Evidence is clipped, and a NaN clips to the top of the range: every face would read as a
    certain fake. A model that gives one is broken (a bad export or quantization), so it stops
    the run instead of counting as evidence.
    """
    logits = np.asarray(engine.infer(crops), np.float32).reshape(-1)
    if len(logits) != len(crops):
        raise EngineError(f"the detector gave {len(logits)} logits for {len(crops)} faces")
    bad = int(np.count_nonzero(~np.isfinite(logits)))
    if bad:
        raise EngineError(
            f"the detector {engine.info.name!r} gave a non-finite logit for {bad} of "
            f"{len(crops)} faces: the model file is broken (re-export it)"
        )
    return logits
