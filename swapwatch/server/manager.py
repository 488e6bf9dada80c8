"""The streams of one service: add, list, remove, and a graceful stop of all of them."""

from __future__ import annotations

import asyncio
import itertools
import logging
import secrets
import socket
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from swapwatch.engines.base import Engine
from swapwatch.errors import ConfigError, UnsupportedSource
from swapwatch.fusion import DecisionConfig, Policy
from swapwatch.server.config import ServiceConfig
from swapwatch.server.metrics import ServiceMetrics
from swapwatch.server.rtmp_front import RtmpFront
from swapwatch.server.streams import (
    SourceFactory,
    StreamSpec,
    StreamWorker,
    check_stream_id,
)
from swapwatch.stream.pipeline import FrameResult
from swapwatch.stream.source import AvSource, SourceOptions, classify, redact_url

log = logging.getLogger(__name__)

PULL_SCHEMES = ("rtmp", "rtmps", "rtsp", "rtsps", "srt", "http", "https", "udp", "tcp", "file")
LIVE_SCHEMES = ("rtmp", "rtmps", "rtsp", "rtsps", "srt", "udp", "tcp")
STREAM_KEY_BYTES = 24  # 192 random bits: 32 URL-safe characters

# (stream id, event type, payload)
EventListener = Callable[[str, str, dict[str, Any]], None]


class StreamExists(ConfigError):
    pass


class StreamNotFound(ConfigError):
    pass


class TooManyStreams(ConfigError):
    pass


@dataclass(frozen=True, slots=True)
class PushIngest:
    """A new RTMP push stream and its key, which is shown this once."""

    worker: StreamWorker
    stream_key: str
    publish_url: str  # rtmp://HOST:PORT/live/KEY


