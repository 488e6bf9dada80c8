from __future__ import annotations

import asyncio
import math
import wave
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from damage import cut_before_frame, faststart_copy
from media import Placement, write_video

from swapwatch.errors import (
    EndOfStream,
    NoVideoStream,
    SourceError,
    SourceNotFound,
    SourceUnreadable,
    UnsupportedSource,
)
from swapwatch.stream.frames import Frame
from swapwatch.stream.source import AvSource, SourceOptions, redact_url


async def collect(source: AvSource, delay: float = 0.0) -> list[Frame]:
    frames = []
    async with source:
        async for frame in source:
            frames.append(frame)
            if delay:
                await asyncio.sleep(delay)
    return frames


def test_file_delivers_every_frame_in_order_with_media_times(one_face_video: Path) -> None:
    frames = asyncio.run(collect(AvSource(str(one_face_video), SourceOptions(stride=1))))
    assert len(frames) == 90
    assert [f.index for f in frames] == list(range(90))
    assert frames[0].time == 0.0
    assert frames[-1].time == pytest.approx(89 / 30, abs=1e-3)
    assert frames[0].image.shape == (720, 1280, 3)


def test_file_stride_is_derived_from_the_analysis_rate(one_face_video: Path) -> None:
    source = AvSource(str(one_face_video), SourceOptions(max_rate=15.0))
    frames = asyncio.run(collect(source))
    assert [f.index for f in frames] == list(range(0, 90, 2))
    assert source.counters.decoded == 90 and source.counters.skipped == 45
    assert source.counters.dropped == 0


def test_a_slow_consumer_never_loses_file_frames(no_face_video: Path) -> None:
    source = AvSource(str(no_face_video), SourceOptions(stride=1))
    frames = asyncio.run(collect(source, delay=0.005))
    assert len(frames) == 60 and source.counters.dropped == 0


def test_live_source_keeps_the_newest_frame_and_counts_drops(no_face_video: Path) -> None:
    # A file paced at media speed behaves like a live stream.
    source = AvSource(str(no_face_video), SourceOptions(live=True, pace=True))
    frames = asyncio.run(collect(source, delay=0.1))  # analysis at 10 fps, stream at 30
    counters = source.counters
    assert counters.decoded == 60
    assert counters.dropped > 20
    assert len(frames) + counters.dropped + counters.skipped == 60
    # What was analysed is the newest frame at the time, so media time keeps up with the clock.
    assert frames[-1].index >= 55


def test_live_rate_cap_skips_frames_evenly(no_face_video: Path) -> None:
    source = AvSource(str(no_face_video), SourceOptions(live=True, max_rate=10.0))

    async def slow_enough() -> list[Frame]:
        return await collect(source)

    frames = asyncio.run(slow_enough())
    times = np.array([f.time for f in frames])
    assert len(frames) + source.counters.dropped == 20
    if source.counters.dropped == 0:
        assert np.allclose(np.diff(times), 0.1, atol=0.02)


def test_max_seconds_stops_early(one_face_video: Path) -> None:
    frames = asyncio.run(
        collect(AvSource(str(one_face_video), SourceOptions(stride=1, max_seconds=1.0)))
    )
    assert len(frames) == 30


def test_recv_after_the_end_keeps_raising_end_of_stream(no_face_video: Path) -> None:
    async def run() -> None:
        source = AvSource(str(no_face_video), SourceOptions(stride=1))
        await source.start()
        for _ in range(60):
            await source.recv()
        for _ in range(2):
            with pytest.raises(EndOfStream):
                await source.recv()
        await source.aclose()

    asyncio.run(run())


def make_text(dst: Path) -> Path:
    dst.write_text("hello, not a video")
    return dst


