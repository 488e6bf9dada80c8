"""Streams on a local two-node Ray cluster (marker `cluster`, run by .ci/run after make test):
a stream worker whose process is killed, and then whose node is lost, resumes from its
checkpoint on the cluster within 5 s and 15 s, and every alarm reaches a webhook receiver under
one id.

The front is a real `swapwatch serve --cluster` process; the streams pull a live MPEG-TS feed
over TCP; the detector (a test model that calls every face fake) is the cluster's shared actor.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sqlite3
import subprocess
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from live_ts import LiveFeed, write_live_clip
from media import Placement
from receivers import Receiver
from service import RunningService, free_port, serve_process, wait_until_ready

from swapwatch.server.config import ServiceConfig

ray = pytest.importorskip(
    "ray", reason="the cluster test needs Ray: pip install 'swapwatch[ray]' (make test-cluster)"
)
from ray.cluster_utils import Cluster  # noqa: E402

pytestmark = pytest.mark.cluster

# Node loss is noticed within ~1.5 s instead of Ray's default ~15 s (see README, "Cluster").
HEALTH_CHECKS = {
    "health_check_initial_delay_ms": 0,
    "health_check_period_ms": 500,
    "health_check_timeout_ms": 500,
    "health_check_failure_threshold": 3,
}
CLIP_S = 150.0
PROCESS_RESUME_S = 5.0
NODE_RESUME_S = 15.0


def face_comes_and_goes(t: float) -> list[Placement]:
    """A face 4 s out of every 6: each appearance is a new track, so a new alarm."""
    return [Placement(0.5, 0.5, 230)] if t % 6.0 < 4.0 else []


@pytest.fixture
def cluster() -> Iterator[Cluster]:
    """A head that holds the detector and two worker nodes with two stream slots each."""
    head = {"num_cpus": 1, "resources": {"detector": 1}, "_system_config": HEALTH_CHECKS}
    cluster = Cluster(initialize_head=True, head_node_args=head)
    try:
        for _ in range(2):
            cluster.add_node(num_cpus=1, resources={"stream_slots": 2})
        yield cluster
    finally:
        cluster.shutdown()


@pytest.fixture
def feed(tmp_path: Path) -> Iterator[LiveFeed]:
    clip = write_live_clip(tmp_path / "live.ts", CLIP_S, face_comes_and_goes)
    feed = LiveFeed(clip, CLIP_S).start()
    yield feed
    feed.stop()


class Front:
    """`swapwatch serve --cluster ADDRESS` in its own process."""

    def __init__(
        self,
        tmp_path: Path,
        address: str,
        model: Path,
        receiver: Receiver,
        settings: Sequence[str] = (),
    ) -> None:
        self.port = free_port()
        self.outbox = tmp_path / "state" / "events.sqlite"
        lines = [
            f"http.port = {self.port}",
            f'analysis.model = "{model}"',
            f'events.path = "{self.outbox}"',
            f'events.sinks = ["webhook:{receiver.url};backoff=0.2;max_backoff=0.5"]',
            "ingest.reconnect_initial_s = 0.2",
            "ingest.reconnect_max_s = 1.0",
            "cluster.stream_cpus = 0.5",
            "cluster.detector_cpus = 0.5",
            'cluster.detector_resource = "detector"',
            "cluster.checkpoint_s = 1.0",
            "analysis.quality.min_face_px = 40",
            f'cluster.address = "{address}"',
            *settings,
        ]
        self.config_file = tmp_path / "swapwatch.toml"
        self.config_file.write_text("\n".join(lines) + "\n")
        self.log = tmp_path / "serve.log"
        self.api = RunningService(
            ServiceConfig(http={"port": self.port}), f"http://127.0.0.1:{self.port}"
        )
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.process = serve_process(self.config_file, self.log)
        try:
            wait_until_ready(self.api.base, self.process, timeout=180)
        except AssertionError as exc:
            tail = "\n".join(self.log.read_text(errors="replace").splitlines()[-30:])
            raise AssertionError(f"{exc}; its log ends:\n{tail}") from None

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            self.process.wait(timeout=60)

    def stream(self, stream_id: str) -> dict[str, Any]:
        reply = self.api.request("GET", f"/v1/streams/{stream_id}")
        assert reply.status == 200, reply.body
        body: dict[str, Any] = reply.body
        return body

    def wait(self, stream_id: str, test: Any, timeout: float, what: str) -> float:
        """Seconds until `test(stream)` holds."""
        began = time.monotonic()
        while time.monotonic() - began < timeout:
            if test(self.stream(stream_id)):
                return time.monotonic() - began
            time.sleep(0.05)
        tail = self.log.read_text()[-3000:]
        raise AssertionError(
            f"{stream_id}: {what} not within {timeout} s: {self.stream(stream_id)}\n{tail}"
        )

    def outbox_events(self) -> list[dict[str, Any]]:
        with sqlite3.connect(self.outbox) as db:
            return [json.loads(body) for (body,) in db.execute("SELECT body FROM events")]


def resumed(restarts: int, moves: int = 0) -> Any:
    """Made again (and moved) and analysing: a latency is shown only for a frame analysed in
    the last 2 s, and a restored worker has none before its first frame."""

    def test(stream: dict[str, Any]) -> bool:
        placed = stream["cluster"]
        again = placed["restarts"] >= restarts and placed["moves"] >= moves
        return bool(again and stream["latency_ms"] is not None)

    return test


def test_streams_resume_after_a_process_crash_and_a_node_loss_and_no_alarm_is_lost_or_doubled(
    tmp_path: Path, cluster: Cluster, feed: LiveFeed, receiver: Receiver, fake_model: Path
) -> None:
    front = Front(tmp_path, cluster.address, fake_model, receiver)
    front.start()
    try:
        for sid in ("cam-a", "cam-b"):
            reply = front.api.request("POST", "/v1/streams", {"url": feed.url, "id": sid})
            assert reply.status == 201, reply.body
        front.wait("cam-a", lambda s: s["alarms_raised"] >= 1, 90, "a first alarm")
        before = front.stream("cam-a")

        # The worker's process dies mid-stream: Ray makes the actor again, the front restores it.
        os.kill(before["cluster"]["pid"], signal.SIGKILL)
        process_s = front.wait("cam-a", resumed(1), PROCESS_RESUME_S * 3, "resumed")
        after = front.stream("cam-a")
        assert after["run"] == before["run"]  # the same run, restored, not a new one
        assert after["cluster"]["pid"] != before["cluster"]["pid"]

        # A whole node goes: every stream on it comes back on the other one.
        lost = after["cluster"]["node_id"]
        on_lost = [s for s in ("cam-a", "cam-b") if front.stream(s)["cluster"]["node_id"] == lost]
        node = next(n for n in cluster.worker_nodes if n.node_id == lost)
        cluster.remove_node(node, allow_graceful=False)
        node_s = {
            sid: front.wait(sid, resumed(1, moves=1), NODE_RESUME_S * 2, "moved") for sid in on_lost
        }
        for sid in on_lost:
            assert front.stream(sid)["cluster"]["node_id"] != lost

        # More faces come and go on the moved streams: their alarms too must reach the receiver.
        raised = front.stream("cam-a")["alarms_raised"]
        front.wait("cam-a", lambda s: s["alarms_raised"] > raised, 30, "an alarm after the move")
        for sid in ("cam-a", "cam-b"):
            assert front.api.request("DELETE", f"/v1/streams/{sid}").status == 204
        figures = (
            f"resumed after the process crash in {process_s:.2f} s, after the node loss in "
            + ", ".join(f"{sid} {s:.2f} s" for sid, s in node_s.items())
        )
        print("\n" + figures)
        assert process_s < PROCESS_RESUME_S
        assert all(s < NODE_RESUME_S for s in node_s.values())

        recorded = front.outbox_events()
        ids = {e["id"] for e in recorded}
        assert receiver.wait_for(ids, 30), ids - set(receiver.ids())
    finally:
        front.stop()

    delivered = [json.loads(d.body) for d in receiver.deliveries]
    alarms = [e for e in delivered if e["type"].startswith("alert.")]
    assert sum(e["type"] == "alert.raised" for e in alarms) >= 3
    # At least once, and each alert under one id: a repeat carries the id it had.
    ids_of: dict[tuple[Any, ...], set[str]] = {}
    for e in alarms:
        key = (e["stream"], e["run"], e["type"], e["track"], e["media_time"])
        ids_of.setdefault(key, set()).add(e["id"])
    assert all(len(ids) == 1 for ids in ids_of.values()), ids_of
    ended = [e for e in delivered if e["type"] == "stream.ended"]
    assert {e["stream"] for e in ended} == {"cam-a", "cam-b"}


@contextlib.contextmanager
def head_with_client_server() -> Iterator[tuple[Cluster, int]]:
    """A head with the detector and the Ray Client server (as KubeRay starts it), and one
    worker node with two stream slots: the cluster and the client server's port."""
    port = free_port()
    head = {
        "num_cpus": 1,
        "resources": {"detector": 1},
        "_system_config": HEALTH_CHECKS,
        "ray_client_server_port": port,
    }
    cluster = Cluster(initialize_head=True, head_node_args=head)
    try:
        cluster.add_node(num_cpus=1, resources={"stream_slots": 2})
        yield cluster, port
    finally:
        cluster.shutdown()


