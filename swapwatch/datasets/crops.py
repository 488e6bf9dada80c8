"""Face crops of a media item, extracted once with the live pipeline's own tracker and cached.

Crops are cut with the inference geometry (`aligned_square`) but a little wider
(`CONTEXT_SIZE` pixels holding the `CROP_SIZE` crop at their centre), so training can jitter
the window and the self-blend can move the face. The centre `CROP_SIZE` window of a cached
crop is exactly what the detector sees at inference.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import av
import av.error
import cv2
import numpy as np

from swapwatch.datasets.digest import content_digest
from swapwatch.datasets.lists import MediaItem
from swapwatch.errors import SourceUnreadable
from swapwatch.faces.analyzer import FaceAnalyzer, FaceBatch
from swapwatch.faces.geometry import RotatedSquare, aligned_square, warp
from swapwatch.faces.quality import QualityConfig, yaw_ratio
from swapwatch.stream.source import crop_fraction, upright_rgb

log = logging.getLogger(__name__)

CROP_SIZE = 224
CONTEXT_SIZE = 256
CACHE_VERSION = 3  # 2: pictures searched again inside a border; 3: keyed on content
# Training crops keep the head turns every cached crop and trained model so far was made with:
# the nose's offset between the cheeks at most 0.85 (about 30 degrees), the product's gate
# until it moved to degrees. Other gates are the product's. Training on more turned faces is a
# recipe change of its own (and a new CACHE_VERSION).
TRAINING_MAX_YAW_RATIO = 0.85
TRAINING_GATE = QualityConfig(max_turn=90.0)


def training_analyzer() -> FaceAnalyzer:
    return FaceAnalyzer(quality=TRAINING_GATE, quiet=True)


def kept_for_training(batch: FaceBatch) -> np.ndarray:
    """(N,) bool: the faces of a frame that training keeps, those that pass the analyzer's
    gates and turn no further than TRAINING_MAX_YAW_RATIO."""
    turned = np.array([abs(yaw_ratio(p)) > TRAINING_MAX_YAW_RATIO for p in batch.points], bool)
    kept: np.ndarray = batch.usable & ~turned
    return kept


@dataclass(frozen=True, slots=True)
class FaceCrops:
    """Every usable face of one item, as parallel arrays."""

    crops: np.ndarray  # (N, CONTEXT_SIZE, CONTEXT_SIZE, 3) uint8
    landmarks: np.ndarray  # (N, 468, 2) float32 in crop pixels
    frames: np.ndarray  # (N,) int32 frame index in the item (0 for pictures)
    tracks: np.ndarray  # (N,) int32 track id within the item
    centres: np.ndarray  # (N, 2) float32 face centre as a fraction of the (cropped) frame

    def __len__(self) -> int:
        return len(self.crops)

    @staticmethod
    def empty() -> FaceCrops:
        return FaceCrops(
            np.zeros((0, CONTEXT_SIZE, CONTEXT_SIZE, 3), np.uint8),
            np.zeros((0, 468, 2), np.float32),
            np.zeros(0, np.int32),
            np.zeros(0, np.int32),
            np.zeros((0, 2), np.float32),
        )


def centre_window(crops: np.ndarray) -> np.ndarray:
    """The inference crop at the centre of context crops (..., CONTEXT, CONTEXT, 3)."""
    lo = (CONTEXT_SIZE - CROP_SIZE) // 2
    return crops[..., lo : lo + CROP_SIZE, lo : lo + CROP_SIZE, :]


def default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "swapwatch" / "crops"


def cache_key(item: MediaItem, every: int) -> str:
    identity = {
        "content": content_digest(item.path),
        "crop": item.crop,
        "every": every,
        "version": CACHE_VERSION,
        "context": CONTEXT_SIZE,
    }
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:24]


def frames_of(item: MediaItem, every: int) -> Iterator[tuple[int, np.ndarray]]:
    """(index, RGB frame) of a picture, or of every `every`th frame of a recording."""
    if item.is_image:
        bgr = cv2.imread(str(item.path), cv2.IMREAD_COLOR)
        if bgr is None:
            raise SourceUnreadable(f"cannot decode picture {item.path}")
        image = np.ascontiguousarray(bgr[:, :, ::-1])
        yield 0, crop_fraction(image, item.crop) if item.crop else image
        return
    try:
        with av.open(str(item.path)) as container:
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            for index, frame in enumerate(container.decode(stream)):
                if index % every:
                    continue
                image = upright_rgb(frame)
                yield index, crop_fraction(image, item.crop) if item.crop else image
    except (av.error.FFmpegError, IndexError) as exc:
        raise SourceUnreadable(f"cannot decode {item.path}: {exc}") from exc


def context_square(points: np.ndarray) -> RotatedSquare:
    square = aligned_square(points)
    return RotatedSquare(square.cx, square.cy, square.side * CONTEXT_SIZE / CROP_SIZE, square.angle)


def extract(item: MediaItem, every: int = 2, analyzer: FaceAnalyzer | None = None) -> FaceCrops:
    """Track faces through the item and keep the crops that pass the training gates (the
    product's, with the turn read as TRAINING_MAX_YAW_RATIO). A given analyzer's own gates
    apply as well: give one built on TRAINING_GATE, or its turn gate narrows the crops."""
    own = analyzer is None
    analyzer = analyzer or training_analyzer()
    crops, landmarks, frames, tracks, centres = [], [], [], [], []
    try:
        for index, image in frames_of(item, every):
            if item.is_image:
                # A fresh tracker per picture, and a border where the face fills the picture;
                # not the close-range search, which came after this cache version.
                found = analyzer.analyse_picture(image, close_range=False)
                batch, image = found.batch, found.image
            else:
                batch = analyzer.analyse(image)
            h, w = image.shape[:2]
            for i in np.flatnonzero(kept_for_training(batch)):
                square = context_square(batch.points[i])
                matrix = square.to_output(CONTEXT_SIZE)
                pts = batch.points[i, :, :2].astype(np.float64)
                crops.append(warp(image, square, CONTEXT_SIZE))
                landmarks.append(pts @ matrix[:, :2].T + matrix[:, 2])
                frames.append(index)
                tracks.append(int(batch.track_ids[i]))
                box = batch.boxes[i]
                centres.append(((box[0] + box[2]) / 2 / w, (box[1] + box[3]) / 2 / h))
    finally:
        if own:
            analyzer.close()
    if not crops:
        return FaceCrops.empty()
    return FaceCrops(
        np.stack(crops),
        np.asarray(landmarks, np.float32),
        np.asarray(frames, np.int32),
        np.asarray(tracks, np.int32),
        np.asarray(centres, np.float32),
    )


class CropCache:
    """Extracted crops on disk, one uncompressed .npz per item and sampling stride."""

    def __init__(self, directory: Path | None = None, every: int = 2) -> None:
        self.directory = Path(directory or default_cache_dir())
        self.every = every
        self._analyzer: FaceAnalyzer | None = None

    def path(self, item: MediaItem) -> Path:
        return self.directory / f"{cache_key(item, self.every)}.npz"

    def get(self, item: MediaItem) -> FaceCrops:
        path = self.path(item)
        if path.is_file():
            with np.load(path) as data:
                return FaceCrops(*(data[f] for f in FaceCrops.__slots__))
        if self._analyzer is None:
            self._analyzer = training_analyzer()
        self._analyzer.reset()
        crops = extract(item, self.every, self._analyzer)
        self.directory.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(".partial.npz")
        np.savez(partial, **{f: getattr(crops, f) for f in FaceCrops.__slots__})
        partial.replace(path)
        log.info("cached %d face crops of %s", len(crops), item.name)
        return crops

    def close(self) -> None:
        if self._analyzer is not None:
            self._analyzer.close()
            self._analyzer = None
