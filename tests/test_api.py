"""The public Python API, called as a vendor embedding swapwatch would call it."""

from __future__ import annotations

import asyncio
import json
import os
import re
import socket
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest
from media import Placement, render_frame
from publisher import finished, start_publisher

import swapwatch
from swapwatch import Detector, Event, EventType, NoVerdictReason, Verdict
from swapwatch.cli.main import main
from swapwatch.errors import (
    ConfigError,
    SourceError,
    SourceNotFound,
    SourceUnreadable,
    UnsupportedSource,
)

REPO = Path(__file__).resolve().parent.parent
WORKTREE_ENV = {**os.environ, "PYTHONPATH": str(REPO)}
LIVE_TIMEOUT_S = 60.0


def face_picture(size: int = 300) -> np.ndarray:
    return render_frame(640, 480, [Placement(0.5, 0.45, size)], 0.0)


def write_picture(path: Path, image: np.ndarray) -> Path:
    assert cv2.imwrite(str(path), image[:, :, ::-1])  # OpenCV writes BGR
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def bundled() -> Iterator[Detector]:
    with Detector() as detector:
        yield detector


@pytest.fixture(scope="module")
def always_fake(fake_model: Path) -> Iterator[Detector]:
    with Detector(fake_model) as detector:
        yield detector


# Import ---------------------------------------------------------------------------------


def test_import_swapwatch_loads_nothing_heavy_until_the_api_is_used() -> None:
    code = (
        "import sys, swapwatch\n"
        "heavy = ('numpy', 'onnxruntime', 'av', 'mediapipe', 'cv2', 'swapwatch.api')\n"
        "print(sorted(m for m in heavy if m in sys.modules))\n"
        "from swapwatch import Detector\n"
        "print(Detector.__module__, 'numpy' in sys.modules, swapwatch.__version__)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], env=WORKTREE_ENV, capture_output=True, text=True, check=True
    ).stdout.splitlines()
    assert out == ["[]", f"swapwatch.api.detector True {swapwatch.__version__}"]


def test_the_package_ships_its_type_marker() -> None:
    assert (Path(swapwatch.__file__).parent / "py.typed").is_file()
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    assert "py.typed" in pyproject["tool"]["setuptools"]["package-data"]["swapwatch"]


# Pictures -------------------------------------------------------------------------------


def test_a_picture_from_a_file_and_from_an_array_gets_the_same_verdict(
    bundled: Detector, tmp_path: Path
) -> None:
    image = face_picture()
    from_file = bundled.check_picture(write_picture(tmp_path / "face.png", image))
    from_array = bundled.check_picture(image)

    assert from_array.verdict in (Verdict.REAL, Verdict.FAKE)
    assert from_array.score is not None and 0 <= from_array.score <= 1
    assert (from_file.verdict, from_file.score) == (from_array.verdict, from_array.score)
    (face,) = from_array.faces
    left, top, right, bottom = face.box
    assert left < 320 < right and top < 216 < bottom  # around the pasted head's face
    assert face.score == from_array.score and face.skip_reason is None
    summary = from_array.to_json()
    assert summary["verdict"] == from_array.verdict.value and summary["video"]["still"] is True
    assert summary["faces"][0]["score"] == round(from_array.score, 4)


def test_each_picture_is_judged_alone(always_fake: Detector, real_model: Path) -> None:
    """Faces and decisions of one call never carry into the next."""
    image = face_picture()
    first, second = always_fake.check_picture(image), always_fake.check_picture(image)
    assert first.verdict is Verdict.FAKE and first.to_json()["tracks"][0]["track_id"] == 1
    assert second.to_json() | {"elapsed_seconds": 0} == first.to_json() | {"elapsed_seconds": 0}
    with Detector(real_model) as real:
        assert real.check_picture(image).verdict is Verdict.REAL


