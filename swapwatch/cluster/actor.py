"""One stream's worker inside a Ray actor.

The front starts it with a `StreamJob` and the last checkpoint it holds (none for a new stream),
then polls it: each poll acknowledges the events the front has committed and fetches the newer
ones, the latest checkpoint and the status. After a crash Ray makes the actor again (a fresh
incarnation, not started) wherever resources allow, and the front starts it from its checkpoint.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from swapwatch.cluster.ledger import Checkpoint, PendingEvents
from swapwatch.cluster.push import NodeIngest, PushListen, open_on_node, publish_host
from swapwatch.engines.base import Engine
from swapwatch.stream.assembly import (
    AnalysisSettings,
    build_analyzer,
    share_cores_between_streams,
)
from swapwatch.stream.pipeline import FrameResult, StreamAnalyzer
from swapwatch.stream.report import worker_report
from swapwatch.stream.source import FrameSource
from swapwatch.stream.worker import StreamWorker, WorkerConfig

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class StreamJob:
    """What a stream actor runs; sent by the front (cloudpickled, so factories travel)."""

    config: WorkerConfig
    # A pulled stream's source, or the push ingest the actor opens on its node for its source.
    source: Callable[[], FrameSource] | PushListen
    analysis: AnalysisSettings
    engine: Engine  # the shared detector, reached through `detector.RemoteEngine`
    checkpoint_s: float  # seconds between checkpoints (one is also taken at each alarm)


@dataclass(frozen=True, slots=True)
class Placement:
    """Where an actor runs."""

    node_id: str
    node_ip: str
    pid: int
    ingest_port: int | None = None  # where its push ingest listens (rtmp kind)
    ingest_host: str | None = None  # where publishers reach it: ingest.rtmp.host or node_ip


@dataclass(frozen=True, slots=True)
class Report:
    """One poll's answer."""

    incarnation: str  # new each time Ray makes the actor
    started: bool
    placement: Placement
    events: list[tuple[int, str]]  # (number, encoded event) not yet acknowledged
    checkpoint: Checkpoint | None  # taken since the previous poll
    status: dict[str, Any] | None  # `worker_report`, and the video's redacted URL
    done: bool  # the worker has finished (ended, failed or stopped)
    finished_by_source: bool  # its source ended or failed for good (`StreamWorker.on_finished`)
    refused: list[str]  # reasons of the publishes its push ingest refused since the last poll


def current_placement() -> Placement:
    import ray

    context = ray.get_runtime_context()
    ip: str = ray.util.get_node_ip_address()  # type: ignore[no-untyped-call, unused-ignore]
    return Placement(context.get_node_id(), ip, os.getpid())


class StreamActor:
    """Made with `ray.remote` by `connect.RayCluster.place_stream`; an async actor."""

    def __init__(self) -> None:
        share_cores_between_streams()  # a node runs many stream actors side by side
        self.incarnation = uuid.uuid4().hex
        self._placement = current_placement()
        self._events = PendingEvents()
        self._worker: StreamWorker | None = None
        self._task: asyncio.Task[None] | None = None
        self._checkpoint: Checkpoint | None = None
        self._checkpoint_s = 0.0
        self._checkpointed_at = 0.0
        self._ingest: NodeIngest | None = None
        self._refused: list[str] = []

    async def start(
        self, job: StreamJob, checkpoint: Checkpoint | None, ingest_port: int | None = None
    ) -> Placement:
        """Run `job` from `checkpoint` (a repeated call changes nothing). A push ingest listens
        on `ingest_port` if it can have it (raises `NoFreePort` when no port of its range is)."""
        if self._worker is not None:
            return self._placement
        source = job.source
        if isinstance(source, PushListen):
            self._ingest = await open_on_node(
                source,
                job.config.stream_id,
                self._placement.node_ip,
                ingest_port,
                self._refused.append,
            )
            self._placement = dataclasses.replace(
                self._placement,
                ingest_port=self._ingest.front.port,
                ingest_host=publish_host(self._ingest.front.host, self._placement.node_ip),
            )
            source = self._ingest.source_factory
        self._events = PendingEvents(checkpoint.upto if checkpoint is not None else 0)
        self._checkpoint_s = job.checkpoint_s
        engine, analysis = job.engine, job.analysis

        def analyzer() -> StreamAnalyzer:
            return build_analyzer(engine, analysis)

        worker = StreamWorker(job.config, source, analyzer, self._events, on_result=self._on_result)
        if checkpoint is not None:
            worker.restore(checkpoint.state)
        self._worker = worker
        self._checkpointed_at = time.monotonic()
        task = asyncio.get_running_loop().create_task(worker.run())
        self._task = task
        if self._ingest is not None:
            self._ingest.front.decoder_alive = lambda: not task.done()
        log.info("stream %s started on node %s", job.config.stream_id, self._placement.node_id)
        return self._placement

    def _on_result(self, result: FrameResult) -> None:
        """Between two frames, right after the frame's events: a checkpoint at each alarm and
        every `checkpoint_s` s, which names the last event its state includes."""
        now = time.monotonic()
        if result.alerts or now - self._checkpointed_at >= self._checkpoint_s:
            assert self._worker is not None
            self._checkpoint = Checkpoint(self._worker.state_now(), self._events.made)
            self._checkpointed_at = now

    async def poll(self, acknowledged: int) -> Report:
        """Forget the events up to `acknowledged` (committed by the front); what is new."""
        self._events.acknowledge(acknowledged)
        worker, task = self._worker, self._task
        done = task is not None and task.done()
        if done and task is not None and not task.cancelled() and task.exception() is not None:
            log.error("stream worker failed: %s", task.exception())
        checkpoint, self._checkpoint = self._checkpoint, None
        refused, self._refused[:] = list(self._refused), []
        status = None
        if worker is not None:
            video = worker.status.video
            status = {**worker_report(worker), "url": video.url if video else None}
        return Report(
            incarnation=self.incarnation,
            started=worker is not None,
            placement=self._placement,
            events=[(n, e.encode()) for n, e in self._events.unacknowledged()],
            checkpoint=checkpoint,
            status=status,
            done=done,
            finished_by_source=worker is not None and worker.finished_by_source,
            refused=refused,
        )

    async def stop(self, timeout: float, reason: str) -> None:
        """See `StreamWorker.stop`; the events it makes go out with the next poll. Its push
        ingest, if any, stops listening first: its publisher is cut off."""
        if self._ingest is not None:
            self._ingest.front.close()
        if self._worker is not None:
            await self._worker.stop(self._task, timeout, reason)
