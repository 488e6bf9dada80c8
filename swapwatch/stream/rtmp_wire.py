"""Just enough of RTMP to read a publisher's commands: the handshake, the chunk stream, AMF0.

A publisher opens with a handshake, then sends messages cut into chunks: `connect`,
`createStream` and `publish` (whose first argument is the stream key) are AMF0 commands, and the
media follows. This module reads and writes those commands; it never looks at media.
"""

from __future__ import annotations

import asyncio
import os
import struct
import time
from dataclasses import dataclass, field
from typing import Any

from swapwatch.errors import SourceError

HANDSHAKE_SIZE = 1536
RTMP_VERSION = 3  # plain RTMP; 6 is RTMPE, which we do not speak
DEFAULT_CHUNK_SIZE = 128
MAX_CHUNK_SIZE = 1 << 24

# Message types
SET_CHUNK_SIZE = 1
WINDOW_ACK_SIZE = 5
SET_PEER_BANDWIDTH = 6
AMF3_COMMAND = 17
AMF0_COMMAND = 20


class RtmpProtocolError(SourceError):
    """A peer's bytes are not the RTMP we expect (or go past our limits)."""


@dataclass(frozen=True, slots=True)
class Message:
    type_id: int
    stream_id: int
    payload: bytes


@dataclass(slots=True)
class _ChunkStream:
    length: int = 0
    type_id: int = 0
    stream_id: int = 0
    extended: bool = False  # its timestamp field overflowed: every chunk repeats 4 more bytes
    partial: bytearray = field(default_factory=bytearray)


class ChunkReader:
    """Reassembles the messages of a peer's chunk stream, keeping every byte it read in `raw`
    (so that the same stream can be replayed to another reader)."""

    def __init__(self, reader: asyncio.StreamReader, max_bytes: int) -> None:
        self.raw = bytearray()
        self.chunk_size = DEFAULT_CHUNK_SIZE
        self._reader = reader
        self._max_bytes = max_bytes
        self._streams: dict[int, _ChunkStream] = {}

    async def _read(self, n: int) -> bytes:
        if len(self.raw) + n > self._max_bytes:
            raise RtmpProtocolError(f"more than {self._max_bytes} bytes before a publish")
        data = await self._reader.readexactly(n)
        self.raw += data
        return data

    async def message(self) -> Message:
        """The next complete message; raises `IncompleteReadError` when the peer hangs up."""
        while True:
            first = (await self._read(1))[0]
            fmt, csid = first >> 6, first & 0x3F
            if csid == 0:
                csid = 64 + (await self._read(1))[0]
            elif csid == 1:
                low, high = await self._read(2)
                csid = 64 + low + 256 * high
            stream = self._streams.get(csid)
            if stream is None:
                if fmt != 0:
                    raise RtmpProtocolError(f"chunk stream {csid} starts without a full header")
                stream = self._streams[csid] = _ChunkStream()
            if fmt < 3:
                if stream.partial:
                    raise RtmpProtocolError(f"a new message header inside a message ({csid})")
                header = await self._read((11, 7, 3)[fmt])
                if fmt < 2:
                    stream.length = int.from_bytes(header[3:6], "big")
                    stream.type_id = header[6]
                if fmt == 0:
                    stream.stream_id = int.from_bytes(header[7:11], "little")
                stream.extended = header[:3] == b"\xff\xff\xff"
            if stream.extended:
                await self._read(4)
            wanted = min(self.chunk_size, stream.length - len(stream.partial))
            stream.partial += await self._read(wanted)
            if len(stream.partial) < stream.length:
                continue
            message = Message(stream.type_id, stream.stream_id, bytes(stream.partial))
            stream.partial.clear()
            if message.type_id == SET_CHUNK_SIZE:
                self.chunk_size = _chunk_size(message.payload)
            return message


def _chunk_size(payload: bytes) -> int:
    if len(payload) < 4:
        raise RtmpProtocolError("a short Set Chunk Size message")
    size = int.from_bytes(payload[:4], "big") & 0x7FFFFFFF
    if not 1 <= size <= MAX_CHUNK_SIZE:
        raise RtmpProtocolError(f"chunk size {size} is out of range")
    return size


def command(message: Message) -> list[Any] | None:
    """An AMF0 (or AMF3-wrapped AMF0) command's values: [name, transaction id, *arguments]."""
    if message.type_id == AMF0_COMMAND:
        values = amf0_decode(message.payload)
    elif message.type_id == AMF3_COMMAND and message.payload[:1] == b"\x00":
        values = amf0_decode(message.payload[1:])
    else:
        return None
    if len(values) < 2 or not isinstance(values[0], str) or not isinstance(values[1], float):
        raise RtmpProtocolError("a command without a name and a numeric transaction id")
    return values


# The handshake -----------------------------------------------------------------------------


