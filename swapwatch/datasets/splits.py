"""The fixed three-way split of a list by group, and the leave-one-kind-out splits.

Every group (identity or recording; one group may span families: a swap shares the group of its
real target and its source person) goes to exactly one part:
- `train`: what a model learns from;
- `validation`: what chooses among candidates and checkpoints (and calibrates);
- `lockbox`: scored once, at the end, for the model that ships.

A group's part follows from its name alone: a salted hash of the name, read as a number in
[0, 1), below `lockbox_fraction` is the lockbox, below `lockbox_fraction + validation_fraction`
validation, else train. So a group never moves when items or groups are added or removed, or
when two tools read different lists: a list that trains and one that scores agree on every group
they share. The salt is the first of `swapwatch-v2`, `swapwatch-v2.1`, ... under which every fake
kind of the v2 data (live swaps, swap stills, talking heads) has a group in each part:
`swapwatch-v2` itself (tests/test_splits.py checks it on ../shared/data).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

from swapwatch.datasets.lists import MediaItem, group_rank

SPLIT_SEED = "swapwatch-v2"


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


def part_of(group: str, config: SplitConfig | None = None) -> Part:
    """The part of one group, from its name alone."""
    config = config or SplitConfig()
    u = int(group_rank(group, config.seed)[:16], 16) / 2**64
    if u < config.lockbox_fraction:
        return Part.LOCKBOX
    if u < config.lockbox_fraction + config.validation_fraction:
        return Part.VALIDATION
    return Part.TRAIN


def assign_parts(items: Sequence[MediaItem], config: SplitConfig | None = None) -> dict[str, Part]:
    """The part of every group of `items`."""
    return {item.group: part_of(item.group, config) for item in items}


def groups_of_kind(items: Sequence[MediaItem], kind: FakeKind) -> set[str]:
    """Groups holding a fake of `kind`: what a leave-one-kind-out run leaves out whole."""
    return {i.group for i in items if i.is_fake and fake_kind(i.family) is kind}


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
    kind_groups = groups_of_kind(items, kind)
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
        left_out = groups_of_kind(items, self.leave_out) if self.leave_out is not None else set()
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
