"""The fixed train / validation / lockbox split and the leave-one-kind-out splits."""

from __future__ import annotations

from pathlib import Path

import pytest

from swapwatch.datasets.lists import Label, MediaItem
from swapwatch.datasets.splits import (
    FakeKind,
    Part,
    SplitConfig,
    assign_parts,
    fake_kind,
    leave_one_kind_out,
    split,
)


def media(name: str, label: Label, group: str, family: str) -> MediaItem:
    return MediaItem(Path(f"/data/{name}.mp4"), label, group, family)


def toy_list() -> list[MediaItem]:
    items = []
    for i in range(12):  # live-swap recordings: real half and fake half share the group
        items.append(media(f"dfl{i}r", Label.REAL, f"dfl{i}", "live-swap-x"))
        items.append(media(f"dfl{i}f", Label.FAKE, f"dfl{i}", "live-swap-x"))
    for i in range(8):  # talking heads with their real reference
        items.append(media(f"th{i}", Label.FAKE, f"th{i}", "talking-head-a"))
        items.append(media(f"th{i}ref", Label.REAL, f"th{i}", "real-image-a"))
    for i in range(10):
        items.append(media(f"sw{i}", Label.FAKE, f"sw{i}", "swap-b"))
    # One group holding fakes of two kinds and reals of a third family.
    items.append(media("cluster-swap", Label.FAKE, "cluster", "swap-c"))
    items.append(media("cluster-talk", Label.FAKE, "cluster", "talking-head-c"))
    items.append(media("cluster-real", Label.REAL, "cluster", "real-image-c"))
    for i in range(200):
        items.append(media(f"photo{i}", Label.REAL, f"person{i}", "real-photos"))
    return items


def test_every_group_lands_in_exactly_one_part() -> None:
    items = toy_list()
    parts = split(items)
    seen: dict[str, Part] = {}
    for part, members in parts.items():
        for item in members:
            assert seen.setdefault(item.group, part) is part
    assert sum(len(v) for v in parts.values()) == len(items)


def test_each_fake_kind_and_real_family_is_held_out_in_proportion() -> None:
    items = toy_list()
    parts = split(items)
    for kind in (FakeKind.LIVE_SWAP, FakeKind.TALKING_HEAD, FakeKind.SWAP_STILL):
        for part in Part:
            assert any(i.is_fake and fake_kind(i.family) is kind for i in parts[part]), (kind, part)
    photos = {p: sum(i.family == "real-photos" for i in parts[p]) for p in Part}
    assert photos == {Part.LOCKBOX: 40, Part.VALIDATION: 50, Part.TRAIN: 110}


def test_split_is_stable_when_items_are_added_elsewhere() -> None:
    items = toy_list()
    before = assign_parts(items)
    more = [*items, media("new", Label.REAL, "newcomer", "real-video-z")]
    after = assign_parts(more)
    assert all(after[g] is p for g, p in before.items())


def test_a_family_with_few_groups_stays_in_training() -> None:
    items = [media("a", Label.FAKE, "g1", "swap-rare"), media("b", Label.FAKE, "g2", "swap-rare")]
    assert set(assign_parts(items).values()) == {Part.TRAIN}


@pytest.mark.parametrize("kind", [FakeKind.LIVE_SWAP, FakeKind.SWAP_STILL, FakeKind.TALKING_HEAD])
def test_leave_one_kind_out_never_leaks_a_group(kind: FakeKind) -> None:
    items = toy_list()
    run = leave_one_kind_out(items, kind)
    trained = {i.group for i in run.train}
    scored = {i.group for i in run.score}
    assert not trained & scored
    assert not any(i.is_fake and fake_kind(i.family) is kind for i in run.train)
    scored_fakes = [i for i in run.score if i.is_fake]
    assert scored_fakes and all(fake_kind(i.family) is kind for i in scored_fakes)
    assert any(not i.is_fake for i in run.score)
    lockbox = {g for g, p in assign_parts(items).items() if p is Part.LOCKBOX}
    assert not (trained | scored) & lockbox


def test_split_config_refuses_nonsense() -> None:
    with pytest.raises(ValueError):
        SplitConfig(lockbox_fraction=0.6, validation_fraction=0.5)
    with pytest.raises(ValueError):
        SplitConfig(lockbox_fraction=-0.1)
