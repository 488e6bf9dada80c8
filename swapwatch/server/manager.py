"""The streams of one service: add, list, remove, and a graceful stop of all of them."""

from __future__ import annotations

import asyncio
import itertools
import logging
import secrets
import socket
import time
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from swapwatch.cluster.push import PushListen
from swapwatch.engines.base import Engine
from swapwatch.errors import ConfigError, SourceError
from swapwatch.events.model import Event, EventType
from swapwatch.events.run import RunEvents
from swapwatch.fusion import DecisionConfig, Policy
from swapwatch.server.config import (
    AnalysisConfig,
    DecodeConfig,
    IngestConfig,
    LimitsConfig,
    ServiceConfig,
)
from swapwatch.server.metrics import ServiceMetrics
from swapwatch.server.pull_urls import check_pull_url
from swapwatch.server.state import SavedStream, StateError, StateStore
from swapwatch.server.streams import (
    IngestGone,
    ManagedStream,
    ServiceStream,
    SourceFactory,
    StreamPlacer,
    StreamSpec,
    check_stream_id,
)
from swapwatch.stream.assembly import AnalysisSettings
from swapwatch.stream.pipeline import FrameResult
from swapwatch.stream.rtmp_front import (
    NoFreePort,
    RtmpFront,
    key_digest,
    listen_on_first_free,
    private_listen_url,
    private_port,
)
from swapwatch.stream.source import AvSource, SourceOptions, classify
from swapwatch.stream.status import LiveFigures

log = logging.getLogger(__name__)

LIVE_SCHEMES = ("rtmp", "rtmps", "rtsp", "rtsps", "srt", "udp", "tcp")
STREAM_KEY_BYTES = 24  # 192 random bits: 32 URL-safe characters
SAVED_KINDS = ("pull", "nginx-rtmp", "rtmp")  # WebRTC sessions die with their peer connection
# A publisher of the key that comes before its stream's decoder listens waits for it: through
# the worker's reconnect delay (between publishers), plus this for its start (the face models).
DECODER_START_S = 30.0
# How long a new push stream on a cluster may take to be placed and listening on its node.
CLUSTER_INGEST_START_S = 30.0

WEBRTC_ON_A_CLUSTER = (
    "WebRTC cannot run on the cluster: a WebRTC session's media ends at the one process that "
    "answered its offer, so it cannot move to another node, and a session is short (a lost one "
    "is retried by its client). Send WebRTC offers and KYC sessions to a swapwatch serve "
    'without cluster.address; on the cluster, push RTMP ({"ingest": "rtmp"}) or pull a URL'
)

EventListener = Callable[[Event], None]


class StreamExists(ConfigError):
    pass


class StreamNotFound(ConfigError):
    pass


class TooManyStreams(ConfigError):
    pass


@dataclass(frozen=True, slots=True)
class PushIngest:
    """A new RTMP push stream and its key, which is shown this once."""

    worker: ManagedStream
    stream_key: str
    publish_url: str  # rtmp://HOST:PORT/live/KEY


@dataclass(frozen=True, slots=True)
class StreamSettings:
    """The sections of the configuration that streams are made from."""

    ingest: IngestConfig
    analysis: AnalysisConfig
    decode: DecodeConfig
    limits: LimitsConfig
    rtmp_listen_host: str  # `ingest.rtmp.host`, else where the API listens

    @classmethod
    def of(cls, config: ServiceConfig) -> StreamSettings:
        return cls(
            config.ingest, config.analysis, config.decode, config.limits, config.rtmp_listen_host
        )


