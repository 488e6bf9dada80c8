"""A real RTMP publish on 127.0.0.1: PyAV pushes H.264 in FLV, `swapwatch scan --listen` reads."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from pathlib import Path

import av
import av.error
import pytest
from media import Placement, render_frame

pytestmark = pytest.mark.network

FPS = 30
SECONDS = 3


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def publish(url: str, deadline: float) -> int:
    """Push SECONDS of video at real-time pace; retry until the listener is up."""
    while True:
        out = av.open(url, mode="w", format="flv")
        stream = out.add_stream("libx264", rate=FPS)
        stream.width, stream.height, stream.pix_fmt = 640, 360, "yuv420p"
        stream.options = {"preset": "ultrafast", "tune": "zerolatency"}
        stream.codec_context.gop_size = FPS
        try:
            out.start_encoding()  # the RTMP connection is made here
            break
        except av.error.ConnectionRefusedError:
            out.close()
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)
    scene = [Placement(0.5, 0.5, 300)]
    start = time.monotonic()
    sent = 0
    with out:
        for i in range(SECONDS * FPS):
            frame = av.VideoFrame.from_ndarray(
                render_frame(640, 360, scene, i / FPS), format="rgb24"
            )
            frame.pts = i
            for packet in stream.encode(frame):
                out.mux(packet)
            sent += 1
            time.sleep(max(0.0, start + (i + 1) / FPS - time.monotonic()))
        for packet in stream.encode():
            out.mux(packet)
    return sent


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
        sent = publish(url, deadline=time.monotonic() + 30)
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
