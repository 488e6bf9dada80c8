"""An RTMP push ingest that a stream actor opens on its own node (needs no Ray itself).

The front sends the digest of the stream key, never the key. The actor listens where the
node's publishers reach it (`ingest.rtmp.host` when set, else the node's IP as Ray reports it)
on a free port of `ingest.rtmp.ports`, behind the same `RtmpFront` as a single process: only a
publish of the key reaches the decoder, which listens on a private loopback port. Made again
on the same node, the actor tries its previous port first, so the publisher's URL still holds;
on another node the address changes and the publisher must reconnect to the new one. The first
port tried is drawn at random, so actors starting together on a node seldom race for one port.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass

from swapwatch.stream.rtmp_front import (
    RtmpFront,
    listen_on_first_free,
    private_listen_url,
    private_port,
)
from swapwatch.stream.source import AvSource, FrameSource, SourceOptions


@dataclass(frozen=True, slots=True)
class PushListen:
    """What a stream actor needs to open its push ingest: the key's digest, where to listen,
    and its decoder's options (`listen=True`)."""

    digest: bytes  # SHA-256 of the stream key
    host: str | None  # `ingest.rtmp.host`; None: the node's IP as Ray reports it
    ports: tuple[int, int]  # `ingest.rtmp.ports`, the range to listen on
    options: SourceOptions
    ready_timeout: float  # how long a publisher of the key is held for the decoder to listen


@dataclass(frozen=True, slots=True)
class NodeIngest:
    """A push ingest open on this node: its front and the source its worker reads."""

    front: RtmpFront
    source_factory: Callable[[], FrameSource]


def ports_to_try(ports: tuple[int, int], wanted: int | None) -> list[int]:
    """Every port of the range once, from a random one on; `wanted` first when in the range."""
    low, high = ports
    every = list(range(low, high + 1))
    start = random.randrange(len(every))
    tries = every[start:] + every[:start]
    if wanted is not None and wanted in tries:
        tries.remove(wanted)
        tries.insert(0, wanted)
    return tries


async def open_on_node(
    push: PushListen,
    stream_id: str,
    node_ip: str,
    wanted: int | None,
    on_refused: Callable[[str], None],
) -> NodeIngest:
    """Listen for the stream's publisher on this node; raises `NoFreePort`."""
    upstream = private_port()
    host = push.host or node_ip

    def front_on(port: int) -> RtmpFront:
        return RtmpFront(
            stream_id,
            host,
            port,
            push.digest,
            upstream,
            on_refused,
            ready_timeout=push.ready_timeout,
        )

    front = await listen_on_first_free(ports_to_try(push.ports, wanted), front_on)
    url, options = private_listen_url(upstream), push.options
    return NodeIngest(front, lambda: AvSource(url, options))


WILDCARDS = ("0.0.0.0", "::", "")


def publish_host(listen_host: str, node_ip: str) -> str:
    """Where publishers reach an ingest listening on `listen_host`: that address, or the node's
    IP when it listens on every interface."""
    return node_ip if listen_host in WILDCARDS else listen_host
