"""The front's link to a Ray cluster: connect, start the shared detector, place stream actors.

Stream actors are placed by declared resources (`cluster.stream_cpus` CPUs and one unit of the
custom resource `cluster.stream_resource`, which the nodes meant for streams declare) and made
again by Ray, without limit, when their process or node dies (`max_restarts=-1`); a poll in
flight then fails (`max_task_retries=0`) and the front starts the new incarnation from its
checkpoint. Actors are owned by the front's driver: they end with it, and the front's next start
resumes its saved streams as a single process does.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import ray
from ray.exceptions import GetTimeoutError, RayError

from swapwatch.cluster.actor import StreamActor
from swapwatch.cluster.detector import DetectorService, RemoteEngine
from swapwatch.cluster.join import ClusterError, join_with_retries
from swapwatch.engines.base import Engine, ModelInfo

log = logging.getLogger(__name__)

DETECTOR_START_S = 300.0  # placing it (a node may have to be added), loading and warming up
DETECTOR_THREADS = 64  # calls one detector actor takes at once (the batching queue's callers)


class RayCluster:
    """A connection to a Ray cluster (`ray.init`), for one front process."""

    def __init__(
        self,
        address: str,
        namespace: str,
        stream_cpus: float,
        stream_resource: str | None,
        detector_cpus: float,
        detector_gpus: float,
        detector_resource: str | None,
        join_timeout_s: float = 120.0,
    ) -> None:
        self.address = address
        self.join_timeout_s = join_timeout_s
        self.namespace = namespace
        self.stream_cpus = stream_cpus
        self.stream_resource = stream_resource
        self.detector_cpus = detector_cpus
        self.detector_gpus = detector_gpus
        self.detector_resource = detector_resource

    def connect(self) -> None:
        """Blocks while it joins, trying again until `join_timeout_s` has passed."""
        join_with_retries(self._join_once, self.address, self.join_timeout_s)
        nodes = [n for n in ray.nodes() if n.get("Alive")]  # type: ignore[no-untyped-call, unused-ignore]
        log.info("joined the Ray cluster at %s: %d nodes", self.address, len(nodes))

    def _join_once(self) -> None:
        try:
            ray.init(address=self.address, namespace=self.namespace, configure_logging=False)
        except BaseException:
            ray.shutdown()  # a Ray Client that half connected must not stay set up
            raise

    def connected(self) -> bool:
        """False once the connection is gone for good (may block while Ray Client reconnects)."""
        try:
            return bool(ray.is_initialized())
        except ConnectionError:  # Ray Client's, once it has given up
            return False

    def start_detector(
        self, make_engine: Callable[[], Engine], max_batch: int, max_wait: float
    ) -> RemoteEngine:
        """The shared detector, loaded and warmed up (blocks until then)."""
        resources = {self.detector_resource: 1.0} if self.detector_resource else {}
        actor = ray.remote(DetectorService).options(
            num_cpus=self.detector_cpus,
            num_gpus=self.detector_gpus,
            resources=resources,
            max_restarts=-1,
            max_task_retries=-1,  # an inference is safe to run again on the new incarnation
            max_concurrency=DETECTOR_THREADS,
        )
        handle: Any = actor.remote(make_engine, max_batch, max_wait)
        try:
            info: ModelInfo = ray.get(handle.info.remote(), timeout=DETECTOR_START_S)
        except GetTimeoutError as exc:
            raise ClusterError(
                f"the detector was not running after {DETECTOR_START_S:.0f} s: no node offers "
                f"{self.detector_cpus} CPUs, {self.detector_gpus} GPUs and {resources or 'no'} "
                "custom resources?"
            ) from exc
        except RayError as exc:
            raise ClusterError(f"the detector could not start: {exc}") from exc
        return RemoteEngine(handle, info)

    def place_stream(self) -> Any:
        """A new stream actor (its handle); Ray places it when resources allow."""
        resources = {self.stream_resource: 1.0} if self.stream_resource else {}
        actor = ray.remote(StreamActor).options(
            num_cpus=self.stream_cpus,
            resources=resources,
            max_restarts=-1,
            max_task_retries=0,
        )
        return actor.remote()

    def end_stream(self, handle: Any) -> None:
        """The actor goes, and is not made again."""
        ray.kill(handle, no_restart=True)

    def close(self) -> None:
        ray.shutdown()