class StreamManager:
    def __init__(self, config: ServiceConfig, engine: Engine, metrics: ServiceMetrics) -> None:
        self.config = config
        self.engine = engine
        self.metrics = metrics
        self.workers: dict[str, StreamWorker] = {}
        self._listeners: list[EventListener] = []
        self._rtmp_ports = itertools.cycle(range(config.rtmp_ports[0], config.rtmp_ports[1] + 1))
        self._fronts: dict[StreamWorker, RtmpFront] = {}
        self._lock = asyncio.Lock()
        self.closing = False

    def subscribe(self, listener: EventListener) -> Callable[[], None]:
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener)

    def _emit(self, stream_id: str, kind: str, payload: dict[str, Any]) -> None:
        log.info("stream %s: %s %s", stream_id, kind, payload)
        for listener in list(self._listeners):
            try:
                listener(stream_id, kind, payload)
            except Exception:  # one listener must not silence the others
                log.exception("event listener failed")

    def decision(self, policy: Policy) -> DecisionConfig:
        """`cusum_h` from the configuration, else the model's operating point, else the rule's."""
        if self.config.cusum_h is not None:
            return DecisionConfig(policy=policy, h=self.config.cusum_h)
        point = self.engine.info.operating_point
        if point is not None:
            return DecisionConfig(policy=policy, h=point.cusum_h)
        return DecisionConfig(policy=policy)

    def _new_id(self, requested: str | None) -> str:
        stream_id = check_stream_id(requested) if requested else uuid.uuid4().hex[:12]
        if stream_id in self.workers and not self.workers[stream_id].done:
            raise StreamExists(f"stream {stream_id!r} already exists")
        if sum(not w.done for w in self.workers.values()) >= self.config.max_streams:
            raise TooManyStreams(
                f"the service already runs its maximum of {self.config.max_streams} streams"
            )
        return stream_id

    async def add_pull(
        self,
        url: str,
        stream_id: str | None = None,
        policy: Policy | None = None,
        kind: str = "pull",
    ) -> StreamWorker:
        scheme = url.split("://", 1)[0].lower() if "://" in url else ""
        if scheme not in PULL_SCHEMES:
            schemes = ", ".join(s + "://" for s in PULL_SCHEMES)
            raise UnsupportedSource(f"cannot pull {redact_url(url)!r}: use one of {schemes}")
        if scheme == "file" and not self.config.allow_file_urls:
            raise ConfigError("file:// URLs are disabled (set allow_file_urls in the config)")
        classify(url)  # a malformed host or port is refused here, not in the stream's task
        live = scheme in LIVE_SCHEMES or url.split("?")[0].endswith(".m3u8")
        options = SourceOptions(
            live=live,
            max_rate=self.config.rate,
            read_timeout=self.config.read_timeout_s,
            open_timeout=self.config.read_timeout_s,
        )
        spec_policy = policy or Policy(self.config.policy)
        async with self._lock:
            sid = self._new_id(stream_id)
            spec = StreamSpec(sid, url, kind, spec_policy, live=live, reconnect=live)
            return self._start(spec, lambda: AvSource(url, options))

    async def add_rtmp_push(self, stream_id: str | None, policy: Policy | None) -> PushIngest:
        """A stream a publisher pushes to us, on a port of its own, with a key of its own.

        FFmpeg's listener takes any key, so it listens on a private loopback port behind an
        `RtmpFront` that lets only this stream's key through (see `rtmp_front`)."""
        async with self._lock:
            sid = self._new_id(stream_id)
            self._release_fronts()
            key = secrets.token_urlsafe(STREAM_KEY_BYTES)
            upstream = _private_port()
            front = await self._open_front(sid, key, upstream)
            listen_url = f"rtmp://127.0.0.1:{upstream}/live/{key}"
            options = SourceOptions(
                live=True,
                listen=True,
                max_rate=self.config.rate,
                open_timeout=3600.0,
                read_timeout=self.config.read_timeout_s,
            )
            ingest = f"rtmp://{self._ingest_host()}:{front.port}/live"
            spec = StreamSpec(
                sid,
                listen_url,
                "rtmp",
                policy or Policy(self.config.policy),
                live=True,
                reconnect=True,
                ingest_url=f"{ingest}/***",
                ingest_port=front.port,
            )
            try:
                worker = self._start(spec, lambda: AvSource(listen_url, options))
            except BaseException:
                front.close()
                raise
            self._fronts[worker] = front
            return PushIngest(worker, key, f"{ingest}/{key}")

    async def _open_front(self, sid: str, key: str, upstream: int) -> RtmpFront:
        """A front on the first free port of the range that can be had."""
        used = {front.port for front in self._fronts.values()}
        low, high = self.config.rtmp_ports
        host = self.config.rtmp_listen_host
        refused = self.metrics.rtmp_refused
        problem = "every port is taken by another stream"
        for _ in range(high - low + 1):
            port = next(self._rtmp_ports)
            if port in used:
                continue
            front = RtmpFront(sid, host, port, key, upstream, lambda r: refused.labels(r).inc())
            try:
                await front.start()
            except OSError as exc:
                problem = f"{host}:{port}: {exc.strerror or exc}"
                continue
            return front
        raise TooManyStreams(f"no free RTMP ingest port left ({problem})")

    def _release_fronts(self, everything: bool = False) -> None:
        """Close the fronts of streams that ended or were replaced (their ports come free)."""
        for worker, front in list(self._fronts.items()):
            current = self.workers.get(worker.spec.stream_id) is worker
            if everything or worker.done or not current:
                front.close()
                del self._fronts[worker]

    async def add_source(
        self,
        stream_id: str | None,
        kind: str,
        factory: SourceFactory,
        policy: Policy | None,
        on_result: Callable[[FrameResult], None] | None = None,
    ) -> StreamWorker:
        async with self._lock:
            sid = self._new_id(stream_id)
            spec = StreamSpec(
                sid,
                f"{kind}:{sid}",
                kind,
                policy or Policy(self.config.policy),
                live=True,
                reconnect=False,
            )
            return self._start(spec, factory, on_result)

    def _ingest_host(self) -> str:
        """Where publishers are told to push: from the configuration only (a request's Host
        header is the client's to choose)."""
        host = self.config.rtmp_public_host or self.config.rtmp_listen_host
        if host in ("", "0.0.0.0", "::"):
            host = socket.gethostname()
        return url_host(host)

    def _start(
        self,
        spec: StreamSpec,
        factory: SourceFactory,
        on_result: Callable[[FrameResult], None] | None = None,
    ) -> StreamWorker:
        if self.closing:
            raise TooManyStreams("the service is shutting down")
        old = self.workers.pop(spec.stream_id, None)
        if old is not None:
            self.metrics.forget_stream(spec.stream_id)
        worker = StreamWorker(
            spec,
            factory,
            self.engine,
            self.decision(spec.policy),
            self.metrics,
            lambda kind, payload: self._emit(spec.stream_id, kind, payload),
            (self.config.max_width, self.config.max_height),
            (self.config.reconnect_initial_s, self.config.reconnect_max_s),
            on_result,
            self.config.signals,
            self.config.quality,
        )
        self.workers[spec.stream_id] = worker
        worker.start()
        return worker

    def get(self, stream_id: str) -> StreamWorker:
        worker = self.workers.get(stream_id)
        if worker is None:
            raise StreamNotFound(f"no stream {stream_id!r}")
        return worker

    async def remove(self, stream_id: str) -> None:
        worker = self.get(stream_id)
        front = self._fronts.pop(worker, None)
        if front is not None:
            front.close()  # its publisher is cut off, and no other gets in
        await worker.stop(self.config.drain_timeout_s, reason="removed")
        # While it stopped, a new stream may have taken the id: that one stays.
        if self.workers.get(stream_id) is worker:
            del self.workers[stream_id]
            self.metrics.forget_stream(stream_id)

    async def close(self) -> None:
        """Graceful shutdown: stop every stream (each finishes its frame), within the drain time."""
        self.closing = True
        self._release_fronts(everything=True)
        started = time.monotonic()
        await asyncio.gather(
            *(w.stop(self.config.drain_timeout_s, "shutdown") for w in self.workers.values()),
            return_exceptions=True,
        )
        log.info("stopped %d streams in %.1fs", len(self.workers), time.monotonic() - started)

    def list_json(self) -> list[dict[str, Any]]:
        return [w.to_json() for w in self.workers.values()]


def url_host(host: str) -> str:
    """A host as it is written in a URL: an IPv6 address in brackets."""
    return f"[{host}]" if ":" in host and not host.startswith("[") else host


def _private_port() -> int:
    """A loopback port free now, for FFmpeg's listener behind a front."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])
