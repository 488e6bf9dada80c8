"""Push one recording to an RTMP URL in real time, looped, as a camera's encoder would keep a
stream going: `python soak_publisher.py FILE URL SECONDS`.

Packets are remuxed, not re-encoded, so publishing costs almost nothing next to the service.
Each loop's timestamps continue after the last packet sent, so the service sees one unbroken
stream; pacing follows the decode timestamps (the order packets are sent in). Prints the
number of loops sent. A process of its own: PyAV holds the GIL while an output connects.
"""

from __future__ import annotations

import sys
import time
from fractions import Fraction
from typing import Any

import av
import av.error

CONNECT_TIMEOUT_S = 20.0


def open_output(url: str, template: Any) -> tuple[Any, Any]:
    deadline = time.monotonic() + CONNECT_TIMEOUT_S
    while True:
        out = av.open(url, mode="w", format="flv")
        stream = out.add_stream_from_template(template)
        try:
            out.start_encoding()  # connects here
            return out, stream
        # Refused (PermissionError) while the ingest is not listening yet, as right after
        # the stream is created: an encoder tries again, and so does this.
        except (av.error.ConnectionRefusedError, ConnectionRefusedError, av.error.PermissionError):
            out.close()
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def publish(path: str, url: str, seconds: float) -> int:
    source = av.open(path)
    video = source.streams.video[0]
    time_base = video.time_base or Fraction(1, 90000)
    rate = video.average_rate or Fraction(30)
    frame_ticks = max(1, round(1 / (rate * time_base)))
    out, stream = open_output(url, video)
    start = time.monotonic()
    shift = 0  # added to every timestamp of the current loop
    last_dts: int | None = None
    loops = 0
    with out:
        while time.monotonic() - start < seconds:
            first = True
            for packet in source.demux(video):
                if packet.dts is None or packet.pts is None:
                    continue  # the demuxer's end-of-stream flush packet
                if first and last_dts is not None:
                    shift = last_dts + frame_ticks - packet.dts
                first = False
                packet.dts += shift
                packet.pts += shift
                wait = start + float(packet.dts * time_base) - time.monotonic()
                if wait > 0:
                    time.sleep(wait)
                last_dts = packet.dts
                packet.stream = stream
                out.mux(packet)
                if time.monotonic() - start >= seconds:
                    break
            loops += 1
            source.seek(0)
    return loops


if __name__ == "__main__":
    print(publish(sys.argv[1], sys.argv[2], float(sys.argv[3])), flush=True)
