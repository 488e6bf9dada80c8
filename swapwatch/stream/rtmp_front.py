"""The RTMP push ingest's front door: only a publish of the stream's own key reaches FFmpeg.

FFmpeg's RTMP listener (what the stream's `AvSource` opens) accepts any stream name, so it
listens on a private loopback port and this front listens where publishers connect. The front
does the handshake and answers `connect` and `createStream` itself, reading the publisher's chunk
stream up to its `publish`. A publish of the stream's key is passed on: the front connects to
FFmpeg's listener, replays the publisher's bytes since its handshake (FFmpeg reads the very chunk
stream the publisher sent), tells the publisher to start, and from then on copies its bytes to
FFmpeg unread. Another key, another command, malformed bytes or silence are refused and the
connection closed before a byte of it reaches FFmpeg, so nothing of it is decoded.

FFmpeg listens only once the stream's worker has loaded its face models (seconds after the API
gave out the key), and again only after its reconnect delay once a publisher has gone. A
publisher of the key that comes meanwhile is held, its `publish` unanswered, until FFmpeg
listens, for at most `ready_timeout`; then it is refused (`not_ready`). Publishers connect once
(a one-shot `ffmpeg -f flv URL` does not try again), so holding them is what lets one push as
soon as it has the key; the key is checked before the wait, so the wait is never given to others.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import logging
import socket
from collections.abc import Callable, Iterable
from typing import TypeAlias

from swapwatch.errors import SourceError
from swapwatch.stream.rtmp_wire import (
    SET_PEER_BANDWIDTH,
    WINDOW_ACK_SIZE,
    ChunkReader,
    RtmpProtocolError,
    accept_handshake,
    command,
    command_message,
    connect_handshake,
    control_message,
)

log = logging.getLogger(__name__)

HANDSHAKE_TIMEOUT_S = 10.0  # from TCP connect to `publish`
MAX_PRE_PUBLISH_BYTES = 64 * 1024  # a real publisher sends ~1 KiB before its publish
MAX_PENDING = 8  # publishers in their handshake at once (beyond: closed at once)
READY_TIMEOUT_S = 60.0  # how long a publisher of the key waits for FFmpeg to listen
UPSTREAM_POLL_S = 0.1  # how often a waiting publisher's connect to FFmpeg is tried again
ACK_WINDOW = 2_500_000
RELAY_READ = 64 * 1024

# Refusal reasons (the `reason` label of swapwatch_rtmp_publishes_refused_total)
WRONG_KEY = "key"
PROTOCOL = "protocol"
TIMEOUT = "timeout"
BUSY = "busy"
NOT_READY = "not_ready"

# FFmpeg's listener behind a front takes any stream name: it is given this one, not the key.
PRIVATE_STREAM_NAME = "ingest"

Connection: TypeAlias = tuple[asyncio.StreamReader, asyncio.StreamWriter]


class NoFreePort(SourceError):
    """No port of the ingest's range could be listened on."""


def key_digest(key: str) -> bytes:
    """What the front holds of a stream key: its SHA-256 (the key is 192 random bits, so a fast
    hash is enough; a stolen state file does not give the key)."""
    return hashlib.sha256(key.encode()).digest()


