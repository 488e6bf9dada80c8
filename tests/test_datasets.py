"""Media lists, the split by group, and the face-crop cache."""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np
import pytest
from media import Placement, face_landmarks, render_frame, write_video
from test_kyc_challenges import turned

from swapwatch.datasets.crops import (
    CROP_SIZE,
    TRAINING_GATE,
    CropCache,
    centre_window,
    extract,
    kept_for_training,
)
from swapwatch.datasets.lists import (
    LEFT_HALF,
    RIGHT_HALF,
    Label,
    MediaItem,
    read_folders,
    read_list,
    split_by_group,
    validation_groups,
)
from swapwatch.errors import ConfigError
from swapwatch.faces.analyzer import FaceAnalyzer, FaceBatch
from swapwatch.faces.quality import QualityConfig, QualityReport, SkipReason, assess


def touch(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x")
    return path


def test_manifest_pairs_become_a_real_left_half_and_a_fake_right_half(tmp_path: Path) -> None:
    touch(tmp_path / "dfl/a.mp4")
    touch(tmp_path / "real/b.jpg")
    (tmp_path / "list.csv").write_text(
        "file,family,label,group\n"
        "dfl/a.mp4,live-swap,pair,id:a\n"
        "real/b.jpg,photos,real,\n"
        "weights/m.h5,baseline,weights,m\n"
    )
    items = read_list(tmp_path / "list.csv")
    assert [(i.name, i.label, i.crop) for i in items] == [
        ("a.mp4#left", Label.REAL, LEFT_HALF),
        ("a.mp4#right", Label.FAKE, RIGHT_HALF),
        ("b.jpg", Label.REAL, None),
    ]
    assert items[0].pair_id == items[1].pair_id is not None
    assert items[2].group == "b" and items[2].is_image  # no group: the file is its own


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ("missing.mp4,real,g", "no such file"),
        ("a.mp4,maybe,g", "label must be real, fake or pair"),
    ],
)
def test_bad_rows_name_their_line(tmp_path: Path, row: str, message: str) -> None:
    touch(tmp_path / "a.mp4")
    # Blank lines count: the number is the line an editor shows.
    (tmp_path / "list.csv").write_text(f"file,label,group\na.mp4,real,g\n\n\n{row}\n")
    with pytest.raises(ConfigError, match=rf"list.csv:5: {message}"):
        read_list(tmp_path / "list.csv")


def test_a_list_without_the_needed_columns_is_refused(tmp_path: Path) -> None:
    (tmp_path / "list.csv").write_text("name,class\na.mp4,real\n")
    with pytest.raises(ConfigError, match="'file' \\(or 'path'\\) and 'label'"):
        read_list(tmp_path / "list.csv")


def test_the_media_column_may_be_called_path_as_design_md_writes_it(tmp_path: Path) -> None:
    touch(tmp_path / "a.mp4")
    (tmp_path / "list.csv").write_text("path,label,family\na.mp4,fake,swap\n")
    (item,) = read_list(tmp_path / "list.csv")
    assert (item.path, item.label, item.family) == (tmp_path / "a.mp4", Label.FAKE, "swap")


def test_a_list_saved_in_another_encoding_gets_one_clear_error(tmp_path: Path) -> None:
    touch(tmp_path / "déjà.mp4")
    (tmp_path / "list.csv").write_bytes("file,label\ndéjà.mp4,real\n".encode("latin-1"))
    with pytest.raises(ConfigError, match=r"not UTF-8 text .*save the list as UTF-8"):
        read_list(tmp_path / "list.csv")


def test_crop_column_is_parsed_and_checked(tmp_path: Path) -> None:
    touch(tmp_path / "a.mp4")
    (tmp_path / "ok.csv").write_text('file,label,crop\na.mp4,fake,"0.5,0,1,1"\n')
    assert read_list(tmp_path / "ok.csv")[0].crop == (0.5, 0.0, 1.0, 1.0)
    (tmp_path / "bad.csv").write_text('file,label,crop\na.mp4,fake,"0.5,0,0.2,1"\n')
    with pytest.raises(ConfigError, match="not inside 0-1"):
        read_list(tmp_path / "bad.csv")


def test_folders_group_by_first_subfolder(tmp_path: Path) -> None:
    touch(tmp_path / "real/alice/1.jpg")
    touch(tmp_path / "real/alice/2.mp4")
    touch(tmp_path / "real/bob.png")
    touch(tmp_path / "real/notes.txt")
    touch(tmp_path / "fake/alice/3.mp4")
    items = read_folders([tmp_path / "real"], [tmp_path / "fake"])
    assert sorted((i.path.name, i.label.value, i.group) for i in items) == [
        ("1.jpg", "real", "real/alice"),
        ("2.mp4", "real", "real/alice"),
        ("3.mp4", "fake", "fake/alice"),
        ("bob.png", "real", "real/bob"),
    ]
    with pytest.raises(ConfigError, match="no such folder"):
        read_folders([tmp_path / "nowhere"])


def items_of(groups: int, family: str, per_group: int = 3) -> list[MediaItem]:
    return [
        MediaItem(Path(f"{family}/{g}/{k}.mp4"), Label.REAL, f"{family}:{g}", family)
        for g in range(groups)
        for k in range(per_group)
    ]


def test_split_never_puts_one_group_on_both_sides() -> None:
    items = items_of(12, "video") + items_of(20, "photo")
    train, validation = split_by_group(items, fraction=0.25)
    train_groups = {i.group for i in train}
    validation_groups_ = {i.group for i in validation}
    assert not train_groups & validation_groups_
    assert len(train) + len(validation) == len(items)
    # a quarter of each family's groups, not a quarter of all groups from one family
    assert len({g for g in validation_groups_ if g.startswith("video")}) == 3
    assert len({g for g in validation_groups_ if g.startswith("photo")}) == 5


