"""What an install that is not editable holds: the container image and any `pip install .` run
from a wheel built from the sources, so every model file the service loads must be in it."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from swapwatch.models import bundled_model_files

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "swapwatch"


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Iterator[zipfile.ZipFile]:
    # Built from a copy of what the Dockerfile copies, so nothing is written into the checkout.
    source = tmp_path_factory.mktemp("source")
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    shutil.copytree(
        PACKAGE, source / "swapwatch", ignore=shutil.ignore_patterns("__pycache__", "*.pyc")
    )
    out = tmp_path_factory.mktemp("wheel")
    built = subprocess.run(
        [
            *(sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps"),
            *("--no-build-isolation", "--wheel-dir", str(out), str(source)),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert built.returncode == 0, built.stderr
    (path,) = out.glob("swapwatch-*.whl")
    with zipfile.ZipFile(path) as archive:
        yield archive


def test_the_wheel_holds_every_model_file_the_service_loads(wheel: zipfile.ZipFile) -> None:
    names = set(wheel.namelist())
    wanted = {p.relative_to(ROOT).as_posix() for p in bundled_model_files()}
    assert wanted - names == set()
    for name in wanted:
        assert wheel.getinfo(name).file_size == (ROOT / name).stat().st_size, name


def test_every_bundled_model_file_is_named_by_the_code(wheel: zipfile.ZipFile) -> None:
    """A model file shipped but never loaded is dead weight in every image; one loaded but not
    named in bundled_model_files() escapes the container build's check."""
    shipped = {
        n
        for n in wheel.namelist()
        if n.startswith("swapwatch/models/") and n.endswith((".onnx", ".tflite"))
    }
    assert shipped == {p.relative_to(ROOT).as_posix() for p in bundled_model_files()}
