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


def test_real_groups_are_held_out_in_proportion() -> None:
    parts = split(toy_list())
    photos = {p: sum(i.family == "real-photos" for i in parts[p]) for p in Part}
    # 200 groups, each by its own hash: about 20 % lockbox and 25 % validation.
    assert 25 <= photos[Part.LOCKBOX] <= 55 and 35 <= photos[Part.VALIDATION] <= 65


def test_a_group_keeps_its_part_whatever_else_the_list_holds() -> None:
    items = toy_list()
    before = assign_parts(items)
    # More groups of a kind that is already there, and a list with half of the groups.
    more = [*items, *(media(f"new{i}", Label.FAKE, f"dfl-new{i}", "live-swap-x") for i in range(9))]
    after = assign_parts(more)
    assert all(after[g] is p for g, p in before.items())
    fewer = assign_parts(items[::2])
    assert all(before[g] is p for g, p in fewer.items())


DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


@pytest.mark.data
@pytest.mark.skipif(not (DATA / "manifest.csv").is_file(), reason="../shared/data is not present")
def test_every_fake_kind_of_the_shared_data_has_groups_in_every_part() -> None:
    from swapwatch.datasets.lists import read_list

    items = read_list(DATA / "manifest.csv")
    parts = assign_parts(items)
    for kind in (FakeKind.LIVE_SWAP, FakeKind.TALKING_HEAD, FakeKind.SWAP_STILL):
        held = {
            parts[g] for g in {i.group for i in items if i.is_fake and fake_kind(i.family) is kind}
        }
        assert held == set(Part), kind


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