def test_split_is_stable_when_another_family_is_added() -> None:
    base = items_of(12, "video")
    before = validation_groups(base)
    after = validation_groups(base + items_of(8, "other"))
    assert before <= after
    assert validation_groups(base, seed="another") != before


def test_families_with_few_groups_stay_in_training() -> None:
    assert validation_groups(items_of(3, "tiny")) == frozenset()


@pytest.fixture(scope="module")
def face_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("crops")
    return write_video(directory / "face.mp4", [Placement(0.5, 0.5, 300)], seconds=0.5)


def test_cached_crops_hold_the_inference_crop_at_their_centre(face_clip: Path) -> None:
    item = MediaItem(face_clip, Label.REAL, "g")
    faces = extract(item, every=5)
    assert len(faces) == 3  # frames 0, 5, 10 of 15
    assert faces.frames.tolist() == [0, 5, 10]
    # The live pipeline's own crop of frame 0 is the centre of the cached one.
    import av

    with av.open(str(face_clip)) as container:
        first = next(container.decode(video=0)).to_ndarray(format="rgb24")
    analyzer = FaceAnalyzer(quiet=True)
    try:
        live = analyzer.analyse(first).crops[0]
    finally:
        analyzer.close()
    cached = centre_window(faces.crops[0])
    assert cached.shape == (CROP_SIZE, CROP_SIZE, 3)
    assert np.abs(cached.astype(int) - live).mean() < 1.0
    # Landmarks are in crop pixels: the face's points fill the middle of the crop.
    pts = faces.landmarks[0]
    assert 60 < pts[:, 0].mean() < 196 and 60 < pts[:, 1].mean() < 196


def test_cache_extracts_once_and_keys_on_the_crop(face_clip: Path, tmp_path: Path) -> None:
    cache = CropCache(tmp_path / "cache", every=5)
    whole = MediaItem(face_clip, Label.REAL, "g")
    try:
        first = cache.get(whole)
        stored = cache.path(whole)
        assert stored.is_file()
        stamp = stored.stat().st_mtime_ns
        again = cache.get(whole)
        assert stored.stat().st_mtime_ns == stamp  # read back, not extracted again
        np.testing.assert_array_equal(first.crops, again.crops)
        left = MediaItem(face_clip, Label.REAL, "g", crop=(0.0, 0.0, 0.3, 1.0))
        assert cache.path(left) != stored
        assert len(cache.get(left)) == 0  # the face sits in the middle, not in the left 30 %
    finally:
        cache.close()


def test_cache_survives_a_fresh_copy_of_the_data(face_clip: Path, tmp_path: Path) -> None:
    # The shared data is copied anew each session: same bytes, new paths' times.
    cache = CropCache(tmp_path / "cache", every=5)
    copy = tmp_path / "copy.mp4"
    copy.write_bytes(face_clip.read_bytes())
    item = MediaItem(copy, Label.REAL, "g")
    try:
        cache.get(item)
        stored = cache.path(item)
        stamp = stored.stat().st_mtime_ns
        copy.unlink()
        copy.write_bytes(face_clip.read_bytes())
        os.utime(copy, (1e9, 1e9))
        cache.get(item)
        assert cache.path(item) == stored
        assert stored.stat().st_mtime_ns == stamp  # read back, not extracted again
        changed = face_clip.read_bytes()
        copy.write_bytes(changed[:-1] + bytes([changed[-1] ^ 1]))
        assert cache.path(item) != stored  # other bytes, another entry
    finally:
        cache.close()


def test_pictures_each_get_a_fresh_tracker(tmp_path: Path) -> None:
    for name, cx in (("a.png", 0.3), ("b.png", 0.7)):
        frame = render_frame(640, 360, [Placement(cx, 0.5, 300, sway=0)], 0.0)
        cv2.imwrite(str(tmp_path / name), frame[:, :, ::-1])
    cache = CropCache(tmp_path / "cache")
    try:
        a = cache.get(MediaItem(tmp_path / "a.png", Label.REAL, "a"))
        b = cache.get(MediaItem(tmp_path / "b.png", Label.REAL, "b"))
    finally:
        cache.close()
    assert len(a) == len(b) == 1
    assert a.centres[0, 0] < 0.5 < b.centres[0, 0]


def test_training_keeps_the_turns_every_cached_crop_was_made_with() -> None:
    """The product's gate reads degrees; training still drops faces by the old ratio (0.85, near
    33 degrees on this mesh), so the cache and the trained models stay what they were."""
    frame = render_frame(640, 480, [Placement(0.5, 0.5, 300, sway=0.0)], 0.0)
    mesh = face_landmarks(frame).astype(np.float32)
    far = turned(mesh, yaw=60.0)
    crop = np.full((CROP_SIZE, CROP_SIZE, 3), 128, np.uint8)
    # The training analyzer lets a turn past the product's gate reach the ratio below.
    assert assess(crop, far, frame.shape, QualityConfig()).reason is SkipReason.EXTREME_POSE
    assert assess(crop, far, frame.shape, TRAINING_GATE).reason is not SkipReason.EXTREME_POSE

    faces = [turned(mesh, yaw=25.0), turned(mesh, yaw=38.0), mesh, mesh]
    reasons = [None, None, SkipReason.TOO_DARK, None]
    batch = FaceBatch(
        track_ids=np.arange(4),
        boxes=np.zeros((4, 4), np.float32),
        crops=np.zeros((4, CROP_SIZE, CROP_SIZE, 3), np.uint8),
        quality=tuple(QualityReport(r, 300.0, 128.0, 50.0, 0.0) for r in reasons),
        points=np.stack(faces),
    )
    assert kept_for_training(batch).tolist() == [True, False, False, True]
