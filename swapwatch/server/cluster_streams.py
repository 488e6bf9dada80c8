"""Streams of the service that run as actors on a Ray cluster, seen from the front.

The front keeps what must outlive any worker node: the registry (saved streams), the outbox and
each stream's latest checkpoint (here, in memory, beside the outbox it must agree with). Each
`ClusterStream` polls its actor: it publishes the new events to the service (the outbox owner),
waits until they are committed, acknowledges them on the next poll, and only then keeps the
checkpoint that came with them. When the actor's process or node dies Ray makes it again; the
front sees a fresh incarnation and starts it from that checkpoint, so events made again carry
their first ids and the outbox and receivers drop the repeats.

An RTMP push stream's actor opens its ingest on its own node (`cluster.push`): its address is
the node's, shown in `ingest_url` once the actor has started and again, changed, after the actor
was made on another node; its publisher must then reconnect there.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from ray.exceptions import RayError

from swapwatch.cluster.actor import Placement, Report, StreamJob
from swapwatch.cluster.calls import call_result
from swapwatch.cluster.connect import RayCluster
from swapwatch.cluster.detector import RemoteEngine
from swapwatch.cluster.ledger import Checkpoint
from swapwatch.cluster.push import PushListen
from swapwatch.events.model import Event
from swapwatch.events.run import new_epoch
from swapwatch.server.manager import url_host
from swapwatch.server.streams import (
    IngestGone,
    ManagedStream,
    SourceFactory,
    StreamSpec,
    wait_for_task,
)
from swapwatch.stream.assembly import AnalysisSettings
from swapwatch.stream.lifecycle import TRANSITIONS, StreamState
from swapwatch.stream.report import status_report
from swapwatch.stream.sink import EventSink
from swapwatch.stream.source import redact_url
from swapwatch.stream.status import LiveFigures, WorkerStatus
from swapwatch.stream.worker import WorkerConfig

log = logging.getLogger(__name__)

POLL_S = 0.2  # how often the front fetches a stream's events (the most an alarm waits here)
POLL_TIMEOUT_S = 5.0  # a poll that takes longer counts as a lost actor
# What a call to an actor raises when it fails: Ray's errors, and Ray Client's ConnectionError
# once its connection to the cluster is gone (the front then stops: see cli.serve).
CALL_FAILED = (RayError, ConnectionError)
STOP_GRACE_S = 5.0  # beyond the drain time, for the last events of a stopping actor

Committed = Callable[[], Awaitable[None]]


class ClusterStatus:
    """The live figures of the latest report (none while the actor is lost)."""

    def __init__(self) -> None:
        self.report: dict[str, Any] | None = None
        self.lost = False  # the actor does not answer: its last figures are stale

    def live(self) -> LiveFigures:
        r = self.report
        if r is None or self.lost:
            return LiveFigures(0.0, 0.0, None, 0)
        return LiveFigures(r["fps_in"], r["fps_analysed"], r["latency_ms"], r["faces"])


class ClusterStream:
    """One stream whose worker is a Ray actor (see the module's docstring)."""

    def __init__(
        self,
        spec: StreamSpec,
        job: StreamJob,
        cluster: RayCluster,
        sink: EventSink,
        committed: Committed,
        on_finished: Callable[[], None],
        on_refused: Callable[[str], None],
    ) -> None:
        self.spec = spec
        self._job = job
        self._cluster = cluster
        self._sink = sink
        self._committed = committed
        self._on_finished = on_finished
        self._on_refused = on_refused
        self.status = ClusterStatus()
        self._state = StreamState.STARTING
        self._handle: Any = None
        self._task: asyncio.Task[None] | None = None
        self._incarnation: str | None = None
        self._placement: Placement | None = None
        self._checkpoint: Checkpoint | None = None
        self._acknowledged = 0
        self._stopping = False
        self._said_finished = False  # on_finished is called once
        self._lost_since: float | None = None
        self.restarts = 0  # times its worker was made again from a checkpoint
        self.moves = 0  # of which on another node
        self.last_recovery_s: float | None = None

    @property
    def state(self) -> StreamState:
        return self._state

    @property
    def done(self) -> bool:
        return self._task is None or self._task.done()

    @property
    def ended(self) -> bool:
        return not TRANSITIONS[self._state]

    async def settle(self, timeout: float) -> None:
        """See `ManagedStream.settle`."""
        if self.ended:
            await wait_for_task(self._task, timeout)

    def start(self) -> None:
        self._handle = self._cluster.place_stream()
        self._task = asyncio.get_running_loop().create_task(
            self._supervise(), name=f"cluster stream {self.spec.stream_id}"
        )

    async def stop(self, timeout: float = 10.0, reason: str = "stopped") -> None:
        """The actor stops its worker (its last events are committed), then goes."""
        self._stopping = True
        if self._incarnation is None:
            # No node has started its worker (none had a free slot yet): nothing to stop or
            # commit, and a call to its actor would wait for a slot, then time out.
            if self._task is not None:
                self._task.cancel()
            self._end_actor()
            return
        if self._handle is not None:  # none once it ended by itself: its actor is gone
            try:
                await call_result(self._handle.stop.remote(timeout, reason), timeout)
            except (*CALL_FAILED, TimeoutError) as exc:
                log.warning(
                    "stream %s: its actor did not stop cleanly: %s", self.spec.stream_id, exc
                )
        if self._task is not None and not self._task.done():
            try:  # the supervisor commits the last events, then sees the worker done
                await asyncio.wait_for(asyncio.shield(self._task), STOP_GRACE_S)
            except TimeoutError:
                self._task.cancel()
        self._end_actor()

    def _finished_by_itself(self) -> None:
        if not self._said_finished:
            self._said_finished = True
            self._on_finished()

    def _end_actor(self) -> None:
        if self._handle is not None:
            try:
                self._cluster.end_stream(self._handle)
            except CALL_FAILED as exc:
                log.warning("stream %s: its actor not ended: %s", self.spec.stream_id, exc)
            self._handle = None

    async def _supervise(self) -> None:
        while True:
            report = await self._poll()
            if report is None:
                await asyncio.sleep(POLL_S)
                continue
            if report.incarnation != self._incarnation:
                if self._stopping:
                    return  # made again while stopping: it is not started
                await self._start_incarnation(report)
                continue
            await self._take(report)
            if report.done:
                self._state = StreamState(report.status["state"]) if report.status else self._state
                if not self._stopping:
                    self._end_actor()
                    if report.finished_by_source:
                        self._finished_by_itself()
                return
            await asyncio.sleep(POLL_S)

    async def _poll(self) -> Report | None:
        try:
            report: Report = await call_result(
                self._handle.poll.remote(self._acknowledged), POLL_TIMEOUT_S
            )
        except (*CALL_FAILED, TimeoutError) as exc:
            if self._lost_since is None:
                self._lost_since = time.monotonic()
                self.status.lost = True
                log.warning("stream %s: its actor is lost (%s)", self.spec.stream_id, exc)
            return None
        return report

    async def _start_incarnation(self, report: Report) -> None:
        """A new actor: started from the last checkpoint the front kept (none at first)."""
        again = self._incarnation is not None
        if report.started:  # a previous start of this incarnation whose answer was lost
            self._incarnation = report.incarnation
            return
        # Made again on the same node, a push ingest keeps its port: its publisher's URL holds.
        previous = self._placement
        same_node = previous is not None and previous.node_id == report.placement.node_id
        port = previous.ingest_port if previous is not None and same_node else None
        try:
            placement: Placement = await call_result(
                self._handle.start.remote(self._job, self._checkpoint, port)
            )
        except CALL_FAILED as exc:
            log.warning("stream %s: start failed (%s), trying again", self.spec.stream_id, exc)
            await asyncio.sleep(POLL_S)
            return
        # Events after the checkpoint that were committed are made again under the same ids
        # or not at all; the numbering goes on from the checkpoint's.
        self._acknowledged = self._checkpoint.upto if self._checkpoint is not None else 0
        if again:
            self.restarts += 1
            moved = self._placement is not None and placement.node_id != self._placement.node_id
            self.moves += moved
            if self._lost_since is not None:
                self.last_recovery_s = round(time.monotonic() - self._lost_since, 3)
            log.warning(
                "stream %s: worker made again on node %s (%s) from its checkpoint, %.1f s after "
                "it was lost",
                self.spec.stream_id,
                placement.node_id[:12],
                "moved" if moved else "same node",
                self.last_recovery_s or 0.0,
            )
        self._lost_since = None
        self._incarnation = report.incarnation
        self._placement = placement
        self.status.report = None  # the figures of the worker that was

    async def _take(self, report: Report) -> None:
        """Publish the new events, wait until they are committed, then acknowledge them (at
        the next poll) and keep the checkpoint that came with them."""
        self._lost_since = None
        self.status.lost = False
        for reason in report.refused:
            self._on_refused(reason)
        if report.status is not None:
            self.status.report = report.status
            self._state = StreamState(report.status["state"])
            if report.finished_by_source and not self._stopping:
                # As the state turns final, before its end goes out: the node may still be
                # closing its models, and a client that sees the end must find it forgotten.
                self._finished_by_itself()
        newest = self._acknowledged
        for number, body in report.events:
            if number > self._acknowledged:
                self._sink.publish(Event.decode(body))
                newest = max(newest, number)
        if newest > self._acknowledged:
            await self._committed()
        self._acknowledged = newest
        if report.checkpoint is not None and report.checkpoint.upto <= newest:
            self._checkpoint = report.checkpoint

    def live(self) -> LiveFigures:
        """None once it has ended: its last report's rates would be shown for ever."""
        return LiveFigures(0.0, 0.0, None, 0) if self.ended else self.status.live()

    async def ingest_address(self, timeout: float) -> str:
        """`rtmp://NODE_IP:PORT/live`, where the push ingest listens, once its actor has
        started; raises TimeoutError when it has not within `timeout` s, IngestGone when the
        stream is stopped or ends first."""
        async with asyncio.timeout(timeout):
            while (address := self._ingest_address()) is None:
                if self._stopping or self.ended:
                    sid = self.spec.stream_id
                    raise IngestGone(f"stream {sid!r} was removed before its ingest opened")
                await asyncio.sleep(POLL_S / 4)
        return address

    def _ingest_address(self) -> str | None:
        """Where its publisher pushes now: none while its actor is lost or not started."""
        placement = self._placement
        if placement is None or placement.ingest_port is None or self._lost_since is not None:
            return None
        host = placement.ingest_host or placement.node_ip
        return f"rtmp://{url_host(host)}:{placement.ingest_port}/live"

    def to_json(self) -> dict[str, Any]:
        # Before its first report (or while its actor is lost): a worker that has not started.
        report = self.status.report or status_report(WorkerStatus(), self._state, None)
        live = self.live()
        placement = self._placement
        return {
            "id": self.spec.stream_id,
            "kind": self.spec.kind,
            "url": report.get("url") or redact_url(self.spec.url),
            "ingest_url": self._ingest_url(),
            "policy": self.spec.policy.value,
            **{k: v for k, v in report.items() if k != "url"},
            "state": self._state.value,
            "fps_in": round(live.fps_in, 2),
            "fps_analysed": round(live.fps_analysed, 2),
            "faces": live.faces,
            "latency_ms": live.latency_ms,
            "cluster": {
                "node_id": placement.node_id if placement else None,
                "node_ip": placement.node_ip if placement else None,
                "pid": placement.pid if placement else None,
                "restarts": self.restarts,
                "moves": self.moves,
                "last_recovery_s": self.last_recovery_s,
                "lost": self._lost_since is not None,
            },
        }

    def _ingest_url(self) -> str | None:
        if not isinstance(self._job.source, PushListen):
            return self.spec.ingest_url
        address = self._ingest_address()
        return f"{address}/***" if address is not None else None


class ClusterPlacer:
    """Runs the service's streams (pulled, and RTMP pushed) as actors on `cluster`, sharing
    `engine`."""

    def __init__(
        self, cluster: RayCluster, engine: RemoteEngine, committed: Committed, checkpoint_s: float
    ) -> None:
        self.cluster = cluster
        self.engine = engine
        self.committed = committed
        self.checkpoint_s = checkpoint_s

    def stream(
        self,
        spec: StreamSpec,
        source: SourceFactory | PushListen,
        analysis: AnalysisSettings,
        max_size: tuple[int, int],
        backoff: tuple[float, float],
        sink: EventSink,
        on_finished: Callable[[], None],
        on_refused: Callable[[str], None],
    ) -> ManagedStream:
        # The epoch is fixed here, not in the actor: a worker made again before its first
        # checkpoint gives its first run the same id, and so its events.
        config = WorkerConfig(
            spec.stream_id,
            reconnect=spec.reconnect,
            backoff=backoff,
            max_size=max_size,
            epoch=new_epoch(),
        )
        job = StreamJob(config, source, analysis, self.engine, self.checkpoint_s)
        return ClusterStream(spec, job, self.cluster, sink, self.committed, on_finished, on_refused)

    async def ingest_address(self, stream: ManagedStream, timeout: float) -> str:
        """Where the publisher of `stream` (an RTMP push stream of this placer) pushes."""
        assert isinstance(stream, ClusterStream)
        return await stream.ingest_address(timeout)