class RtmpFront:
    """Listens on `host:port` for one stream; passes a publish of the key whose `key_digest`
    it holds on to FFmpeg's RTMP listener on 127.0.0.1:`upstream_port`, one publisher at a
    time, waiting up to `ready_timeout` for that listener; `decoder_alive` says whether the
    stream behind it will listen again (a publisher is not held for a stream that has ended)."""

    def __init__(
        self,
        name: str,
        host: str,
        port: int,
        digest: bytes,
        upstream_port: int,
        on_refused: Callable[[str], None] = lambda reason: None,
        handshake_timeout: float = HANDSHAKE_TIMEOUT_S,
        ready_timeout: float = READY_TIMEOUT_S,
    ) -> None:
        self.name = name  # for logs: the stream id
        self.host = host
        self.port = port
        self.upstream_port = upstream_port
        self._digest = digest
        self._on_refused = on_refused
        self._handshake_timeout = handshake_timeout
        self._ready_timeout = ready_timeout
        self.decoder_alive: Callable[[], bool] = lambda: True
        self._server: asyncio.Server | None = None
        self._connections: set[asyncio.StreamWriter] = set()
        self._pending = 0
        self._publishing = False
        self.refused = 0

    async def start(self) -> None:
        """Listen; raises OSError when the address cannot be had."""
        self._server = await asyncio.start_server(self._serve, self.host, self.port)

    def close(self) -> None:
        """Stop listening and drop every connection, the publishing one included."""
        if self._server is not None:
            self._server.close()
        for writer in list(self._connections):
            writer.transport.abort()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._connections.add(writer)
        peer = writer.get_extra_info("peername")
        try:
            if self._pending >= MAX_PENDING:
                self._refuse(peer, BUSY, "too many publishers in their handshake")
                return
            self._pending += 1
            try:
                async with asyncio.timeout(self._handshake_timeout):
                    stream_id, name, raw = await self._until_publish(reader, writer)
            except TimeoutError:
                self._refuse(peer, TIMEOUT, "no publish in time")
                return
            except RtmpProtocolError as exc:
                self._refuse(peer, PROTOCOL, str(exc))
                return
            except (asyncio.IncompleteReadError, ConnectionError):
                return  # hung up before publishing: nothing to refuse
            finally:
                self._pending -= 1
            if not hmac.compare_digest(key_digest(name), self._digest):
                await _status(writer, stream_id, "error", "NetStream.Publish.BadName", "wrong key")
                self._refuse(peer, WRONG_KEY, "not this stream's key")
                return
            if self._publishing:
                await _status(writer, stream_id, "error", "NetStream.Publish.BadName", "in use")
                self._refuse(peer, BUSY, "another publisher is live")
                return
            await self._relay(reader, writer, stream_id, raw, peer)
        except ConnectionError:
            pass
        finally:
            self._connections.discard(writer)
            writer.transport.abort()

    async def _until_publish(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> tuple[int, str, bytes]:
        """Play the server up to the publisher's `publish`: (its message stream, its stream
        name, the bytes it sent after the handshake)."""
        await accept_handshake(reader, writer)
        chunks = ChunkReader(reader, MAX_PRE_PUBLISH_BYTES)
        while True:
            message = await chunks.message()
            values = command(message)
            if values is None:
                continue  # chunk size, acknowledgements, user control
            name, transaction = values[0], values[1]
            if name == "connect":
                writer.write(control_message(WINDOW_ACK_SIZE, ACK_WINDOW.to_bytes(4, "big")))
                writer.write(control_message(SET_PEER_BANDWIDTH, _peer_bandwidth()))
                writer.write(
                    command_message(
                        0,
                        "_result",
                        transaction,
                        {"fmsVer": "FMS/3,0,1,123", "capabilities": 31},
                        {
                            "level": "status",
                            "code": "NetConnection.Connect.Success",
                            "description": "Connection succeeded.",
                            "objectEncoding": 0,
                        },
                    )
                )
            elif name in ("releaseStream", "FCPublish"):
                writer.write(command_message(0, "_result", transaction, None))
            elif name == "createStream":
                writer.write(command_message(0, "_result", transaction, None, 1))
            elif name == "publish":
                if len(values) < 4 or not isinstance(values[3], str):
                    raise RtmpProtocolError("a publish without a stream name")
                return message.stream_id, values[3], bytes(chunks.raw)
            elif name in ("play", "play2"):
                raise RtmpProtocolError("this ingest takes publishers only")
            await writer.drain()

    async def _relay(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        stream_id: int,
        raw: bytes,
        peer: object,
    ) -> None:
        self._publishing = True  # taken while it waits too: another publisher is busy
        try:
            upstream = await self._upstream(reader, writer, stream_id, peer)
            if upstream is None:
                return
            await self._proxy(reader, writer, stream_id, raw, peer, upstream)
        finally:
            self._publishing = False

    async def _upstream(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        stream_id: int,
        peer: object,
    ) -> Connection | None:
        """A connection to FFmpeg's listener as soon as it listens; None (the publisher refused
        or gone) when it does not within `ready_timeout` or the stream has ended."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._ready_timeout
        held = False
        while True:
            try:
                return await asyncio.open_connection("127.0.0.1", self.upstream_port)
            except OSError:
                pass
            if writer.is_closing() or reader.at_eof():
                log.info("rtmp ingest %s: %s gone before the stream listened", self.name, peer)
                return None
            if not self.decoder_alive():
                problem = "the stream has ended and takes no publisher"
                break
            if loop.time() >= deadline:
                problem = f"the stream did not listen within {self._ready_timeout:.0f} s"
                break
            if not held:
                held = True
                log.info("rtmp ingest %s: %s waits for the stream to listen", self.name, peer)
            await asyncio.sleep(UPSTREAM_POLL_S)
        await _status(writer, stream_id, "error", "NetStream.Publish.Failed", "not ready")
        self._refuse(peer, NOT_READY, problem)
        return None

    async def _proxy(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        stream_id: int,
        raw: bytes,
        peer: object,
        upstream: Connection,
    ) -> None:
        up_reader, up_writer = upstream
        self._connections.add(up_writer)
        try:
            await connect_handshake(up_reader, up_writer)
            up_writer.write(raw)
            await up_writer.drain()
            await _status(writer, stream_id, "status", "NetStream.Publish.Start", "publishing")
            log.info("rtmp ingest %s: %s publishes", self.name, peer)
            # The publisher's bytes go to FFmpeg as sent; FFmpeg's answers (acknowledgements of
            # a session the publisher never saw) are read and dropped.
            forward = asyncio.create_task(_copy(reader, up_writer))
            drain = asyncio.create_task(_discard(up_reader))
            await asyncio.wait({forward, drain}, return_when=asyncio.FIRST_COMPLETED)
            for task in (forward, drain):
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, ConnectionError):
                    await task
        except (RtmpProtocolError, asyncio.IncompleteReadError, ConnectionError) as exc:
            log.warning("rtmp ingest %s: the stream's decoder went away: %s", self.name, exc)
        finally:
            self._connections.discard(up_writer)
            up_writer.transport.abort()
            log.info("rtmp ingest %s: %s stopped publishing", self.name, peer)

    def _refuse(self, peer: object, reason: str, detail: str) -> None:
        self.refused += 1
        self._on_refused(reason)
        log.warning("rtmp ingest %s: refused %s: %s", self.name, peer, detail)


async def listen_on_first_free(
    ports: Iterable[int], make_front: Callable[[int], RtmpFront]
) -> RtmpFront:
    """The front of `make_front(port)` listening on the first of `ports` it can have."""
    problem = "every port is taken by another stream"
    for port in ports:
        front = make_front(port)
        try:
            await front.start()
        except OSError as exc:
            problem = f"{front.host}:{port}: {exc.strerror or exc}"
            continue
        return front
    raise NoFreePort(f"no free RTMP ingest port left ({problem})")


def private_port() -> int:
    """A loopback port free now, for FFmpeg's listener behind a front."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def private_listen_url(port: int) -> str:
    """What the stream's decoder listens on behind its front."""
    return f"rtmp://127.0.0.1:{port}/live/{PRIVATE_STREAM_NAME}"


async def _status(
    writer: asyncio.StreamWriter, stream_id: int, level: str, code: str, description: str
) -> None:
    info = {"level": level, "code": code, "description": description}
    writer.write(command_message(stream_id, "onStatus", 0, None, info))
    await writer.drain()


def _peer_bandwidth() -> bytes:
    return ACK_WINDOW.to_bytes(4, "big") + b"\x02"  # dynamic limit


async def _copy(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    while data := await reader.read(RELAY_READ):
        writer.write(data)
        await writer.drain()


async def _discard(reader: asyncio.StreamReader) -> None:
    while await reader.read(RELAY_READ):
        pass
