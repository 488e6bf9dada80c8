"""Push a video file's packets to an RTMP URL as a live encoder would, paced at their own
rate: `python push_file.py URL FILE`. For the fuzz tests: FILE may be damaged, and this pushes
whatever of it can be demuxed, then hangs up. A separate process: PyAV holds the GIL while an
output waits to connect."""

from __future__ import annotations

import sys
import time

import av
import av.error


def push(url: str, path: str) -> int:
    """Packets sent; stops at the first one the demuxer cannot read."""
    sent = 0
    with av.open(path) as inp:
        video = inp.streams.video[0]
        with av.open(url, mode="w", format="flv") as out:
            stream = out.add_stream_from_template(video)
            start = time.monotonic()
            try:
                for packet in inp.demux(video):
                    if packet.dts is None:
                        continue
                    if packet.pts is not None and packet.time_base is not None:
                        due = min(float(packet.pts * packet.time_base), 5.0)
                        time.sleep(max(0.0, due - (time.monotonic() - start)))
                    packet.stream = stream
                    out.mux(packet)
                    sent += 1
            except av.error.FFmpegError:
                pass  # the rest of the file is unreadable: the publisher stops here
    return sent


if __name__ == "__main__":
    try:
        print(push(sys.argv[1], sys.argv[2]), flush=True)
    except (av.error.FFmpegError, IndexError, ValueError) as exc:
        print(f"cannot push: {exc}", file=sys.stderr)
        sys.exit(1)
