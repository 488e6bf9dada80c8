"""Training pairs: a real face and a fake of the same moment, augmented identically.

A pair is either a real crop and its self-blend, or, for side-by-side live-swap recordings, the
real half's face and the swapped half's face of the same frame. Giving both the same geometry
jitter and the same live-path augmentation leaves the swap itself as the only difference
between them, which is what the detector has to learn. A swapped face with no real face in its
own frame is paired with a real face of its own group (the same person, or the real target of
a swap still, or the reference photo of a talking head), turned like it where one is: paired with
another person, a fake would teach identity rather than manipulation. Reals and recorded fakes
are drawn per family (fakes per kind) and then per group, so no one recording or person
dominates.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field

import cv2
import numpy as np
from numpy.typing import NDArray

from swapwatch.datasets.crops import CONTEXT_SIZE, CROP_SIZE, CropCache, FaceCrops, centre_window
from swapwatch.datasets.lists import MediaItem
from swapwatch.datasets.splits import fake_kind
from swapwatch.errors import ConfigError
from swapwatch.faces.quality import yaw_ratio
from swapwatch.training.augment import AugmentConfig, LivePathAugment
from swapwatch.training.selfblend import SelfBlendConfig, self_blend
from swapwatch.training.sharpness import match_sharpness

# Left and right faces of a side-by-side frame are the same person when their centres (as
# fractions of each half) lie this close.
PAIR_MATCH_DISTANCE = 0.08
# A "fake" half whose face barely differs from the real half was not swapped (the live tool
# swaps one person; others in the picture pass through): mean absolute difference, 0-255.
UNSWAPPED_DIFFERENCE = 4.0
# A recorded fake without a real face in its own frame gets a real partner whose signed yaw ratio
# lies this close, from its own recording where one does. These fakes are mostly turned faces
# (39 % beyond 0.6 in ../shared/data, against 4 % of the reals), so partners drawn at random
# taught "turned = fake".
POSE_MATCH_YAW = 0.1
# Partners to draw from when no real face lies within POSE_MATCH_YAW: the closest in yaw.
POSE_FALLBACK_PARTNERS = 16


@dataclass(slots=True)
class CropPool:
    """Every crop of the training items, with where each came from."""

    crops: np.ndarray  # (N, CONTEXT, CONTEXT, 3) uint8
    landmarks: np.ndarray  # (N, 468, 2)
    fake: np.ndarray  # (N,) bool: recorded fakes (not self-blends)
    family: list[str] = field(default_factory=list)  # per crop
    group: list[str] = field(default_factory=list)  # per crop: identity or recording
    pairs: np.ndarray = field(default_factory=lambda: np.zeros((0, 2), np.int64))  # real, fake
    # Recorded fakes outside `pairs`, each with the real crops it may be paired with.
    lone_fakes: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    partners: list[np.ndarray] = field(default_factory=list)

    @property
    def real_indices(self) -> np.ndarray:
        return np.flatnonzero(~self.fake)

    def summary(self) -> dict[str, int]:
        return {
            "crops": len(self.crops),
            "real_crops": int((~self.fake).sum()),
            "recorded_fake_crops": int(self.fake.sum()),
            "recorded_pairs": len(self.pairs),
            "lone_recorded_fakes": len(self.lone_fakes),
        }


def match_pairs(real: FaceCrops, fake: FaceCrops) -> list[tuple[int, int]]:
    """Indices (real, fake) of the same face in both halves of the same frame."""
    by_frame: dict[int, list[int]] = defaultdict(list)
    for j, frame in enumerate(fake.frames):
        by_frame[int(frame)].append(j)
    matches = []
    for i, frame in enumerate(real.frames):
        candidates = by_frame.get(int(frame), [])
        if not candidates:
            continue
        distances = [np.abs(real.centres[i] - fake.centres[j]).max() for j in candidates]
        best = int(np.argmin(distances))
        if distances[best] <= PAIR_MATCH_DISTANCE:
            matches.append((i, candidates[best]))
    return matches


def is_unswapped(real_crop: np.ndarray, fake_crop: np.ndarray) -> bool:
    difference = np.abs(centre_window(real_crop).astype(np.int16) - centre_window(fake_crop))
    return float(difference.mean()) < UNSWAPPED_DIFFERENCE


def pose_partners(
    yaw: np.ndarray,
    fake_index: int,
    own_reals: np.ndarray,
    all_reals: np.ndarray,
    group_reals: np.ndarray | None = None,
) -> NDArray[np.int64]:
    """Real crops turned like crop `fake_index`: from its own recording if any lie within
    POSE_MATCH_YAW, else from its own group (the same person, or the real target of a swap),
    else from all reals, else the POSE_FALLBACK_PARTNERS closest in yaw. A group's reals are
    taken whatever their pose when none is turned alike: the same person is worth more than
    the same pose, since a fake paired with another person teaches identity."""
    empty = np.zeros(0, np.int64)
    group_reals = empty if group_reals is None else group_reals
    for candidates in (own_reals, group_reals):
        close = candidates[np.abs(yaw[candidates] - yaw[fake_index]) <= POSE_MATCH_YAW]
        if len(close):
            return np.asarray(close, np.int64)
    if len(group_reals):
        return np.asarray(group_reals, np.int64)
    close = all_reals[np.abs(yaw[all_reals] - yaw[fake_index]) <= POSE_MATCH_YAW]
    if len(close):
        return np.asarray(close, np.int64)
    order = np.argsort(np.abs(yaw[all_reals] - yaw[fake_index]), kind="stable")
    return np.asarray(all_reals[order[:POSE_FALLBACK_PARTNERS]], np.int64)


def build_pool(items: Sequence[MediaItem], cache: CropCache) -> CropPool:
    """Load (extracting once) the crops of `items` and pair the halves of recordings."""
    crops, landmarks, fake, family, group = [], [], [], [], []
    owners: list[MediaItem] = []
    offsets: dict[MediaItem, int] = {}
    loaded: dict[MediaItem, FaceCrops] = {}
    count = 0
    for item in items:
        faces = cache.get(item)
        loaded[item] = faces
        offsets[item] = count
        count += len(faces)
        crops.append(faces.crops)
        landmarks.append(faces.landmarks)
        fake.append(np.full(len(faces), item.is_fake))
        family.extend([item.family] * len(faces))
        group.extend([item.group] * len(faces))
        owners.extend([item] * len(faces))
    pool = CropPool(
        np.concatenate(crops) if crops else np.zeros((0, CONTEXT_SIZE, CONTEXT_SIZE, 3), np.uint8),
        np.concatenate(landmarks) if landmarks else np.zeros((0, 468, 2), np.float32),
        np.concatenate(fake) if fake else np.zeros(0, bool),
        family,
        group,
    )
    halves: dict[str, dict[bool, MediaItem]] = defaultdict(dict)
    for item in items:
        if item.pair_id is not None:
            halves[item.pair_id][item.is_fake] = item
    pairs: list[tuple[int, int]] = []
    unswapped: list[tuple[int, int]] = []
    own_reals: dict[MediaItem, np.ndarray] = {}
    for sides in halves.values():
        if len(sides) != 2:
            continue
        real_item, fake_item = sides[False], sides[True]
        start = offsets[real_item]
        own_reals[fake_item] = np.arange(start, start + len(loaded[real_item]))
        for i, j in match_pairs(loaded[real_item], loaded[fake_item]):
            a, b = start + i, offsets[fake_item] + j
            (unswapped if is_unswapped(pool.crops[a], pool.crops[b]) else pairs).append((a, b))
    if unswapped:
        # Faces the live tool left alone are real faces: never train them as fakes.
        pool.fake[[b for _, b in unswapped]] = False
    pool.pairs = np.asarray(pairs, np.int64).reshape(-1, 2)
    pool.lone_fakes = np.setdiff1d(np.flatnonzero(pool.fake), pool.pairs[:, 1])
    if len(pool.lone_fakes) and len(pool.real_indices):
        yaw = np.asarray([yaw_ratio(points) for points in pool.landmarks], np.float32)
        reals = pool.real_indices
        reals_of_group: dict[str, list[int]] = defaultdict(list)
        for index in reals:
            reals_of_group[pool.group[index]].append(int(index))
        no_reals = np.zeros(0, np.int64)
        for index in pool.lone_fakes:
            own = own_reals.get(owners[index], no_reals)
            same_group = np.asarray(reals_of_group.get(pool.group[index], []), np.int64)
            pool.partners.append(pose_partners(yaw, int(index), own, reals, same_group))
    return pool


@dataclass(frozen=True, slots=True)
class PairConfig:
    recorded_pair_share: float = 0.3  # of pairs drawn from live-swap recordings, when there are any
    max_shift: int = 8  # pixels of window jitter around the inference crop
    max_scale: float = 0.06  # +- relative window size
    flip: bool = True
    # The sharper crop of a recorded pair softened to its partner's sharpness
    # (swapwatch.training.sharpness): a recipe option.
    match_sharpness: bool = False
    # Likewise each self-blend and the real face it was made from: the blend's frequency change
    # moves the sharpness of the face centre, where it is measured.
    match_blend_sharpness: bool = False


def _group_of(pool: CropPool, index: int) -> str:
    return pool.group[index] if pool.group else ""


def _draw(strata: list[list[np.ndarray]], rng: np.random.Generator) -> int:
    """A member of a uniformly drawn group of a uniformly drawn stratum."""
    groups = strata[rng.integers(len(strata))]
    members = groups[rng.integers(len(groups))]
    return int(members[rng.integers(len(members))])


def window(image: np.ndarray, dx: int, dy: int, scale: float) -> np.ndarray:
    """A CROP_SIZE picture of the context crop, shifted and scaled about its centre."""
    side = min(CONTEXT_SIZE, round(CROP_SIZE * scale))
    centre = CONTEXT_SIZE / 2
    x0 = int(np.clip(round(centre - side / 2 + dx), 0, CONTEXT_SIZE - side))
    y0 = int(np.clip(round(centre - side / 2 + dy), 0, CONTEXT_SIZE - side))
    part = image[y0 : y0 + side, x0 : x0 + side]
    if side == CROP_SIZE:
        return np.ascontiguousarray(part)
    return cv2.resize(part, (CROP_SIZE, CROP_SIZE), interpolation=cv2.INTER_AREA)


class PairSampler:
    """Draws (real, fake) pairs of CROP_SIZE crops from a pool."""

    def __init__(
        self,
        pool: CropPool,
        augment: AugmentConfig | None = None,
        blend: SelfBlendConfig | None = None,
        config: PairConfig | None = None,
        train: bool = True,
    ) -> None:
        if len(pool.real_indices) == 0:
            raise ConfigError(
                "no real face found in the data: self-blends are made from real faces, so give "
                "real videos or pictures (label real or pair) with a visible face"
            )
        self.pool = pool
        self.config = config or PairConfig()
        self.blend = blend or SelfBlendConfig()
        self.train = train
        self.augment = LivePathAugment(augment or AugmentConfig()) if train else None
        # Real faces are drawn family by family, then group by group: a family with many
        # frames does not drown the others, nor one long recording the people of its family.
        by_family: dict[str, dict[str, list[int]]] = defaultdict(lambda: defaultdict(list))
        for index in pool.real_indices:
            by_family[pool.family[index]][_group_of(pool, index)].append(int(index))
        self._real_by_family = [
            [np.asarray(members) for _, members in sorted(groups.items())]
            for _, groups in sorted(by_family.items())
        ]
        if len(pool.partners) != len(pool.lone_fakes):
            raise ValueError("every lone recorded fake needs its real partners (see build_pool)")
        # Recorded fakes likewise: kind by kind (live swaps, swap stills, talking heads), then
        # group by group, so that the many frames of one tool's recordings do not drown the
        # few stills of other methods. A unit is a recorded pair (< len(pairs)) or a lone fake.
        by_kind: dict[str, dict[str, list[int]]] = defaultdict(lambda: defaultdict(list))
        for unit in range(len(pool.pairs) + len(pool.lone_fakes)):
            index = (
                pool.pairs[unit][1]
                if unit < len(pool.pairs)
                else pool.lone_fakes[unit - len(pool.pairs)]
            )
            kind = fake_kind(pool.family[index]).value
            by_kind[kind][_group_of(pool, index)].append(unit)
        self._recorded_by_kind = [
            [np.asarray(members) for _, members in sorted(groups.items())]
            for _, groups in sorted(by_kind.items())
        ]

    def real_index(self, rng: np.random.Generator) -> int:
        return _draw(self._real_by_family, rng)

    def _recorded_unit(self, rng: np.random.Generator) -> int:
        return _draw(self._recorded_by_kind, rng)

    def sample(self, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """(real, fake), each CROP_SIZE x CROP_SIZE x 3 uint8."""
        real, fake, _ = self._sample(rng, with_mask=False)
        return real, fake

    def sample_with_mask(
        self, rng: np.random.Generator
    ) -> tuple[np.ndarray, np.ndarray, BlendRegion | None]:
        """(real, fake, region): as `sample` (the same draws), with where a self-blend mixed
        the two faces (see `BlendRegion`); None for a recorded fake, whose mask is unknown."""
        return self._sample(rng, with_mask=True)

    def _sample(
        self, rng: np.random.Generator, with_mask: bool
    ) -> tuple[np.ndarray, np.ndarray, BlendRegion | None]:
        pool, config = self.pool, self.config
        recorded = len(pool.pairs) + len(pool.lone_fakes)
        mask: np.ndarray | None = None
        drawn_recorded = bool(recorded) and rng.random() < config.recorded_pair_share
        if drawn_recorded:
            pick = self._recorded_unit(rng)
            if pick < len(pool.pairs):
                a, b = pool.pairs[pick]
                real, fake = pool.crops[a], pool.crops[b]
            else:
                lone = pick - len(pool.pairs)
                partners = pool.partners[lone]
                real = pool.crops[partners[rng.integers(len(partners))]]
                fake = pool.crops[pool.lone_fakes[lone]]
        else:
            index = self.real_index(rng)
            real = pool.crops[index]
            blend = self_blend(real, pool.landmarks[index], rng, self.blend)
            fake = blend.fake
            if with_mask:
                mask = blend.mask.astype(np.float32)
        if not self.train:
            region = None
            if mask is not None:
                cut = np.ascontiguousarray(centre_window(mask[..., None])[..., 0])
                region = BlendRegion(cut, np.ones_like(cut))
            return (
                np.ascontiguousarray(centre_window(real)),
                np.ascontiguousarray(centre_window(fake)),
                region,
            )
        dx, dy = rng.integers(-config.max_shift, config.max_shift + 1, size=2)
        scale = 1.0 + rng.uniform(-config.max_scale, config.max_scale)
        pair = [window(real, int(dx), int(dy), scale), window(fake, int(dx), int(dy), scale)]
        matching = config.match_sharpness if drawn_recorded else config.match_blend_sharpness
        if matching:
            pair = list(match_sharpness(*pair))
        if mask is not None:
            mask = window(mask, int(dx), int(dy), scale)
        if config.flip and rng.random() < 0.5:
            pair = [np.ascontiguousarray(p[:, ::-1]) for p in pair]
            mask = None if mask is None else mask[:, ::-1]
        assert self.augment is not None
        (real_out, fake_out), plan = self.augment.apply(pair, rng)
        if mask is None:
            return real_out, fake_out, None
        return real_out, fake_out, BlendRegion(plan.moved(mask), plan.uncovered(*mask.shape))

    def batch(self, pairs: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """(2*pairs, S, S, 3) crops, reals then fakes; (2*pairs,) labels 0 = real, 1 = fake."""
        drawn = [self.sample(rng) for _ in range(pairs)]
        images = np.stack([r for r, _ in drawn] + [f for _, f in drawn])
        return images, pair_labels(pairs)

    def batch_with_masks(self, pairs: int, rng: np.random.Generator) -> BlendBatch:
        """As `batch` (the same draws), with each crop's blend mask where it is known: all
        zero for a real face, the blend's for a self-blend, unknown for a recorded fake."""
        drawn = [self.sample_with_mask(rng) for _ in range(pairs)]
        images = np.stack([r for r, _, _ in drawn] + [f for _, f, _ in drawn])
        none = np.zeros((CROP_SIZE, CROP_SIZE), np.float32)
        regions = [r for _, _, r in drawn]
        masks = np.stack([none] * pairs + [none if r is None else r.mask for r in regions])
        uncovered = np.stack(
            [none + 1] * pairs + [none + 1 if r is None else r.uncovered for r in regions]
        )
        known = np.array([True] * pairs + [r is not None for r in regions])
        return BlendBatch(images, pair_labels(pairs), masks, uncovered, known)


@dataclass(frozen=True, slots=True)
class BlendRegion:
    """Where a self-blend mixed two faces, in its crop's pixels."""

    mask: np.ndarray  # S x S float32 in [0, 1]: the blend's share of each pixel
    uncovered: np.ndarray  # S x S float32 in [0, 1]: how much of each pixel no occluder covers


@dataclass(frozen=True, slots=True)
class BlendBatch:
    """A batch of pairs with what is known of where each crop was blended."""

    images: np.ndarray  # (2 * pairs, S, S, 3) uint8, reals then fakes
    labels: np.ndarray  # (2 * pairs,) float32, 0 = real, 1 = fake
    masks: np.ndarray  # (2 * pairs, S, S) float32 blend masks in [0, 1] (reals: 0)
    uncovered: np.ndarray  # (2 * pairs, S, S) float32, as `BlendRegion.uncovered` (reals: 1)
    known: np.ndarray  # (2 * pairs,) bool: whether the crop's mask is known


def pair_labels(pairs: int) -> np.ndarray:
    """The labels of a batch of `pairs` pairs, reals then fakes."""
    return np.concatenate([np.zeros(pairs, np.float32), np.ones(pairs, np.float32)])
