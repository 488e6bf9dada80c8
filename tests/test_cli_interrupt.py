"""`scan` stopped by SIGINT or SIGTERM: a partial result, a recorded end, delivered events."""

from __future__ import annotations

import contextlib
import json
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from swapwatch.events.outbox import EventLog

# Runs `swapwatch scan` in a child process that signals itself once it has analysed five frames:
# the signal goes through the real process, as one from a terminal or a supervisor would.
CHILD = textwrap.dedent(
    """
    import os, signal, sys
    from swapwatch.cli.main import main
    from swapwatch.stream import scan

    add = scan.ScanRecorder.add

    def add_then_signal(self, result):
        add(self, result)
        if self.frames_analysed == 5:
            os.kill(os.getpid(), signal.Signals[os.environ["SIGNAL"]])

    scan.ScanRecorder.add = add_then_signal
    sys.exit(main(sys.argv[1:]))
    """
)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_stops_scan_with_a_partial_result_and_a_recorded_end(
    tmp_path: Path, one_face_video: Path, fake_model: Path, signum: signal.Signals
) -> None:
    outbox = tmp_path / "events.sqlite"
    delivered = tmp_path / "delivered.jsonl"
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            CHILD,
            "scan",
            str(one_face_video),
            "--model",
            str(fake_model),
            "--json",
            "--events",
            str(outbox),
            "--sink",
            f"jsonl:{delivered}",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env={**_env(), "SIGNAL": signum.name},
    )
    assert proc.returncode == 130, proc.stderr
    result = json.loads(proc.stdout)
    assert result["partial"] is True
    assert 5 <= result["frames"]["analysed"] < 45  # 3 s at 15 Hz: stopped well before the end
    assert result["verdict"] in {"fake", "inconclusive"}
    last_line = proc.stderr.strip().splitlines()[-1]
    assert last_line.startswith(f"swapwatch: interrupted by {signum.name}")
    with EventLog(outbox) as log:
        last = [stored.event() for stored in log.read_after(0, 1000)][-1]
    assert last.type.value == "stream.ended" and last.detail is not None
    assert last.detail["reason"] == "interrupted"
    lines = [json.loads(line) for line in delivered.read_text().splitlines()]
    assert lines[-1]["type"] == "stream.ended" and lines[-1]["id"] == last.id  # drained


def test_a_scan_that_ends_by_itself_is_not_partial(
    capsys: pytest.CaptureFixture[str], one_face_video: Path, fake_model: Path
) -> None:
    from swapwatch.cli.main import main

    assert main(["scan", str(one_face_video), "--model", str(fake_model), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["partial"] is False


def test_sigterm_while_waiting_for_a_publisher_ends_at_once(
    tmp_path: Path, fake_model: Path, free_port: int
) -> None:
    outbox = tmp_path / "events.sqlite"
    child = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "swapwatch",
            "scan",
            f"rtmp://127.0.0.1:{free_port}/live/key",
            "--listen",
            "--timeout",
            "60",
            "--model",
            str(fake_model),
            "--events",
            str(outbox),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=_env(),
    )
    try:
        # stream.started comes when a publisher connects: wait for the listening socket.
        deadline = time.monotonic() + 60
        while not _listening(free_port) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert _listening(free_port), "scan --listen never listened"
        child.send_signal(signal.SIGTERM)
        _, err = child.communicate(timeout=20)
    finally:
        child.kill()
    assert child.returncode == 130, err
    assert err.strip().splitlines()[-1] == "swapwatch: interrupted"
    with EventLog(outbox) as log:
        last = [stored.event() for stored in log.read_after(0, 1000)][-1]
    assert last.type.value == "stream.ended" and last.detail == {"reason": "interrupted"}


def _listening(port: int) -> bool:
    """Whether a TCP socket of this machine listens on `port` (Linux /proc/net)."""
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError), open(table) as f:
            for line in f.readlines()[1:]:
                local, state = line.split()[1], line.split()[3]
                if state == "0A" and int(local.rsplit(":", 1)[1], 16) == port:
                    return True
    return False


def _env() -> dict[str, str]:
    import os

    return {**os.environ, "PYTHONPATH": str(Path(__file__).parents[1])}


@pytest.fixture
def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
