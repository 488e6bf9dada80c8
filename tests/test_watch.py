"""`watch`: the live view, run on a short file played at media speed, without a terminal."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from media import Placement, write_linear_model, write_video

from swapwatch.cli import watch as watch_module
from swapwatch.cli.main import main
from swapwatch.cli.watch import RateMeter, WatchView, _bar
from swapwatch.events.model import EventType
from swapwatch.events.outbox import EventLog
from swapwatch.stream.pipeline import FrameResult


@pytest.fixture(scope="module")
def video(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("media") / "face.mp4"
    return write_video(path, [Placement(0.5, 0.5, 280)], seconds=2, size=(640, 360))


@pytest.fixture(scope="module")
def fake_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_linear_model(tmp_path_factory.mktemp("models") / "fake.onnx", bias=3.0)


def test_watch_prints_alerts_with_media_times_and_a_summary(
    video: Path,
    fake_model: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(watch_module, "STATUS_EVERY_S", 0.5)
    started = time.monotonic()
    assert main(["watch", str(video), "--model", str(fake_model)]) == 0
    out = capsys.readouterr().out
    assert re.search(r"^alert\.raised face \d+ at \d+\.\d\ds", out, flags=re.M)
    # Status lines show the worker's tracks: the face, its score, CUSUM and state.
    faces = re.findall(r"^status .*\| face (\d+) (\d\.\d\d) cusum ([\d.]+)h (\w+)", out, re.M)
    assert faces and faces[-1][3] == "ALARM" and float(faces[-1][1]) > 0.9
    assert re.search(r"^summary: stream ended after \d+\.\d\ds of media", out, flags=re.M)
    assert "\x1b[" not in out  # no terminal codes in logs
    assert time.monotonic() - started >= 1.5  # played at media speed, not as fast as it decodes


def test_watch_missing_file_exits_3(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["watch", str(tmp_path / "missing.mp4")]) == 3
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no such file" in err[0]


def test_ctrl_c_stops_cleanly_with_0(
    tmp_path: Path,
    video: Path,
    fake_model: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    on_result = WatchView.on_result

    def interrupt_after_first_alert(self: WatchView, result: FrameResult) -> None:
        on_result(self, result)
        if result.alerts:
            signal.raise_signal(signal.SIGINT)  # as if the user pressed Ctrl-C

    monkeypatch.setattr(watch_module.WatchView, "on_result", interrupt_after_first_alert)
    outbox = tmp_path / "events.sqlite"
    assert main(["watch", str(video), "--model", str(fake_model), "--events", str(outbox)]) == 0
    with EventLog(outbox) as log:
        last = [stored.event() for stored in log.read_after(0, 1000)][-1]
    assert last.type is EventType.STREAM_ENDED and last.detail == {"reason": "interrupted"}
    out = capsys.readouterr().out
    assert "alert.raised" in out
    assert re.search(r"^summary: interrupted after (\d+\.\d+)s", out, flags=re.M)
    media = float(re.search(r"interrupted after (\d+\.\d+)s", out).group(1))  # type: ignore[union-attr]
    assert media < 1.5


@pytest.mark.parametrize(
    ("score", "expected"),
    [
        (0.0, "\u2591" * 10 + " 0.00"),
        (0.71, "\u2588" * 7 + "\u2591" * 3 + " 0.71"),
        (1.0, "\u2588" * 10 + " 1.00"),
    ],
)
def test_score_bar(score: float, expected: str) -> None:
    assert _bar(score) == expected


def test_rate_meter_measures_over_its_window() -> None:
    meter = RateMeter(window=2.0)
    assert meter.update(0.0, 0) == 0.0
    rates = [meter.update(t / 4, int(t / 4 * 30)) for t in range(1, 41)]  # 30 per second
    assert rates[-1] == pytest.approx(30.0, rel=0.05)


# `swapwatch watch` in a child process that signals itself once the first alert is shown: the
# signal goes through the real process, as one from a terminal or a supervisor would.
SIGNALLING_CHILD = textwrap.dedent(
    """
    import os, signal, sys
    from swapwatch.cli import watch
    from swapwatch.cli.main import main

    on_result = watch.WatchView.on_result

    def signal_after_first_alert(self, result):
        on_result(self, result)
        if result.alerts:
            os.kill(os.getpid(), signal.Signals[os.environ["SIGNAL"]])

    watch.WatchView.on_result = signal_after_first_alert
    sys.exit(main(sys.argv[1:]))
    """
)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_stops_watch_cleanly_with_a_recorded_and_delivered_end(
    tmp_path: Path, video: Path, fake_model: Path, signum: signal.Signals
) -> None:
    outbox = tmp_path / "events.sqlite"
    delivered = tmp_path / "delivered.jsonl"
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            SIGNALLING_CHILD,
            "watch",
            str(video),
            "--model",
            str(fake_model),
            "--events",
            str(outbox),
            "--sink",
            f"jsonl:{delivered}",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[1]), "SIGNAL": signum.name},
    )
    assert proc.returncode == 0, proc.stderr
    assert re.search(r"^summary: interrupted after \d+\.\d\ds of media", proc.stdout, flags=re.M)
    with EventLog(outbox) as log:
        last = [stored.event() for stored in log.read_after(0, 1000)][-1]
    assert last.type is EventType.STREAM_ENDED and last.detail == {"reason": "interrupted"}
    lines = [json.loads(line) for line in delivered.read_text().splitlines()]
    assert [line["type"] for line in lines][-2:] == ["alert.raised", "stream.ended"]
    assert lines[-1]["id"] == last.id  # drained before exiting
