"""The RTMP front of the push ingest: a real publisher (FFmpeg through PyAV) and FFmpeg's real
listener behind it; a wrong key is refused before the decoder sees a byte, and the right key is
taken even when it comes before the decoder listens."""

from __future__ import annotations

import asyncio
import socket
import struct
from collections.abc import AsyncIterator, Coroutine
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

import pytest
from publisher import primed_publisher, push_to, start_publisher

from swapwatch.stream.frames import VideoInfo
from swapwatch.stream.rtmp_front import RtmpFront, key_digest
from swapwatch.stream.rtmp_wire import (
    AMF0_COMMAND,
    ChunkReader,
    Message,
    RtmpProtocolError,
    amf0_decode,
    amf0_encode,
    chunked,
    command,
)
from swapwatch.stream.source import AvSource, SourceOptions

pytestmark = pytest.mark.network

T = TypeVar("T")
KEY = "s3cret-key-of-the-stream-0123456789"


def run(coroutine: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(asyncio.wait_for(coroutine, 120))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Ingest:
    front: RtmpFront
    source: AvSource
    opened: asyncio.Task[VideoInfo]
    refusals: list[str]
    listening: asyncio.Event

    def url(self, key: str) -> str:
        return f"rtmp://127.0.0.1:{self.front.port}/live/{key}"


@asynccontextmanager
async def ingest(
    handshake_timeout: float = 10.0,
    listen_after: float | None = 0.0,
    ready_timeout: float | None = None,
) -> AsyncIterator[Ingest]:
    """A front and FFmpeg's listener behind it, which opens `listen_after` seconds later (as a
    stream's worker opens it once its face models are loaded); None: never."""
    upstream = free_port()
    source = AvSource(
        f"rtmp://127.0.0.1:{upstream}/live/{KEY}",
        SourceOptions(live=True, listen=True, open_timeout=60, read_timeout=5),
    )
    refusals: list[str] = []
    timeouts = {} if ready_timeout is None else {"ready_timeout": ready_timeout}
    front = RtmpFront(
        "test",
        "127.0.0.1",
        free_port(),
        key_digest(KEY),
        upstream,
        refusals.append,
        handshake_timeout,
        **timeouts,
    )
    await front.start()
    listening = asyncio.Event()

    async def listen() -> VideoInfo:
        if listen_after is None:
            await asyncio.Future()  # never
        await asyncio.sleep(listen_after or 0.0)
        listening.set()
        return await source.start()

    opened = asyncio.create_task(listen())
    try:
        yield Ingest(front, source, opened, refusals, listening)
    finally:
        front.close()
        if not listening.is_set():
            opened.cancel()
        elif not opened.done():  # FFmpeg waits in accept(): let it in so that it can stop
            with socket.create_connection(("127.0.0.1", upstream)):
                pass
        await asyncio.wait({opened}, timeout=10)
        await source.aclose()


async def publisher_exit(url: str, seconds: float = 2.0) -> int:
    process = await asyncio.to_thread(start_publisher, url, seconds)
    await asyncio.to_thread(process.communicate, timeout=60)
    return int(process.returncode)


def test_a_wrong_key_is_refused_before_anything_is_decoded() -> None:
    run(wrong_keys_then_the_right_one())


async def wrong_keys_then_the_right_one() -> None:
    async with ingest() as rtmp:
        for wrong in ("test", "WRONGKEY", KEY[:-1], KEY + "x"):
            assert await publisher_exit(rtmp.url(wrong)) != 0, wrong
        assert rtmp.refusals == ["key"] * 4
        assert not rtmp.opened.done()  # FFmpeg is still waiting for its one publisher
        assert rtmp.source.counters.decoded == 0
        # The stream's own key goes through, to the same listener.
        process = await asyncio.to_thread(start_publisher, rtmp.url(KEY), 3.0)
        info = await asyncio.wait_for(rtmp.opened, 30)
        assert info.width == 640
        frame = await asyncio.wait_for(rtmp.source.recv(), 10)
        assert frame.image.shape == (360, 640, 3)
        await asyncio.to_thread(process.communicate, timeout=60)
        assert process.returncode == 0
        assert rtmp.source.counters.decoded > 10


def test_a_publisher_that_comes_before_the_decoder_listens_is_taken_when_it_does() -> None:
    run(publish_before_the_decoder_listens())


async def publish_before_the_decoder_listens() -> None:
    # FFmpeg's listener opens once the stream's worker has loaded its face models, seconds after
    # the API gave out the key; a one-shot publisher connects at once and does not try again.
    publisher = await asyncio.to_thread(primed_publisher, 2.0)
    async with ingest(listen_after=2.0) as rtmp:
        push_to(publisher, rtmp.url(KEY))
        out, err = await asyncio.to_thread(publisher.communicate, timeout=60)
        assert publisher.returncode == 0, err[-2000:]
        assert int(out) == 30 and rtmp.refusals == []
        assert rtmp.opened.done() and rtmp.opened.result().width == 640
        frame = await asyncio.wait_for(rtmp.source.recv(), 10)
        assert frame.image.shape == (360, 640, 3)


def test_a_waiting_publisher_is_refused_when_the_decoder_does_not_listen_in_time() -> None:
    run(publish_to_a_decoder_that_never_listens())


async def publish_to_a_decoder_that_never_listens() -> None:
    first, second = await asyncio.gather(
        asyncio.to_thread(primed_publisher, 2.0), asyncio.to_thread(primed_publisher, 2.0)
    )
    async with ingest(listen_after=None, ready_timeout=4.0) as rtmp:
        push_to(first, rtmp.url(KEY))
        await asyncio.sleep(1.5)
        # While one publisher of the key waits, another is refused as busy, not held too.
        push_to(second, rtmp.url(KEY))
        await asyncio.to_thread(second.communicate, timeout=60)
        assert second.returncode != 0 and rtmp.refusals == ["busy"]
        await asyncio.to_thread(first.communicate, timeout=60)
        assert first.returncode != 0 and rtmp.refusals == ["busy", "not_ready"]
        assert rtmp.source.counters.decoded == 0


def test_garbage_and_silence_are_refused_and_the_front_keeps_serving() -> None:
    run(garbage_silence_then_a_wrong_key())


async def garbage_silence_then_a_wrong_key() -> None:
    async with ingest(handshake_timeout=0.5) as rtmp:
        port = rtmp.front.port
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET / HTTP/1.1\r\n\r\n" + bytes(1600))  # not RTMP version 3
        assert await reader.read() == b""
        writer.close()
        reader, writer = await asyncio.open_connection("127.0.0.1", port)  # says nothing
        assert await asyncio.wait_for(reader.read(), 5) == b""
        writer.close()
        assert rtmp.refusals == ["protocol", "timeout"]
        assert rtmp.source.counters.decoded == 0 and not rtmp.opened.done()
        assert await publisher_exit(rtmp.url("WRONGKEY")) != 0
        assert rtmp.refusals[-1] == "key"


@pytest.mark.parametrize(
    ("data", "expected", "error"),
    [
        (amf0_encode("publish", 5, None, KEY, "live"), ["publish", 5.0, None, KEY, "live"], None),
        (amf0_encode({"app": "live", "n": 1.5}), [{"app": "live", "n": 1.5}], None),
        (b"\x08\x00\x00\x00\x09\x00\x01a\x01\x01\x00\x00\x09", [{"a": True}], None),
        (b"\x0a\x00\x00\x00\x02\x05\x06", [[None, None]], None),
        (b"\x02\x00\x05abc", None, "past the end"),
        (b"\x0a\xff\xff\xff\xff", None, "longer than its message"),
        (b"\x02\x00\x02\xff\xfe", None, "not UTF-8"),
        (b"\x11", None, "unsupported AMF0 type 17"),
        (b"\x03\x00\x01a" * 40, None, "nested too deeply"),
    ],
)
def test_amf0_values(data: bytes, expected: list[object] | None, error: str | None) -> None:
    if error is None:
        assert amf0_decode(data) == expected
    else:
        with pytest.raises(RtmpProtocolError, match=error):
            amf0_decode(data)


@pytest.mark.parametrize(
    ("type_id", "payload", "expected"),
    [
        (AMF0_COMMAND, amf0_encode("createStream", 2, None), ["createStream", 2.0, None]),
        (17, b"\x00" + amf0_encode("publish", 4, None, KEY), ["publish", 4.0, None, KEY]),
        (18, amf0_encode("@setDataFrame"), None),  # data, not a command
        (AMF0_COMMAND, amf0_encode("connect", "1"), "numeric transaction id"),
        (AMF0_COMMAND, amf0_encode(7.0, 1), "numeric transaction id"),
    ],
)
def test_commands(type_id: int, payload: bytes, expected: list[object] | str | None) -> None:
    message = Message(type_id, 0, payload)
    if isinstance(expected, str):
        with pytest.raises(RtmpProtocolError, match=expected):
            command(message)
    else:
        assert command(message) == expected


async def read_messages(data: bytes, max_bytes: int = 1 << 20) -> list[bytes]:
    reader = asyncio.StreamReader()
    reader.feed_data(data)
    reader.feed_eof()
    chunks = ChunkReader(reader, max_bytes)
    payloads = []
    with pytest.raises(asyncio.IncompleteReadError):
        while True:
            payloads.append((await chunks.message()).payload)
    assert bytes(chunks.raw) == data  # every byte kept for the replay
    return payloads


def test_chunked_messages_are_reassembled() -> None:
    long = amf0_encode("publish", 4, None, "k" * 300, "live")  # three chunks of 128
    short = amf0_encode("createStream", 3, None)
    assert run(
        read_messages(chunked(3, AMF0_COMMAND, 0, short) + chunked(5, AMF0_COMMAND, 1, long))
    ) == [short, long]
    # A Set Chunk Size of 4096 lets the next message come in one chunk.
    set_size = chunked(2, 1, 0, struct.pack(">I", 4096))
    one_chunk = bytes([0x05]) + bytes(3) + len(long).to_bytes(3, "big") + b"\x14" + bytes(4) + long
    assert run(read_messages(set_size + one_chunk))[1] == long


@pytest.mark.parametrize(
    ("data", "error"),
    [
        (bytes([0x43]) + bytes(20), "starts without a full header"),
        (chunked(2, 1, 0, bytes(4)), "chunk size 0 is out of range"),
        (chunked(3, AMF0_COMMAND, 0, bytes(5000)), "more than 4096 bytes"),
    ],
)
def test_malformed_chunk_streams_are_refused(data: bytes, error: str) -> None:
    with pytest.raises(RtmpProtocolError, match=error):
        run(read_messages(data, max_bytes=4096))
