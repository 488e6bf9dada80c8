"""A live MPEG-TS feed over TCP that any number of readers can join, as a camera or an encoder's
TCP output is: a reader that connects gets the feed from where it is now, in real time, and one
that comes back after a break has missed what went out meanwhile."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import av
from media import Placement, render_frame

TS_PACKET = 188


def write_live_clip(
    path: Path,
    seconds: float,
    faces: Callable[[float], Sequence[Placement]],
    fps: int = 10,
    size: tuple[int, int] = (480, 270),
) -> Path:
    """An H.264 MPEG-TS clip, a key frame every second; `faces(t)` places the faces at t."""
    width, height = size
    with av.open(str(path), mode="w", format="mpegts") as out:
        stream = out.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = {"preset": "ultrafast", "tune": "zerolatency"}
        stream.codec_context.gop_size = fps
        for i in range(int(seconds * fps)):
            image = render_frame(width, height, faces(i / fps), i / fps)
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            frame.pts = i
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path


class LiveFeed:
    """Serves `clip` (lasting `seconds`) on 127.0.0.1 as if it were being made now."""

    def __init__(self, clip: Path, seconds: float) -> None:
        self._data = clip.read_bytes()
        self._rate = len(self._data) / seconds  # bytes per second
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self._began = 0.0
        self._stopped = threading.Event()

    @property
    def url(self) -> str:
        return f"tcp://127.0.0.1:{self.port}"

    def start(self) -> LiveFeed:
        self._began = time.monotonic()
        threading.Thread(target=self._accept, daemon=True).start()
        return self

    def stop(self) -> None:
        self._stopped.set()
        self._listener.close()

    def _accept(self) -> None:
        while not self._stopped.is_set():
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            threading.Thread(target=self._send, args=(conn,), daemon=True).start()

    def _live_position(self) -> int:
        """Where the feed is now: bytes made so far, in whole TS packets."""
        made = min(len(self._data), int((time.monotonic() - self._began) * self._rate))
        return made - made % TS_PACKET

    def _send(self, conn: socket.socket) -> None:
        sent = self._live_position()
        with conn:
            while not self._stopped.is_set() and sent < len(self._data):
                now = self._live_position()
                try:
                    conn.sendall(self._data[sent:now])
                except OSError:  # the reader went (its process or node died)
                    return
                sent = now
                time.sleep(0.05)
