"""Fuzzing the labelled-list reader that `eval` and `train` use: any CSV gives its items or one
`ConfigError` naming the file (and the line), never another exception."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import pytest
from fuzzing import examples
from hypothesis import given, settings
from hypothesis import strategies as st

from swapwatch.datasets.lists import Label, read_list
from swapwatch.errors import ConfigError

pytestmark = pytest.mark.fuzz

COLUMNS = ["file", "path", "label", "group", "family", "crop", "weights", "x"]
MEDIA = ["a.mp4", "b.png", "missing.mp4", "", "../a.mp4", "sub/c.mp4", "a.mp4\0", "ä.mp4"]
cells = {
    "file": st.sampled_from(MEDIA) | st.text(max_size=12),
    "path": st.sampled_from(MEDIA) | st.text(max_size=12),
    "label": st.sampled_from(["real", "fake", "pair", "weights", "FAKE", " real ", ""])
    | st.text(max_size=8),
    "crop": st.sampled_from(["", "0,0,0.5,1", "0.5;0;1;1", "1,1,0,0", "nan,0,1,1", "0,0,inf,1"])
    | st.lists(st.floats(), max_size=5).map(lambda v: ",".join(map(str, v)))
    | st.text(max_size=12),
}
any_cell = st.text(max_size=12)


@st.composite
def csv_lists(draw: st.DrawFn) -> str:
    columns = draw(st.lists(st.sampled_from(COLUMNS), max_size=6))
    rows = draw(
        st.lists(st.tuples(*(cells.get(c, any_cell) for c in columns)), max_size=6)
        if columns
        else st.just([])
    )
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(columns)
    writer.writerows(rows)
    text = out.getvalue()
    # Now and then, damage it as a hand edit or a bad export would.
    cut = draw(st.integers(0, len(text)))
    return draw(
        st.sampled_from(
            [text, text[:cut], text[:cut] + '"' + text[cut:], "\ufeff" + text, text + "a,b,c\n"]
        )
    )


def check(listed: Path) -> None:
    try:
        items = read_list(listed)
    except ConfigError as exc:
        assert str(listed) in str(exc) or "no such file" in str(exc), exc
        assert "\n" not in str(exc).strip(), exc
    else:
        assert items and all(i.path.is_file() and i.label in set(Label) for i in items)
        for item in items:
            if item.crop is not None:
                left, top, right, bottom = item.crop
                assert 0 <= left < right <= 1 and 0 <= top < bottom <= 1


@pytest.fixture(scope="module")
def media(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("lists")
    for name in ("a.mp4", "b.png", "sub/c.mp4", "ä.mp4"):
        (folder / name).parent.mkdir(exist_ok=True)
        (folder / name).write_bytes(b"not decoded here")
    return folder


@settings(max_examples=examples(150, 4000))
@given(text=csv_lists())
def test_any_csv_list_reads_or_gives_one_config_error(media: Path, text: str) -> None:
    listed = media / "list.csv"
    listed.write_text(text, "utf-8", errors="surrogatepass")
    check(listed)


@settings(max_examples=examples(60, 1500))
@given(content=st.binary(max_size=300))
def test_any_bytes_as_a_list_read_or_give_one_config_error(media: Path, content: bytes) -> None:
    listed = media / "list.csv"
    listed.write_bytes(b"file,label\n" + content)
    check(listed)
