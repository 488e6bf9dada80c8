from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from fuzzing import load_profile
from media import Placement, write_linear_model, write_video
from receivers import Receiver

import swapwatch.stream.worker as worker_module

load_profile()  # before the test modules import: their @settings build on it

# Large enough that the face inside the pasted head picture passes the size gate.
BIG = 300


@pytest.fixture(scope="session")
def media_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("media")


@pytest.fixture(scope="session")
def one_face_video(media_dir: Path) -> Path:
    return write_video(
        media_dir / "one_face.mp4", [Placement(0.5, 0.5, BIG)], seconds=3.0, size=(1280, 720)
    )


@pytest.fixture(scope="session")
def two_face_video(media_dir: Path) -> Path:
    return write_video(
        media_dir / "two_faces.mp4",
        [Placement(0.27, 0.5, BIG), Placement(0.75, 0.5, 280, sway=10.0)],
        seconds=3.0,
        size=(1280, 720),
    )


@pytest.fixture(scope="session")
def no_face_video(media_dir: Path) -> Path:
    return write_video(media_dir / "no_face.mp4", [], seconds=2.0)


@pytest.fixture(scope="session")
def fake_model(media_dir: Path) -> Path:
    """Says 'fake' with logit +3 for every face."""
    return write_linear_model(media_dir / "always_fake.onnx", bias=3.0)


@pytest.fixture(scope="session")
def real_model(media_dir: Path) -> Path:
    """Says 'real' with logit -3 for every face."""
    return write_linear_model(media_dir / "always_real.onnx", bias=-3.0)


@pytest.fixture(scope="session")
def redness_model(media_dir: Path) -> Path:
    """Logit grows with how much redder than blue the crop is: it reacts to what it is shown."""
    return write_linear_model(media_dir / "redness.onnx", weights=(8.0, 0.0, -8.0), bias=-1.0)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    """A webhook receiver on a free loopback port, recording every delivery."""
    hook = Receiver().start()
    try:
        yield hook
    finally:
        hook.stop()


@pytest.fixture
def slow_model_close(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each stream's face models take 2 s to close, as on a loaded machine: a stream's state
    turns final before its models are closed, and what a client does on seeing it must hold
    in between."""
    close = worker_module.close_analyzer

    def slowly(analyzer: object, quiet: bool = True) -> None:
        time.sleep(2.0)
        close(analyzer, quiet)  # type: ignore[arg-type]

    monkeypatch.setattr(worker_module, "close_analyzer", slowly)
