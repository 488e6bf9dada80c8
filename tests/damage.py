"""Damaged copies of test videos: what a cut-off transfer looks like to the demuxer."""

from __future__ import annotations

from pathlib import Path

import av


def faststart_copy(src: Path, dst: Path) -> Path:
    """The same packets with the index (moov) first, as phones and web uploads write it: a cut
    then leaves a file that opens and plays up to the cut."""
    with av.open(str(src)) as inp, av.open(str(dst), "w", options={"movflags": "faststart"}) as out:
        video = inp.streams.video[0]
        copy = out.add_stream_from_template(video)
        for packet in inp.demux(video):
            if packet.dts is None:  # the demuxer's end-of-stream marker
                continue
            packet.stream = copy
            out.mux(packet)
    return dst


def cut_before_frame(src: Path, dst: Path, frame: int) -> Path:
    """`src` cut off where its `frame`th packet starts: that many whole frames, then nothing."""
    whole = faststart_copy(src, dst.with_suffix(".whole.mp4"))
    with av.open(str(whole)) as inp:
        video = inp.streams.video[0]
        offsets = [packet.pos for packet in inp.demux(video) if packet.dts is not None]
    dst.write_bytes(whole.read_bytes()[: offsets[frame]])
    return dst
