"""Fuzzing with damaged media: random byte flips and truncations of a test-made H.264 (mp4) and
VP8 (webm) file, fed to `scan` and pushed live to the service's RTMP ingest.

`scan` either gives a verdict on the frames the file really holds (exit 0, JSON) or refuses the
file in one line (exit 3), never a traceback, a hang, or a verdict on a file that stopped
decoding early. The service takes a damaged live push without a 500, a traceback or a stuck
stream, and stays healthy."""

from __future__ import annotations

import contextlib
import io
import json
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from types import FrameType

import av
import pytest
from fuzzing import TracebackCatcher, catching_tracebacks, examples
from hypothesis import example, given, settings
from hypothesis import strategies as st
from media import Placement, write_video
from service import RunningService, running_service

from swapwatch.cli.main import main
from swapwatch.server.config import ServiceConfig

pytestmark = pytest.mark.fuzz

SCAN_TIMEOUT_S = 60
FPS = 15


@pytest.fixture(scope="module")
def clean(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, int]]:
    """Each codec's file, with the number of frames it really holds."""
    folder = tmp_path_factory.mktemp("fuzz-media")
    face = [Placement(0.5, 0.5, 160)]
    made = {
        "h264": write_video(folder / "clip.mp4", face, 1.0, FPS, (320, 240)),
        "vp8": write_video(folder / "clip.webm", face, 1.0, FPS, (320, 240), codec="libvpx"),
    }
    out = {}
    for codec, path in made.items():
        with av.open(str(path)) as container:
            frames = sum(1 for _ in container.decode(video=0))
        out[codec] = (path, frames)
    return out


# Bit flips (where, as a share of the file; which bits) and where the file is cut (None: not).
damages = st.tuples(
    st.lists(st.tuples(st.floats(0, 1, exclude_max=True), st.integers(1, 255)), max_size=40),
    st.none() | st.floats(0, 1),
)


def damaged(data: bytes, damage: tuple[list[tuple[float, int]], float | None]) -> bytes:
    flips, cut = damage
    out = bytearray(data)
    for where, mask in flips:
        out[int(where * len(out))] ^= mask
    return bytes(out if cut is None else out[: int(cut * len(out))])


class ScanTimeout(Exception):
    pass


@contextlib.contextmanager
def time_limit(seconds: int) -> Iterator[None]:
    def expired(signum: int, frame: FrameType | None) -> None:
        raise ScanTimeout(f"scan ran past {seconds}s")

    previous = signal.signal(signal.SIGALRM, expired)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def scan(path: Path, model: Path) -> tuple[int, str, str]:
    """`swapwatch scan --json` in this process (as the CLI runs it): exit code, stdout, stderr."""
    out, err = io.StringIO(), io.StringIO()
    with (
        time_limit(SCAN_TIMEOUT_S),
        contextlib.redirect_stdout(out),
        contextlib.redirect_stderr(err),
    ):
        code = main(["scan", str(path), "--model", str(model), "--json"])
    return code, out.getvalue(), err.getvalue()


@pytest.mark.parametrize("codec", ["h264", "vp8"])
@settings(max_examples=examples(3, 100))
@given(damage=damages)
# Found by the fast profile in a fresh clone: a WebM cut in its last 1 % lost 2 of its 15 frames
# and was given a verdict (the end check allowed two frame intervals missing).
@example(damage=([], 0.9921875))
def test_a_damaged_file_gets_a_verdict_on_what_it_holds_or_exit_3(
    clean: dict[str, tuple[Path, int]],
    fake_model: Path,
    tmp_path_factory: pytest.TempPathFactory,
    codec: str,
    damage: tuple[list[tuple[float, int]], float | None],
) -> None:
    original, frames = clean[codec]
    path = tmp_path_factory.mktemp("damaged") / f"clip.{'mp4' if codec == 'h264' else 'webm'}"
    path.write_bytes(damaged(original.read_bytes(), damage))
    with catching_tracebacks() as catcher:
        code, out, err = scan(path, fake_model)
        assert catcher.take() == []
    assert "Traceback" not in err
    if code == 3:
        assert out == ""  # no verdict that reads like a clean result
        errors = [line for line in err.splitlines() if line.startswith("swapwatch: error")]
        assert len(errors) == 1, err
        return
    assert code == 0, (code, err)
    result = json.loads(out)
    # A verdict covers the recording: a file that stopped decoding early is refused (exit 3).
    assert result["frames"]["decoded"] >= 0.9 * frames, result["frames"]
    assert result["verdict"] in ("fake", "real", "inconclusive")


@pytest.fixture(scope="module")
def ingest_service(
    fake_model: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[RunningService, TracebackCatcher]]:
    config = ServiceConfig(
        analysis={"model": fake_model},
        ingest={"read_timeout_s": 3.0},
        events={"path": tmp_path_factory.mktemp("fuzz-push") / "events.sqlite"},
    )
    with catching_tracebacks() as catcher, running_service(config) as service:
        yield service, catcher


FINISHED = ("ended", "failed", "reconnecting")


@pytest.mark.network
@settings(max_examples=examples(1, 20))
@given(damage=damages)
def test_a_damaged_live_push_ends_the_stream_cleanly(
    clean: dict[str, tuple[Path, int]],
    ingest_service: tuple[RunningService, TracebackCatcher],
    tmp_path_factory: pytest.TempPathFactory,
    damage: tuple[list[tuple[float, int]], float | None],
) -> None:
    # FLV (what RTMP carries) takes H.264, not VP8: the live push is fuzzed with H.264 only.
    service, catcher = ingest_service
    original, _ = clean["h264"]
    path = tmp_path_factory.mktemp("pushed") / "clip.mp4"
    path.write_bytes(damaged(original.read_bytes(), damage))
    reply = service.request("POST", "/v1/streams", {"ingest": "rtmp"})
    assert reply.status == 201, reply.body
    sid = reply.body["id"]
    pusher = subprocess.run(
        [
            sys.executable,
            str(Path(__file__).parent / "push_file.py"),
            reply.body["ingest_url"],
            str(path),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    pushed = pusher.returncode == 0 and int(pusher.stdout) > 0
    status = service.request("GET", f"/v1/streams/{sid}").body
    if pushed:  # the publisher hung up: the stream must not stay "running" on a dead push
        deadline = time.monotonic() + 30
        while status["state"] not in FINISHED and time.monotonic() < deadline:
            time.sleep(0.2)
            status = service.request("GET", f"/v1/streams/{sid}").body
        assert status["state"] in FINISHED, status
    assert service.request("DELETE", f"/v1/streams/{sid}").status == 204
    assert service.request("GET", "/healthz").status == 200
    assert catcher.take() == []
