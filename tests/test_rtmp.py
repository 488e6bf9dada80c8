"""A real RTMP publish on 127.0.0.1: PyAV pushes H.264 in FLV, `swapwatch scan --listen` reads."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from publisher import publish

pytestmark = pytest.mark.network

FPS = 30
SECONDS = 3


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_scan_reads_a_live_rtmp_publish(tmp_path: Path, fake_model: Path) -> None:
    url = f"rtmp://127.0.0.1:{free_port()}/live/test-key"
    scanner = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "swapwatch",
            "scan",
            url,
            "--listen",
            "--json",
            "--timeout",
            "20",
            "--model",
            str(fake_model),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        sent = publish(url, SECONDS, fps=FPS, face=300, connect_timeout=30)
        out, err = scanner.communicate(timeout=60)
    finally:
        scanner.kill()
    assert scanner.returncode == 0, err
    result = json.loads(out)
    assert result["video"]["live"] is True
    assert result["source"].endswith("/live/***")  # the stream key is not echoed back
    frames = result["frames"]
    assert frames["decoded"] >= sent - 2  # every frame decoded (the last may be cut at close)
    assert frames["analysed"] + frames["skipped_by_stride"] + frames["dropped"] == frames["decoded"]
    assert frames["analysed"] >= 0.4 * sent  # ~15 Hz of a 30 fps stream
    assert result["verdict"] == "fake" and result["alerts"]


def test_listening_with_no_publisher_times_out_cleanly(fake_model: Path) -> None:
    url = f"rtmp://127.0.0.1:{free_port()}/live/nobody"
    started = time.monotonic()
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "swapwatch",
            "scan",
            url,
            "--listen",
            "--timeout",
            "2",
            "--model",
            str(fake_model),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 3
    assert "timed out" in proc.stderr.splitlines()[-1]
    assert time.monotonic() - started < 30