class StreamManager:
    """Adds, lists and removes streams; those added through the API are saved in `state` before
    they start and forgotten before they stop, so that a restart resumes exactly them."""

    def __init__(
        self,
        settings: StreamSettings,
        engine: Engine,
        metrics: ServiceMetrics,
        state: StateStore | None = None,
        placer: StreamPlacer | None = None,
    ) -> None:
        """With `placer`, pulled streams run where it puts them (a cluster), not here."""
        self.settings = settings
        self.placer = placer
        self.engine = engine
        self.metrics = metrics
        self.state = state
        # One thread, so the state file sees saves and forgets in the order they were made.
        self._state_writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="state-writer")
        self.workers: dict[str, ManagedStream] = {}
        self._listeners: list[EventListener] = []
        low, high = settings.ingest.rtmp.ports
        self._rtmp_ports = itertools.cycle(range(low, high + 1))
        self._fronts: dict[ManagedStream, RtmpFront] = {}
        self._lock = asyncio.Lock()
        self.closing = False
        metrics.streams.source = self

    def subscribe(self, listener: EventListener) -> Callable[[], None]:
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener)

    def publish(self, event: Event) -> None:
        """The streams' event sink: every event goes to each listener."""
        log.info(
            "stream %s: %s %s",
            event.stream,
            event.type.value,
            event.detail if event.detail is not None else event.evidence,
        )
        for listener in list(self._listeners):
            try:
                listener(event)
            except Exception:  # one listener must not silence the others
                log.exception("event listener failed")

    def decision(self, policy: Policy) -> DecisionConfig:
        """`cusum_h` from the configuration, else the model's operating point, else the rule's."""
        cusum_h = self.settings.analysis.cusum_h
        if cusum_h is not None:
            return DecisionConfig(policy=policy, h=cusum_h)
        point = self.engine.info.operating_point
        if point is not None:
            return DecisionConfig(policy=policy, h=point.cusum_h)
        return DecisionConfig(policy=policy)

    async def _settle(self, requested: str | None) -> None:
        """Before taking the lock: a stream that ended under the requested id may still be
        closing its models; its id is free once it has (waited for at most the drain time,
        without holding up other streams' adds)."""
        existing = self.workers.get(requested) if requested else None
        if existing is not None:
            await existing.settle(self.settings.limits.drain_timeout_s)

    def _new_id(self, requested: str | None, resuming: bool = False) -> str:
        """Under the lock: the id for a new stream, or why there is none. A stream `resuming`
        was accepted before: the limit refuses new streams, never drops an accepted one (the
        limit may have been lowered, or a stream the service failed kept its row)."""
        if self.closing:  # before anything is saved: it would be resumed at the next start
            raise TooManyStreams("the service is shutting down")
        stream_id = check_stream_id(requested) if requested else uuid.uuid4().hex[:12]
        if stream_id in self.workers and not self.workers[stream_id].done:
            raise StreamExists(f"stream {stream_id!r} already exists")
        most = self.settings.limits.max_streams
        # One that ended counts no more, though its models may still be closing.
        running = sum(not (w.done or w.ended) for w in self.workers.values())
        if running >= most and not resuming:
            raise TooManyStreams(f"the service already runs its maximum of {most} streams")
        return stream_id

    async def add_pull(
        self,
        url: str,
        stream_id: str | None = None,
        policy: Policy | None = None,
        kind: str = "pull",
        publisher: str | None = None,
        resuming: bool = False,
    ) -> ManagedStream:
        """Pull `url` (kind "pull", or "nginx-rtmp" for the relay's streams, then `publisher` is
        the nginx client id of the session that started it); saved to be resumed. `resuming`:
        see `_new_id`."""
        scheme = check_pull_url(url, self.settings.ingest.pull.allow_file_urls)
        classify(url)  # a malformed host or port is refused here, not in the stream's task
        live = scheme in LIVE_SCHEMES or url.split("?")[0].endswith(".m3u8")
        options = SourceOptions(
            live=live,
            max_rate=self.settings.analysis.rate,
            read_timeout=self.settings.ingest.read_timeout_s,
            open_timeout=self.settings.ingest.read_timeout_s,
            hwaccel=self.settings.decode.hwaccel,
        )
        spec_policy = policy or self.settings.analysis.policy
        await self._settle(stream_id)
        async with self._lock:
            sid = self._new_id(stream_id, resuming)
            spec = StreamSpec(sid, url, kind, spec_policy, live=live, reconnect=live)
            await self._save(SavedStream(sid, kind, spec_policy.value, url, publisher=publisher))
            return self._start(spec, lambda: AvSource(url, options))

    async def add_rtmp_push(self, stream_id: str | None, policy: Policy | None) -> PushIngest:
        """A stream a publisher pushes to us, on a port of its own, with a key of its own.

        FFmpeg's listener takes any key, so it listens on a private loopback port behind an
        `RtmpFront` that lets only this stream's key through (see `rtmp_front`). The service
        keeps only the key's digest: the key is in this answer and nowhere else. On a cluster
        the stream's actor opens both on its node: the answer waits until it has."""
        await self._settle(stream_id)
        async with self._lock:
            sid = self._new_id(stream_id)
            key = secrets.token_urlsafe(STREAM_KEY_BYTES)
            worker, port = await self._push(
                sid, policy or self.settings.analysis.policy, key_digest(key)
            )
        if port is not None:
            ingest = f"rtmp://{self._ingest_host()}:{port}/live"
        else:
            ingest = await self._cluster_ingest(worker)
        return PushIngest(worker, key, f"{ingest}/{key}")

    async def _cluster_ingest(self, worker: ManagedStream) -> str:
        """Where the cluster put the push ingest of `worker`; a stream no node took in time is
        removed."""
        assert self.placer is not None
        try:
            return await self.placer.ingest_address(worker, CLUSTER_INGEST_START_S)
        except IngestGone as exc:  # deleted while its answer waited, or the service stopping
            if self.closing:
                raise TooManyStreams("the service is shutting down") from None
            raise StreamNotFound(str(exc)) from None
        except TimeoutError:
            await self.remove(worker.spec.stream_id, only=worker)
            raise TooManyStreams(
                f"no cluster node opened the RTMP ingest within {CLUSTER_INGEST_START_S:.0f} s "
                "(no free cluster.stream_resource slot, or no free port of ingest.rtmp.ports "
                "on the nodes that have one)"
            ) from None

    async def _push(
        self, sid: str, policy: Policy, digest: bytes, port: int | None = None
    ) -> tuple[ManagedStream, int | None]:
        """Open the push ingest of `sid` for the key of `digest` (on `port` when it can be had)
        and save it; the worker and the port publishers push to (None on a cluster: the
        stream's actor opens it on the node Ray places it on)."""
        if self.placer is not None:
            return await self._push_on_cluster(sid, policy, digest), None
        self._release_fronts()
        upstream = private_port()
        front = await self._open_front(sid, digest, upstream, port)
        listen_url = private_listen_url(upstream)
        options = self._push_options()
        spec = StreamSpec(
            sid,
            listen_url,
            "rtmp",
            policy,
            live=True,
            reconnect=True,
            ingest_url=f"rtmp://{self._ingest_host()}:{front.port}/live/***",
            ingest_port=front.port,
        )
        try:
            if front.port != port:
                digest_hex = digest.hex()
                await self._save(
                    SavedStream(sid, "rtmp", policy.value, None, digest_hex, front.port)
                )
            worker = self._start(spec, lambda: AvSource(listen_url, options))
        except BaseException:
            front.close()
            raise
        front.decoder_alive = lambda: not worker.done
        self._fronts[worker] = front
        return worker, front.port

    async def _push_on_cluster(self, sid: str, policy: Policy, digest: bytes) -> ManagedStream:
        """A push stream whose actor listens on its own node: saved with no port (each node
        has its own), so that a restarted front resumes it on whichever node takes it."""
        await self._save(SavedStream(sid, "rtmp", policy.value, None, digest.hex(), None))
        listen = PushListen(
            digest,
            self.settings.ingest.rtmp.host,
            self.settings.ingest.rtmp.ports,
            self._push_options(),
            self.ready_timeout(),
        )
        spec = StreamSpec(sid, f"rtmp-push:{sid}", "rtmp", policy, live=True, reconnect=True)
        return self._start(spec, listen)

    async def _open_front(
        self, sid: str, digest: bytes, upstream: int, wanted: int | None = None
    ) -> RtmpFront:
        """A front on `wanted` if it can be had, else on the first free port of the range."""
        used = {front.port for front in self._fronts.values()}
        low, high = self.settings.ingest.rtmp.ports
        refused = self.metrics.rtmp_refused
        tries = [next(self._rtmp_ports) for _ in range(high - low + 1)]
        if wanted is not None and low <= wanted <= high:
            tries.insert(0, wanted)

        def front_on(port: int) -> RtmpFront:
            return RtmpFront(
                sid,
                self.settings.rtmp_listen_host,
                port,
                digest,
                upstream,
                lambda r: refused.labels(r).inc(),
                ready_timeout=self.ready_timeout(),
            )

        try:
            front = await listen_on_first_free((p for p in tries if p not in used), front_on)
        except NoFreePort as exc:
            raise TooManyStreams(str(exc)) from None
        if wanted is not None and front.port != wanted:
            log.warning(
                "stream %s: its RTMP ingest moved from port %d to %d", sid, wanted, front.port
            )
        return front

    def ready_timeout(self) -> float:
        """How long a push ingest holds a publisher of its key for its decoder to listen."""
        return self.settings.ingest.reconnect_max_s + DECODER_START_S

    def _push_options(self) -> SourceOptions:
        """The decoder's of a push ingest: it listens for the one publisher its front lets in."""
        return SourceOptions(
            live=True,
            listen=True,
            max_rate=self.settings.analysis.rate,
            open_timeout=3600.0,
            read_timeout=self.settings.ingest.read_timeout_s,
            hwaccel=self.settings.decode.hwaccel,
        )

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
        score_past_pose_gate: bool = False,
    ) -> ManagedStream:
        """A stream fed by the caller's source (WebRTC). `score_past_pose_gate`: a KYC
        session's, whose challenges turn the head past the gate."""
        self.check_webrtc_here()
        await self._settle(stream_id)
        async with self._lock:
            sid = self._new_id(stream_id)
            spec = StreamSpec(
                sid,
                f"{kind}:{sid}",
                kind,
                policy or self.settings.analysis.policy,
                live=True,
                reconnect=False,
            )
            return self._start(spec, factory, on_result, score_past_pose_gate)

    def check_webrtc_here(self) -> None:
        """Refuse WebRTC (and KYC sessions, which are WebRTC) on a cluster, saying why."""
        if self.placer is not None:
            raise ConfigError(WEBRTC_ON_A_CLUSTER)

    def _ingest_host(self) -> str:
        """Where publishers are told to push: from the configuration only (a request's Host
        header is the client's to choose)."""
        host = self.settings.ingest.rtmp.public_host or self.settings.rtmp_listen_host
        if host in ("", "0.0.0.0", "::"):
            host = socket.gethostname()
        return url_host(host)

    def _start(
        self,
        spec: StreamSpec,
        source: SourceFactory | PushListen,
        on_result: Callable[[FrameResult], None] | None = None,
        score_past_pose_gate: bool = False,
    ) -> ManagedStream:
        if self.closing:
            raise TooManyStreams("the service is shutting down")
        old = self.workers.pop(spec.stream_id, None)
        if old is not None:
            self.metrics.forget_stream(spec.stream_id)
        max_size = (self.settings.limits.max_width, self.settings.limits.max_height)
        backoff = (self.settings.ingest.reconnect_initial_s, self.settings.ingest.reconnect_max_s)
        worker: ManagedStream
        if self.placer is not None:
            analysis = AnalysisSettings(
                decision=self.decision(spec.policy),
                quality=self.settings.analysis.quality.gate,
                signals=tuple(self.settings.analysis.signals),
            )
            refused = self.metrics.rtmp_refused
            worker = self.placer.stream(
                spec,
                source,
                analysis,
                max_size,
                backoff,
                self,
                lambda: self._finished(spec),
                lambda reason: refused.labels(reason).inc(),
            )
        else:
            assert not isinstance(source, PushListen), "a push ingest listens here, not so"
            worker = ServiceStream(
                spec,
                source,
                self.engine,
                self.decision(spec.policy),
                self.metrics,
                self,
                max_size,
                backoff,
                on_result,
                self.settings.analysis.signals,
                self.settings.analysis.quality.gate,
                on_finished=lambda: self._finished(spec),
                score_past_pose_gate=score_past_pose_gate,
            )
        self.workers[spec.stream_id] = worker
        worker.start()
        return worker

    def get(self, stream_id: str) -> ManagedStream:
        worker = self.workers.get(stream_id)
        if worker is None:
            raise StreamNotFound(f"no stream {stream_id!r}")
        return worker

    def _finished(self, spec: StreamSpec) -> None:
        """A stream whose source ended or failed for good (a file read to its end, a refused
        URL) is not resumed: its row goes, after any save queued before it. One that failed on
        this side (its face models or a signal plugin would not load) is not heard of here and
        stays saved: the next start, the fault mended, resumes it."""
        if spec.kind in SAVED_KINDS and self.state is not None:
            self._state_writer.submit(self._forget_quietly, spec.stream_id)

    def _forget_quietly(self, stream_id: str) -> None:
        assert self.state is not None
        try:
            self.state.forget_stream(stream_id)
        except StateError as exc:
            log.error("stream %s ended but stays saved (it will be resumed): %s", stream_id, exc)

    async def _save(self, stream: SavedStream) -> None:
        """Commit `stream` to the state file before it starts: a 201 means it will be resumed."""
        if self.state is not None:
            loop = asyncio.get_running_loop()
            await loop.run_in_executor(self._state_writer, self.state.save_stream, stream)

    async def _forget(self, stream_id: str) -> None:
        if self.state is not None:
            loop = asyncio.get_running_loop()
            await loop.run_in_executor(self._state_writer, self.state.forget_stream, stream_id)

    async def resume(self, saved: Sequence[SavedStream]) -> list[ManagedStream]:
        """Start the streams a previous process saved; one that cannot start again (its URL is
        no longer allowed, no port is left) ends with a final `stream.error` and is forgotten."""
        resumed = []
        for stream in saved:
            try:
                resumed.append(await self._resume_one(stream))
            except (ConfigError, SourceError) as exc:
                log.error("stream %s not resumed: %s", stream.stream_id, exc)
                error = {"error": f"not resumed after a restart: {exc}", "final": True}
                self.publish(RunEvents(stream.stream_id).lifecycle(EventType.STREAM_ERROR, error))
                await self._forget(stream.stream_id)
        if resumed:
            log.info("resumed %d saved streams", len(resumed))
        return resumed

    async def _resume_one(self, stream: SavedStream) -> ManagedStream:
        policy = Policy(stream.policy)
        if stream.kind == "rtmp":
            if stream.key_sha256 is None:
                raise ConfigError("a saved RTMP ingest without its key digest")
            await self._settle(stream.stream_id)
            async with self._lock:
                sid = self._new_id(stream.stream_id, resuming=True)
                digest = bytes.fromhex(stream.key_sha256)
                worker, _ = await self._push(sid, policy, digest, stream.port)
                return worker
        if stream.url is None:
            raise ConfigError(f"a saved {stream.kind} stream without its URL")
        return await self.add_pull(
            stream.url, stream.stream_id, policy, stream.kind, stream.publisher, resuming=True
        )

    async def remove(self, stream_id: str, only: ManagedStream | None = None) -> None:
        """Forget the stream (it does not come back after a restart), then stop it; with
        `only`, only if that is still the stream of this id."""
        # Under the lock: an add of this id that is saving its row finishes first, and then is
        # the one removed; else its row could go after it was saved, leaving it running unsaved.
        async with self._lock:
            worker = self.get(stream_id)
            if only is not None and worker is not only:
                return
            await self._forget(stream_id)
        front = self._fronts.pop(worker, None)
        if front is not None:
            front.close()  # its publisher is cut off, and no other gets in
        await worker.stop(self.settings.limits.drain_timeout_s, reason="removed")
        # While it stopped, a new stream may have taken the id: that one stays.
        if self.workers.get(stream_id) is worker:
            del self.workers[stream_id]
            self.metrics.forget_stream(stream_id)

    async def close(self, timeout: float | None = None) -> None:
        """Graceful shutdown: stop every stream (each finishes its frame), within `timeout` s
        (default: the drain time)."""
        timeout = self.settings.limits.drain_timeout_s if timeout is None else timeout
        async with self._lock:  # an add saving its row finishes (and is stopped below) first
            self.closing = True
        self._release_fronts(everything=True)
        started = time.monotonic()
        await asyncio.gather(
            *(w.stop(timeout, "shutdown") for w in self.workers.values()),
            return_exceptions=True,
        )
        log.info("stopped %d streams in %.1fs", len(self.workers), time.monotonic() - started)
        await asyncio.get_running_loop().run_in_executor(None, self._state_writer.shutdown, True)

    def list_json(self) -> list[dict[str, Any]]:
        return [w.to_json() for w in self.workers.values()]

    def live_figures(self) -> dict[str, LiveFigures]:
        """Each stream's current rates, latency and faces (for /metrics)."""
        return {sid: w.live() for sid, w in self.workers.items()}


def url_host(host: str) -> str:
    """A host as it is written in a URL: an IPv6 address in brackets."""
    return f"[{host}]" if ":" in host and not host.startswith("[") else host