def make_truncated(src: Path, dst: Path) -> Path:
    data = src.read_bytes()
    dst.write_bytes(data[: len(data) // 2])
    return dst


def make_garbled(src: Path, dst: Path) -> Path:
    data = bytearray(src.read_bytes())
    rng = np.random.default_rng(3)
    start, stop = len(data) // 3, len(data) // 3 + len(data) // 5
    data[start:stop] = rng.integers(0, 256, stop - start, dtype=np.uint8).tobytes()
    dst.write_bytes(bytes(data))
    return dst


def make_audio_only(dst: Path) -> Path:
    with wave.open(str(dst), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(8000)
        tone = (np.sin(np.arange(8000) * 2 * math.pi * 440 / 8000) * 8000).astype(np.int16)
        w.writeframes(tone.tobytes())
    return dst


@pytest.mark.parametrize(
    ("make", "error", "message"),
    [
        (lambda d, v: str(d / "missing.mp4"), SourceNotFound, "no such file"),
        (lambda d, v: str(d), UnsupportedSource, "directory"),
        (lambda d, v: str(make_text(d / "notes.mp4")), SourceUnreadable, "not a readable video"),
        (
            lambda d, v: str(make_truncated(v, d / "truncated.mp4")),
            SourceUnreadable,
            "not a readable video",
        ),
        (lambda d, v: str(make_audio_only(d / "tone.wav")), NoVideoStream, "no video stream"),
        (lambda d, v: "foo://bar", UnsupportedSource, "unsupported URL scheme"),
        (lambda d, v: "rtmp://127.0.0.1:1/live/key", SourceUnreadable, "refused"),
    ],
    ids=["missing", "directory", "text", "truncated", "audio-only", "scheme", "refused"],
)
def test_bad_sources_raise_one_clear_error(
    tmp_path: Path,
    one_face_video: Path,
    make,
    error: type[SourceError],
    message: str,  # type: ignore[no-untyped-def]
) -> None:
    url = make(tmp_path, one_face_video)
    with pytest.raises(error, match=message):
        asyncio.run(collect(AvSource(url, SourceOptions(open_timeout=5, read_timeout=5))))


def test_corrupt_packets_in_a_live_feed_are_skipped_and_counted(
    tmp_path: Path, one_face_video: Path
) -> None:
    garbled = make_garbled(one_face_video, tmp_path / "garbled.mp4")
    source = AvSource(str(garbled), SourceOptions(stride=1, live=True))
    frames = asyncio.run(collect(source))
    assert 0 < len(frames) < 90
    assert source.counters.decode_errors > 0


def make_text_file(dst: Path) -> Path:
    dst.write_text("Meeting notes\n" + "- nothing to see here\n" * 40)
    return dst


@pytest.mark.parametrize(
    ("make", "error", "message"),
    [
        (
            lambda d, v: make_garbled(v, d / "garbled.mp4"),
            SourceUnreadable,
            r"corrupt video data in .*garbled\.mp4 after frame \d+",
        ),
        # The index says 60 frames; the data stops after 18, with no decode error on the way.
        (
            lambda d, v: cut_before_frame(v, d / "cut.mp4", 18),
            SourceUnreadable,
            r"corrupt or truncated video: .*cut\.mp4 ended after 18 of its 60 frames",
        ),
        # 57 of 60 frames is close to the count, but the end of the recording is missing.
        (
            lambda d, v: cut_before_frame(v, d / "end.mp4", 57),
            SourceUnreadable,
            r"corrupt or truncated video: .*end\.mp4 ended at 1\.90s of its 2\.00s",
        ),
        # FFmpeg's tty demuxer renders any text file as an 'ansi' video.
        (
            lambda d, v: make_text_file(d / "notes.txt"),
            UnsupportedSource,
            r"not a video: .*notes\.txt is text \(FFmpeg reads it as 'ansi'\)",
        ),
    ],
    ids=["decode-error", "stops-early", "end-missing", "text"],
)
def test_a_damaged_or_non_video_file_is_refused_not_scanned(
    tmp_path: Path,
    no_face_video: Path,
    make,  # type: ignore[no-untyped-def]
    error: type[SourceError],
    message: str,
) -> None:
    path = make(tmp_path, no_face_video)
    with pytest.raises(error, match=message):
        asyncio.run(collect(AvSource(str(path), SourceOptions(stride=1))))


def test_a_whole_file_cut_nowhere_still_passes(tmp_path: Path, no_face_video: Path) -> None:
    whole = faststart_copy(no_face_video, tmp_path / "whole.mp4")
    frames = asyncio.run(collect(AvSource(str(whole), SourceOptions(stride=1))))
    assert len(frames) == 60


def test_stream_keys_and_credentials_are_redacted() -> None:
    assert redact_url("rtmp://user:pw@host:1935/live/SECRETKEY") == "rtmp://host:1935/live/***"
    assert redact_url("https://cdn/x.m3u8?token=abc") == "https://cdn/x.m3u8?***"
    assert redact_url("/tmp/video.mp4") == "/tmp/video.mp4"


def test_slower_video_keeps_its_own_clock(tmp_path: Path) -> None:
    path = write_video(
        tmp_path / "f12.mp4", [Placement(0.5, 0.5, 100)], seconds=1.0, fps=12, size=(320, 240)
    )
    frames = asyncio.run(collect(AvSource(str(path), SourceOptions(stride=1))))
    assert len(frames) == 12
    assert frames[1].time == pytest.approx(1 / 12, abs=1e-3)


def test_hardware_decoding_falls_back_to_software_with_a_log_line(
    no_face_video: Path, caplog: pytest.LogCaptureFixture
) -> None:
    import av.codec.hwaccel

    if "cuda" not in av.codec.hwaccel.hwdevices_available():
        pytest.skip("this PyAV build has no CUDA hwaccel")
    source = AvSource(str(no_face_video), SourceOptions(stride=1, hwaccel="cuda"))
    with caplog.at_level("WARNING", logger="swapwatch.stream.source"):
        frames = asyncio.run(collect(source))
    assert len(frames) == 60
    assert source.info is not None
    if not source.info.hardware_decoding:  # no usable GPU here: software, and it says so
        assert any("decoding in software" in r.getMessage() for r in caplog.records)


def test_an_error_right_after_opening_reaches_the_reader(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A picture that opens but does not decode: the error raised at once in the decoder thread
    used to go to the already-announced start and be lost, and the reader waited for ever."""
    from swapwatch.stream import source as source_module

    def fails_at_once(self: object, container: object, info: object) -> Iterator[object]:
        raise SourceUnreadable("corrupt video data after frame 0")
        yield  # a generator, as the real one

    monkeypatch.setattr(source_module.AvSource, "_frames", fails_at_once)
    video = write_video(tmp_path / "v.mp4", [], seconds=0.2)

    async def read_once() -> None:
        src = source_module.AvSource(str(video))
        await src.start()
        try:
            with pytest.raises(SourceUnreadable):
                await asyncio.wait_for(src.recv(), 5)
        finally:
            await src.aclose()

    for _ in range(10):
        asyncio.run(read_once())


def test_frames_keep_ffmpeg_colours_through_a_kept_converter(tmp_path: Path) -> None:
    """The source converts with one scaler context per stream and one thread; the pixels must be
    FFmpeg's own conversion of each frame, across full- and limited-range video and a size change
    in the middle of a stream."""
    import av
    from av.video.reformatter import VideoReformatter

    from swapwatch.stream.source import upright_rgb

    rng = np.random.default_rng(0)
    reformatter = VideoReformatter()
    sizes = [("yuvj420p", (322, 180)), ("yuv420p", (1280, 720)), ("yuv420p", (640, 362))]
    for pix_fmt, (width, height) in [*sizes, ("rgb24", (64, 48))]:
        frame = av.VideoFrame.from_ndarray(
            rng.integers(0, 256, (height, width, 3), dtype=np.uint8), format="rgb24"
        ).reformat(format=pix_fmt)
        expected = frame.to_ndarray(format="rgb24")
        assert np.array_equal(upright_rgb(frame, reformatter), expected)
        assert np.array_equal(upright_rgb(frame), expected)