async def accept_handshake(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """The server's side: read C0+C1, send S0+S1+S2 (S2 echoes C1), read C2."""
    c0c1 = await reader.readexactly(1 + HANDSHAKE_SIZE)
    if c0c1[0] != RTMP_VERSION:
        raise RtmpProtocolError(f"RTMP version {c0c1[0]} (only plain RTMP, 3, is spoken)")
    writer.write(bytes([RTMP_VERSION]) + _handshake_packet() + c0c1[1:])
    await writer.drain()
    await reader.readexactly(HANDSHAKE_SIZE)


async def connect_handshake(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """The client's side: send C0+C1, read S0+S1+S2, send C2 (which echoes S1)."""
    writer.write(bytes([RTMP_VERSION]) + _handshake_packet())
    s0s1s2 = await reader.readexactly(1 + 2 * HANDSHAKE_SIZE)
    if s0s1s2[0] != RTMP_VERSION:
        raise RtmpProtocolError(f"the server answered RTMP version {s0s1s2[0]}")
    writer.write(s0s1s2[1 : 1 + HANDSHAKE_SIZE])
    await writer.drain()


def _handshake_packet() -> bytes:
    epoch = int(time.monotonic() * 1000) & 0xFFFFFFFF
    return epoch.to_bytes(4, "big") + bytes(4) + os.urandom(HANDSHAKE_SIZE - 8)


# Writing messages --------------------------------------------------------------------------


def chunked(csid: int, type_id: int, stream_id: int, payload: bytes) -> bytes:
    """One message as chunks of the default size: a full header, then one-byte headers."""
    out = bytearray([csid])
    out += bytes(3) + len(payload).to_bytes(3, "big") + bytes([type_id])
    out += stream_id.to_bytes(4, "little")
    for start in range(0, len(payload), DEFAULT_CHUNK_SIZE):
        if start:
            out.append(0xC0 | csid)
        out += payload[start : start + DEFAULT_CHUNK_SIZE]
    return bytes(out)


def command_message(stream_id: int, *values: Any) -> bytes:
    return chunked(3 if stream_id == 0 else 5, AMF0_COMMAND, stream_id, amf0_encode(*values))


def control_message(type_id: int, payload: bytes) -> bytes:
    return chunked(2, type_id, 0, payload)


# AMF0 ---------------------------------------------------------------------------------------

_MAX_DEPTH = 16


def amf0_encode(*values: Any) -> bytes:
    out = bytearray()
    for value in values:
        _encode(value, out)
    return bytes(out)


def _encode(value: Any, out: bytearray) -> None:
    if value is None:
        out.append(5)
    elif isinstance(value, bool):
        out += bytes([1, value])
    elif isinstance(value, int | float):
        out += b"\x00" + struct.pack(">d", value)
    elif isinstance(value, str):
        data = value.encode()
        out += b"\x02" + len(data).to_bytes(2, "big") + data
    elif isinstance(value, dict):
        out.append(3)
        for key, item in value.items():
            name = key.encode()
            out += len(name).to_bytes(2, "big") + name
            _encode(item, out)
        out += b"\x00\x00\x09"
    else:
        raise TypeError(f"cannot encode {type(value).__name__} as AMF0")


def amf0_decode(data: bytes) -> list[Any]:
    """Every value in `data`; malformed or unsupported input raises `RtmpProtocolError`."""
    decoder = _Decoder(data)
    values = []
    while decoder.pos < len(data):
        values.append(decoder.value(0))
    return values


class _Decoder:
    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def take(self, n: int) -> bytes:
        if self.pos + n > len(self.data):
            raise RtmpProtocolError("an AMF0 value runs past the end of its message")
        chunk = self.data[self.pos : self.pos + n]
        self.pos += n
        return chunk

    def text(self, size_bytes: int) -> str:
        size = int.from_bytes(self.take(size_bytes), "big")
        try:
            return self.take(size).decode()
        except UnicodeDecodeError:
            raise RtmpProtocolError("an AMF0 string is not UTF-8") from None

    def value(self, depth: int) -> Any:
        if depth > _MAX_DEPTH:
            raise RtmpProtocolError("AMF0 values nested too deeply")
        marker = self.take(1)[0]
        if marker == 0:
            return struct.unpack(">d", self.take(8))[0]
        if marker == 1:
            return self.take(1) != b"\x00"
        if marker == 2:
            return self.text(2)
        if marker in (3, 8):  # object; ECMA array (its count is a hint only)
            if marker == 8:
                self.take(4)
            return self.properties(depth)
        if marker in (5, 6):  # null, undefined
            return None
        if marker == 10:  # strict array
            count = int.from_bytes(self.take(4), "big")
            if count > len(self.data) - self.pos:
                raise RtmpProtocolError("an AMF0 array longer than its message")
            return [self.value(depth + 1) for _ in range(count)]
        if marker == 11:  # date: milliseconds, then a time zone nobody uses
            stamp = struct.unpack(">d", self.take(8))[0]
            self.take(2)
            return stamp
        if marker == 12:
            return self.text(4)
        raise RtmpProtocolError(f"unsupported AMF0 type {marker}")

    def properties(self, depth: int) -> dict[str, Any]:
        result: dict[str, Any] = {}
        while True:
            key = self.text(2)
            if not key and self.data[self.pos : self.pos + 1] == b"\x09":
                self.pos += 1
                return result
            result[key] = self.value(depth + 1)
