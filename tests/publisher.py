"""Send a face video in real time, as a camera or encoder would: `python publisher.py URL SECONDS
[FORMAT [HOLD [CONNECT_TIMEOUT]]]`. Pushes to an RTMP server (format flv), or, for
tcp://…?listen=1, serves MPEG-TS to the reader that connects; with HOLD, the connection then
stays open HOLD seconds without a byte (a frozen feed). A separate process: PyAV holds the GIL
while an output waits to connect.

With URL `-` it starts, says `ready` on stderr, then reads the URL from stdin and connects once,
with no retry, as a one-shot `ffmpeg -re -i clip.mp4 -f flv URL` does (`primed_publisher`)."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import av
import av.error
from media import Placement, render_frame

FPS = 15


def publish(
    url: str,
    seconds: float,
    container: str = "flv",
    fps: int = FPS,
    face: int = 220,
    connect_timeout: float = 20.0,
    hold: float = 0.0,
    face_period: float = 0.0,
) -> int:
    """Frames sent of a `face`-pixel astronaut at `fps`, 640x360, in real time; with
    `face_period`, the face shows for the first two thirds of every `face_period` s (each
    appearance a new track)."""
    deadline = time.monotonic() + connect_timeout
    while True:
        out = av.open(url, mode="w", format=container)
        stream = out.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = 640, 360, "yuv420p"
        stream.options = {"preset": "ultrafast", "tune": "zerolatency"}
        stream.codec_context.gop_size = fps
        try:
            out.start_encoding()  # connects (or, listening, waits for the reader) here
            break
        except av.error.ConnectionRefusedError:
            out.close()
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)
    sent = 0
    with out:
        start = time.monotonic()
        for i in range(int(seconds * fps)):
            t = i / fps
            shown = face and (not face_period or t % face_period < face_period * 2 / 3)
            frame = av.VideoFrame.from_ndarray(
                render_frame(640, 360, [Placement(0.5, 0.5, face)] if shown else [], t),
                format="rgb24",
            )
            frame.pts = i
            for packet in stream.encode(frame):
                out.mux(packet)
            sent += 1
            time.sleep(max(0.0, start + (i + 1) / fps - time.monotonic()))
        time.sleep(hold)  # frozen: connected, silent
        for packet in stream.encode():
            out.mux(packet)
    return sent


def start_publisher(
    url: str,
    seconds: float,
    container: str = "flv",
    hold: float = 0.0,
    connect_timeout: float = 20.0,
    face: int = 220,
    face_period: float = 0.0,
) -> subprocess.Popen[str]:
    """Run `publish` in its own process, trying to connect again while nothing listens there for
    `connect_timeout` seconds (as an encoder that reconnects does); `finished` waits for it."""
    return subprocess.Popen(
        [
            sys.executable,
            str(Path(__file__)),
            url,
            str(seconds),
            container,
            str(hold),
            str(connect_timeout),
            str(face),
            str(face_period),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def primed_publisher(seconds: float) -> subprocess.Popen[str]:
    """A publisher with its imports done, waiting for its URL (`push_to`): it connects within
    milliseconds of being told where, and only once."""
    process = subprocess.Popen(
        [sys.executable, str(Path(__file__)), "-", str(seconds)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stderr is not None
    assert process.stderr.readline() == "ready\n", "the publisher did not start"
    return process


def push_to(process: subprocess.Popen[str], url: str) -> None:
    assert process.stdin is not None
    process.stdin.write(url + "\n")
    process.stdin.flush()


def finished(process: subprocess.Popen[str]) -> str:
    """The publisher's output (the number of frames sent), once it has exited cleanly."""
    out, err = process.communicate(timeout=30)
    assert process.returncode == 0, err[-2000:]
    return out


if __name__ == "__main__":
    target, duration = sys.argv[1], float(sys.argv[2])
    container = sys.argv[3] if len(sys.argv) > 3 else "flv"
    if target == "-":
        print("ready", file=sys.stderr, flush=True)
        print(publish(sys.stdin.readline().strip(), duration, container, connect_timeout=0))
    else:
        hold = float(sys.argv[4]) if len(sys.argv) > 4 else 0.0
        retry_for = float(sys.argv[5]) if len(sys.argv) > 5 else 20.0
        face = int(sys.argv[6]) if len(sys.argv) > 6 else 220
        period = float(sys.argv[7]) if len(sys.argv) > 7 else 0.0
        sent = publish(
            target,
            duration,
            container,
            connect_timeout=retry_for,
            hold=hold,
            face=face,
            face_period=period,
        )
        print(sent, flush=True)