def test_a_picture_without_a_face_says_why_there_is_no_verdict(always_fake: Detector) -> None:
    result = always_fake.check_picture(np.full((240, 320, 3), 90, np.uint8))
    assert result.verdict is Verdict.INCONCLUSIVE and result.score is None
    assert result.no_verdict_reason is NoVerdictReason.NO_FACE and result.faces == ()


# Files ----------------------------------------------------------------------------------


def test_scan_gives_what_the_command_prints_for_the_same_file(
    bundled: Detector, one_face_video: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    result = bundled.scan(one_face_video)
    assert main(["scan", str(one_face_video), "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)

    ours = result.to_json()
    assert result.verdict in (Verdict.REAL, Verdict.FAKE) and result.score is not None
    for same in ("verdict", "score", "tracks", "alerts", "frames", "model", "video", "policy"):
        assert ours[same] == printed[same], same


def test_scan_async_runs_in_the_callers_loop(always_fake: Detector, one_face_video: Path) -> None:
    async def two_at_once() -> list[swapwatch.ScanResult]:
        return list(
            await asyncio.gather(
                always_fake.scan_async(one_face_video, max_seconds=1.0),
                always_fake.scan_async(one_face_video, max_seconds=1.0, crop=(0.25, 0, 0.75, 1)),
            )
        )

    whole, cropped = asyncio.run(two_at_once())
    assert whole.verdict is Verdict.FAKE and cropped.verdict is Verdict.FAKE
    assert whole.media_seconds < 1.0
    assert (whole.video.width, cropped.video.width) == (1280, 640)


# Live streams ---------------------------------------------------------------------------


@pytest.mark.network
def test_watch_a_live_publish_calls_back_with_each_event(always_fake: Detector) -> None:
    url = f"rtmp://127.0.0.1:{free_port()}/live/secret-key"
    events: list[Event] = []
    publisher = start_publisher(url, seconds=4.0, face=300)
    try:
        summary = asyncio.run(
            asyncio.wait_for(
                always_fake.watch(url, events.append, stream_id="cam-1", listen=True, timeout=30),
                LIVE_TIMEOUT_S,
            )
        )
        sent = int(finished(publisher))
    finally:
        publisher.kill()

    kinds = [e.type for e in events]
    assert kinds[0] is EventType.STREAM_STARTED and kinds[-1] is EventType.STREAM_ENDED
    assert EventType.ALERT_RAISED in kinds and EventType.STREAM_ERROR not in kinds
    assert {e.stream for e in events} == {"cam-1"}
    assert all("secret-key" not in e.encode() for e in events)
    assert summary.stream_id == "cam-1" and summary.state == "ended"
    assert summary.alarms_raised >= 1 and summary.frames_decoded >= sent - 2
    assert summary.video is not None and summary.video.live


class Boom(Exception):
    pass


def test_an_exception_in_the_callback_stops_the_stream_and_is_raised(
    always_fake: Detector, one_face_video: Path
) -> None:
    seen: list[Event] = []

    def on_event(event: Event) -> None:
        seen.append(event)
        if event.type is EventType.ALERT_RAISED:
            raise Boom("the receiving system is down")

    with pytest.raises(Boom, match="receiving system is down"):
        asyncio.run(asyncio.wait_for(always_fake.watch(one_face_video, on_event), 30))
    assert [e.type for e in seen] == [EventType.STREAM_STARTED, EventType.ALERT_RAISED]
    assert seen[-1].media_time is not None and seen[-1].media_time < 2.5  # before the end


def test_cancelling_watch_ends_the_stream_with_an_event(
    always_fake: Detector, one_face_video: Path
) -> None:
    events: list[Event] = []

    async def watch_then_cancel() -> None:
        started = asyncio.Event()

        def on_event(event: Event) -> None:
            events.append(event)
            started.set()

        task = asyncio.create_task(always_fake.watch(one_face_video, on_event))
        await asyncio.wait_for(started.wait(), 30)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(watch_then_cancel())
    assert events[0].type is EventType.STREAM_STARTED
    assert events[-1].type is EventType.STREAM_ENDED
    assert events[-1].detail == {"reason": "cancelled"}


# Bad input and lifetime -----------------------------------------------------------------


def test_a_recording_given_as_a_picture_is_refused(
    always_fake: Detector, one_face_video: Path
) -> None:
    with pytest.raises(
        UnsupportedSource, match=re.escape("a recording, not a picture: use scan()")
    ):
        always_fake.check_picture(one_face_video)


def test_bad_input_raises_the_documented_error(
    always_fake: Detector, tmp_path: Path, fake_model: Path
) -> None:
    missing = tmp_path / "missing.mp4"
    text = tmp_path / "notes.png"
    text.write_text("not a picture\n")
    cases = [
        (lambda: always_fake.check_picture(missing), SourceNotFound, "no such file"),
        (lambda: always_fake.scan(missing), SourceNotFound, "no such file"),
        (lambda: asyncio.run(always_fake.watch(missing, print)), SourceNotFound, "no such"),
        (lambda: always_fake.check_picture(text), SourceUnreadable, "notes.png"),
        (lambda: always_fake.scan("ftp://host/x.mp4"), UnsupportedSource, "ftp://"),
        (
            lambda: always_fake.check_picture(np.zeros((4, 4), np.uint8)),
            UnsupportedSource,
            "H x W x 3 uint8",
        ),
        (
            lambda: always_fake.check_picture(np.zeros((4, 4, 3), np.float32)),
            UnsupportedSource,
            "float32",
        ),
        (lambda: always_fake.scan(missing, rate=0), ConfigError, "rate must be a positive number"),
        (lambda: always_fake.scan(missing, crop=(0.5, 0, 0.2, 1)), ConfigError, "crop"),
        (lambda: Detector(fake_model, policy="strict"), ConfigError, "unknown policy"),
        (lambda: Detector(fake_model, device="tpu"), ConfigError, "unknown device"),
        (lambda: Detector(fake_model, video_threshold=1.5), ConfigError, "not within"),
    ]
    for call, error, words in cases:
        with pytest.raises(error, match=re.escape(words)):
            call()

    async def blocking_call_inside_a_loop() -> None:
        always_fake.scan(missing)

    with pytest.raises(RuntimeError, match=re.escape("await scan_async()")):
        asyncio.run(blocking_call_inside_a_loop())
    assert issubclass(SourceNotFound, SourceError)  # one `except SourceError` catches them


def test_close_twice_is_fine_and_a_closed_detector_says_so(fake_model: Path) -> None:
    detector = Detector(fake_model)
    detector.check_picture(face_picture())
    detector.close()
    detector.close()
    with pytest.raises(RuntimeError, match="closed"):
        detector.check_picture(face_picture())


# The README's example -------------------------------------------------------------------


def readme_examples() -> list[str]:
    text = (REPO / "README.md").read_text()
    section = text.split("## Use it from Python", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```python\n(.*?)```", section, flags=re.S)


def test_the_readme_example_runs_as_written(tmp_path: Path, one_face_video: Path) -> None:
    examples = readme_examples()
    assert len(examples) == 2
    printed = [  # what each example prints: a verdict; the stream's events, then its summary
        r"^(real|fake) 0\.\d+ \[\(",
        r"^stream\.started None None None\n(.*\n)*stream\.ended .*\nended \d+ alarm\(s\)$",
    ]
    write_picture(tmp_path / "id-photo.jpg", face_picture())
    (tmp_path / "call.mp4").symlink_to(one_face_video)
    for example, expected in zip(examples, printed, strict=True):
        run = subprocess.run(
            [sys.executable, "-c", example],
            cwd=tmp_path,
            env=WORKTREE_ENV,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert run.returncode == 0, run.stderr[-3000:]
        assert re.search(expected, run.stdout, flags=re.M), run.stdout
