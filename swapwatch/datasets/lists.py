"""Lists of labelled media: the shared manifest, a user's CSV, or real/fake folders.

A CSV needs `file` and `label` columns; `group` (identity or recording), `family` and `crop`
are optional. Labels are `real`, `fake`, or `pair`: one side-by-side recording whose left half
is real and right half is fake at the same moment, which becomes two items. Rows labelled
`weights` (model files in the shared manifest) are skipped. Paths are relative to the CSV.
"""

from __future__ import annotations

import csv
import hashlib
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from swapwatch.errors import ConfigError

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".webp", ".bmp"})
VIDEO_SUFFIXES = frozenset({".mp4", ".mkv", ".mov", ".webm", ".avi", ".flv", ".ts", ".m4v"})
SKIPPED_LABELS = frozenset({"weights"})

Crop = tuple[float, float, float, float]  # left, top, right, bottom as fractions of the frame
LEFT_HALF: Crop = (0.0, 0.0, 0.5, 1.0)
RIGHT_HALF: Crop = (0.5, 0.0, 1.0, 1.0)


class Label(StrEnum):
    REAL = "real"
    FAKE = "fake"


@dataclass(frozen=True, slots=True)
class MediaItem:
    """One labelled picture or recording (or the part of it that `crop` names)."""

    path: Path
    label: Label
    group: str  # the unit of splitting: frames of one group never straddle train/validation
    family: str = "user"
    crop: Crop | None = None
    pair_id: str | None = None  # items cut from the same side-by-side recording share this

    @property
    def is_image(self) -> bool:
        return self.path.suffix.lower() in IMAGE_SUFFIXES

    @property
    def name(self) -> str:
        side = {LEFT_HALF: "#left", RIGHT_HALF: "#right"}.get(self.crop, "") if self.crop else ""
        return f"{self.path.name}{side}"

    @property
    def is_fake(self) -> bool:
        return self.label is Label.FAKE


def read_list(csv_path: Path, root: Path | None = None) -> list[MediaItem]:
    """Items of a CSV list. Raises `ConfigError` naming the line of any bad row."""
    csv_path = Path(csv_path)
    root = root or csv_path.parent
    try:
        text = csv_path.read_text(encoding="utf-8-sig")
    except OSError as exc:
        raise ConfigError(f"cannot read list {csv_path}: {exc.strerror or exc}") from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"{csv_path}: not UTF-8 text (byte {exc.start}); save the list as UTF-8"
        ) from None
    reader = csv.DictReader(text.splitlines())
    columns = set(reader.fieldnames or ())
    # design.md names the media column `path`; our own lists say `file`. Either will do.
    file_column = "file" if "file" in columns else "path"
    if not {file_column, "label"} <= columns:
        raise ConfigError(f"{csv_path}: a list needs 'file' (or 'path') and 'label' columns")
    items: list[MediaItem] = []
    for row in reader:
        label = (row.get("label") or "").strip().lower()
        if label in SKIPPED_LABELS:
            continue
        where = f"{csv_path}:{reader.line_num}"
        path = root / (row.get(file_column) or "").strip()
        if not path.is_file():
            raise ConfigError(f"{where}: no such file {path}")
        group = (row.get("group") or "").strip() or path.stem
        family = (row.get("family") or "").strip() or "user"
        crop = parse_crop((row.get("crop") or "").strip(), where)
        if label == "pair":
            pair_id = str(path)
            items.append(MediaItem(path, Label.REAL, group, family, LEFT_HALF, pair_id))
            items.append(MediaItem(path, Label.FAKE, group, family, RIGHT_HALF, pair_id))
        elif label in Label.__members__.values():
            items.append(MediaItem(path, Label(label), group, family, crop))
        else:
            raise ConfigError(f"{where}: label must be real, fake or pair, got {label!r}")
    if not items:
        raise ConfigError(f"{csv_path}: the list holds no media")
    return items


def parse_crop(text: str, where: str) -> Crop | None:
    if not text:
        return None
    try:
        left, top, right, bottom = (float(v) for v in text.replace(";", ",").split(","))
    except ValueError:
        raise ConfigError(f"{where}: crop must be four fractions L,T,R,B, got {text!r}") from None
    if not (0 <= left < right <= 1 and 0 <= top < bottom <= 1):
        raise ConfigError(f"{where}: crop {text!r} is not inside 0-1 with L<R and T<B")
    return left, top, right, bottom


def read_folders(real: Iterable[Path] = (), fake: Iterable[Path] = ()) -> list[MediaItem]:
    """Every picture and video under the folders. The group is the first sub-folder (an
    identity or recording), or the file's own name when it sits at the top."""
    items: list[MediaItem] = []
    for label, folders in ((Label.REAL, real), (Label.FAKE, fake)):
        for folder in folders:
            folder = Path(folder)
            if not folder.is_dir():
                raise ConfigError(f"no such folder {folder}")
            for path in sorted(folder.rglob("*")):
                suffix = path.suffix.lower()
                if not path.is_file() or suffix not in IMAGE_SUFFIXES | VIDEO_SUFFIXES:
                    continue
                relative = path.relative_to(folder)
                group = relative.parts[0] if len(relative.parts) > 1 else path.stem
                items.append(MediaItem(path, label, f"{folder.name}/{group}", folder.name))
    if not items:
        raise ConfigError("the folders hold no pictures or videos")
    return items


def group_rank(group: str, seed: str) -> str:
    return hashlib.sha256(f"{seed}\0{group}".encode()).hexdigest()


def validation_groups(
    items: Sequence[MediaItem], fraction: float = 0.25, seed: str = "swapwatch"
) -> frozenset[str]:
    """Groups held out for validation: in each family, the `fraction` of its groups that rank
    first by a salted hash (stable when items are added). Families with fewer than four groups
    stay in training: a lone group tells nothing about other identities."""
    by_family: dict[str, set[str]] = defaultdict(set)
    for item in items:
        by_family[item.family].add(item.group)
    chosen: set[str] = set()
    for groups in by_family.values():
        if len(groups) < 4:
            continue
        count = max(1, round(fraction * len(groups)))
        chosen.update(sorted(groups, key=lambda g: group_rank(g, seed))[:count])
    return frozenset(chosen)


def split_by_group(
    items: Sequence[MediaItem], fraction: float = 0.25, seed: str = "swapwatch"
) -> tuple[list[MediaItem], list[MediaItem]]:
    """(train, validation), never splitting a group."""
    held_out = validation_groups(items, fraction, seed)
    train = [i for i in items if i.group not in held_out]
    validation = [i for i in items if i.group in held_out]
    return train, validation
