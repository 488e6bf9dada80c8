"""The fixed three-way split of a list by group, and the leave-one-kind-out splits.

Every group (identity or recording; one group may span families: a swap shares the group of its
real target and its source person) goes to exactly one part:
- `train`: what a model learns from;
- `validation`: what chooses among candidates and checkpoints (and calibrates);
- `lockbox`: scored once, at the end, for the model that ships.

The assignment is a salted hash of the group's name, so it stays put when items are added and
no one can steer it by choosing. Fake groups are split kind by kind (live swaps, swap stills,
talking heads) so that each kind has groups in every part; real-only groups are split family
by family. A family or kind with fewer than MIN_GROUPS_TO_HOLD_OUT groups stays in training: one
group tells nothing about other people.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum

from swapwatch.datasets.lists import MediaItem, group_rank

SPLIT_SEED = "swapwatch-v2"
MIN_GROUPS_TO_HOLD_OUT = 3


class Part(StrEnum):
    TRAIN = "train"
    VALIDATION = "validation"
    LOCKBOX = "lockbox"


class FakeKind(StrEnum):
    """What made a fake, coarsely: what a leave-one-kind-out run leaves out."""

    LIVE_SWAP = "live-swap"  # recordings of a real-time swap tool
    SWAP_STILL = "swap-still"  # swaps and reenactments from other makers, mostly stills
    TALKING_HEAD = "talking-head"  # whole-face animation from one photo: no blend boundary
    OTHER = "other"  # a user's fakes with no family we know


def fake_kind(family: str) -> FakeKind:
    if family.startswith("live-swap"):
        return FakeKind.LIVE_SWAP
    if family.startswith(("swap-", "reenact-")):
        return FakeKind.SWAP_STILL
    if family.startswith("talking-head"):
        return FakeKind.TALKING_HEAD
    return FakeKind.OTHER


def item_kind(item: MediaItem) -> str:
    """The kind an item is reported under: its fake kind, or 'real'."""
    return fake_kind(item.family).value if item.is_fake else "real"


@dataclass(frozen=True, slots=True)
class SplitConfig:
    lockbox_fraction: float = 0.2
    validation_fraction: float = 0.25
    seed: str = SPLIT_SEED

    def __post_init__(self) -> None:
        if self.lockbox_fraction < 0 or self.validation_fraction < 0:
            raise ValueError("split fractions must not be negative")
        if self.lockbox_fraction + self.validation_fraction >= 1:
            raise ValueError("lockbox and validation together must leave groups to train on")


def _held_out_counts(groups: int, config: SplitConfig) -> tuple[int, int]:
    if groups < MIN_GROUPS_TO_HOLD_OUT:
        return 0, 0
    lockbox = max(1, round(config.lockbox_fraction * groups)) if config.lockbox_fraction else 0
    validation = (
        max(1, round(config.validation_fraction * groups)) if config.validation_fraction else 0
    )
    # Keep at least one group to learn from.
    while lockbox + validation >= groups and validation > 0:
        validation -= 1
    return lockbox, validation


def assign_parts(items: Sequence[MediaItem], config: SplitConfig | None = None) -> dict[str, Part]:
    """The part of every group of `items`."""
    config = config or SplitConfig()
    parts: dict[str, Part] = {}

    def deal(groups: Iterable[str]) -> None:
        free = sorted(
            {g for g in groups if g not in parts}, key=lambda g: group_rank(g, config.seed)
        )
        lockbox, validation = _held_out_counts(len(free), config)
        for i, group in enumerate(free):
            if i < lockbox:
                parts[group] = Part.LOCKBOX
            elif i < lockbox + validation:
                parts[group] = Part.VALIDATION
            else:
                parts[group] = Part.TRAIN

    fake_groups: dict[FakeKind, set[str]] = defaultdict(set)
    real_groups: dict[str, set[str]] = defaultdict(set)
    for item in items:
        if item.is_fake:
            fake_groups[fake_kind(item.family)].add(item.group)
        else:
            real_groups[item.family].add(item.group)
    # Scarce fakes first (a group with fakes of two kinds goes with the first), then reals.
    for kind in sorted(fake_groups, key=lambda k: (len(fake_groups[k]), k.value)):
        deal(fake_groups[kind])
    for family in sorted(real_groups):
        deal(real_groups[family])
    return parts


def split(
    items: Sequence[MediaItem], config: SplitConfig | None = None
) -> dict[Part, list[MediaItem]]:
    """Items by part, in their original order."""
    parts = assign_parts(items, config)
    out: dict[Part, list[MediaItem]] = {part: [] for part in Part}
    for item in items:
        out[parts[item.group]].append(item)
    return out


@dataclass(frozen=True, slots=True)
class LeaveOut:
    """One leave-one-kind-out run: train without any fake of `kind`, score on it."""

    kind: FakeKind
    train: list[MediaItem]
    score: list[MediaItem]


def leave_one_kind_out(
    items: Sequence[MediaItem], kind: FakeKind, config: SplitConfig | None = None
) -> LeaveOut:
    """Training: the train part less every group that holds a fake of `kind` (its reals too,
    so no identity of the scored fakes is learned). Scored: every fake of `kind` outside the
    lockbox, with the reals of their groups and the validation part's reals of other groups.
    No group is in both."""
    parts = assign_parts(items, config)
    kind_groups = {i.group for i in items if i.is_fake and fake_kind(i.family) is kind}
    train = [i for i in items if parts[i.group] is Part.TRAIN and i.group not in kind_groups]
    score = [
        i
        for i in items
        if parts[i.group] is not Part.LOCKBOX
        and (
            (i.group in kind_groups and (not i.is_fake or fake_kind(i.family) is kind))
            or (parts[i.group] is Part.VALIDATION and not i.is_fake)
        )
    ]
    return LeaveOut(kind, train, score)


@dataclass(frozen=True, slots=True)
class TrainingSplit:
    """How a training run splits its list into what it learns from and what chooses its
    checkpoint and calibrates it; recorded in the run's checkpoint so that export splits alike.

    `groups-v2` (the default): the fixed three-way split above; the lockbox is never seen,
    and with `leave_out` every group holding a fake of that kind is left out of both parts.
    `family-fraction` (runs before it): per family, `validation_fraction` of its groups by a
    salted hash, no lockbox (`swapwatch.datasets.lists.split_by_group`).
    """

    scheme: str = "groups-v2"
    validation_fraction: float = 0.25
    seed: str = SPLIT_SEED
    leave_out: FakeKind | None = None

    def __post_init__(self) -> None:
        if self.scheme not in ("groups-v2", "family-fraction"):
            raise ValueError(f"unknown split scheme {self.scheme!r}")
        if self.leave_out is not None and self.scheme != "groups-v2":
            raise ValueError("a kind can be left out only with the groups-v2 split")

    def apply(self, items: Sequence[MediaItem]) -> tuple[list[MediaItem], list[MediaItem]]:
        """(train, validation)."""
        if self.scheme == "family-fraction":
            from swapwatch.datasets.lists import split_by_group

            return split_by_group(items, self.validation_fraction, self.seed)
        config = SplitConfig(validation_fraction=self.validation_fraction, seed=self.seed)
        parts = assign_parts(items, config)
        left_out = (
            {i.group for i in items if i.is_fake and fake_kind(i.family) is self.leave_out}
            if self.leave_out is not None
            else set()
        )
        kept = [i for i in items if i.group not in left_out]
        train = [i for i in kept if parts[i.group] is Part.TRAIN]
        validation = [i for i in kept if parts[i.group] is Part.VALIDATION]
        return train, validation

    def to_json(self) -> dict[str, str | float | None]:
        return {
            "split_scheme": self.scheme,
            "validation_fraction": self.validation_fraction,
            "split_seed": self.seed,
            "leave_out": None if self.leave_out is None else self.leave_out.value,
        }

    @staticmethod
    def from_record(config: dict[str, object]) -> TrainingSplit:
        """The split a run recorded; runs that recorded no scheme used `family-fraction`."""
        scheme = str(config.get("split_scheme") or "family-fraction")
        default_seed = SPLIT_SEED if scheme == "groups-v2" else "swapwatch"
        leave_out = config.get("leave_out")
        fraction = config.get("validation_fraction", 0.25)
        return TrainingSplit(
            scheme=scheme,
            validation_fraction=float(fraction) if isinstance(fraction, (int, float)) else 0.25,
            seed=str(config.get("split_seed") or default_seed),
            leave_out=FakeKind(str(leave_out)) if leave_out else None,
        )