@pytest.fixture
def client_cluster() -> Iterator[tuple[Cluster, int]]:
    with head_with_client_server() as running:
        yield running


# Ray's head leaves its client server's log files open in this (the test's) process.
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_a_front_joined_through_ray_client_places_and_restores_streams(
    tmp_path: Path,
    client_cluster: tuple[Cluster, int],
    feed: LiveFeed,
    receiver: Receiver,
    fake_model: Path,
) -> None:
    """The front of deploy/kubernetes/cluster runs in its own pod and joins as a Ray Client."""
    pytest.importorskip("grpc", reason="Ray Client needs ray[client]: pip install 'swapwatch[ray]'")
    cluster, port = client_cluster
    (worker,) = cluster.worker_nodes
    front = Front(tmp_path, f"ray://127.0.0.1:{port}", fake_model, receiver)
    front.start()
    try:
        reply = front.api.request("POST", "/v1/streams", {"url": feed.url, "id": "cam-a"})
        assert reply.status == 201, reply.body
        front.wait("cam-a", lambda s: s["alarms_raised"] >= 1, 90, "a first alarm")
        before = front.stream("cam-a")
        assert before["cluster"]["node_id"] == worker.node_id  # the node with the slots
        os.kill(before["cluster"]["pid"], signal.SIGKILL)
        process_s = front.wait("cam-a", resumed(1), PROCESS_RESUME_S * 3, "resumed")
        print(f"\nthrough Ray Client: resumed after the process crash in {process_s:.2f} s")
        assert process_s < PROCESS_RESUME_S
        assert front.api.request("DELETE", "/v1/streams/cam-a").status == 204
        ids = {e["id"] for e in front.outbox_events()}
        assert receiver.wait_for(ids, 30), ids - set(receiver.ids())
    finally:
        front.stop()
    assert any(json.loads(d.body)["type"] == "alert.raised" for d in receiver.deliveries)
