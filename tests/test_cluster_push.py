"""An RTMP push ingest on a local two-node Ray cluster (marker `cluster`): the stream's actor
listens on its own node, a real publisher pushes a face video to the URL the API gave out and
its alarm reaches a webhook receiver; the node is removed, the API shows the ingest's new
address on the other node, the publisher reconnects there (as RTMP encoders do) and the next
alarm arrives too, each alarm under one id; its process killed there, it listens at the same
address again. WebRTC stays refused on a cluster, saying why.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from publisher import start_publisher
from receivers import Receiver

ray = pytest.importorskip(
    "ray", reason="the cluster test needs Ray: pip install 'swapwatch[ray]' (make test-cluster)"
)
from ray.cluster_utils import Cluster  # noqa: E402
from test_cluster import HEALTH_CHECKS, NODE_RESUME_S, Front, resumed  # noqa: E402

pytestmark = pytest.mark.cluster

PUSH_S = 120.0  # longer than the test: each publisher is stopped once its alarm came
FACE_PERIOD_S = 6.0  # the face shows 4 s of every 6: each appearance is a new track and alarm


@pytest.fixture
def cluster() -> Iterator[Cluster]:
    """A head that holds the detector and two worker nodes with one stream slot each."""
    head = {"num_cpus": 1, "resources": {"detector": 1}, "_system_config": HEALTH_CHECKS}
    cluster = Cluster(initialize_head=True, head_node_args=head)
    try:
        for _ in range(2):
            cluster.add_node(num_cpus=1, resources={"stream_slots": 1})
        yield cluster
    finally:
        cluster.shutdown()


def alarm_ids(receiver: Receiver) -> set[str]:
    delivered = [json.loads(d.body) for d in receiver.deliveries]
    return {e["id"] for e in delivered if e["type"] == "alert.raised"}


def wait_for_a_new_alarm(receiver: Receiver, seen: set[str], timeout: float) -> set[str]:
    """The ids of the alarms delivered, once one not in `seen` is among them."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ids = alarm_ids(receiver)
        if ids - seen:
            return ids
        time.sleep(0.1)
    raise AssertionError(f"no new alarm within {timeout} s (had {len(seen)})")


def push(url: str) -> subprocess.Popen[str]:
    return start_publisher(url, PUSH_S, connect_timeout=30.0, face_period=FACE_PERIOD_S)


def test_a_push_ingest_moves_with_its_node_and_its_publisher_reconnects_to_the_new_address(
    tmp_path: Path, cluster: Cluster, receiver: Receiver, fake_model: Path
) -> None:
    front = Front(tmp_path, cluster.address, fake_model, receiver)
    front.start()
    publishers = []
    try:
        # WebRTC media ends at one process: refused, saying why and what to do instead.
        offer = {"sdp": "v=0\r\n", "type": "offer"}
        for path, body in (("/v1/webrtc/offer", offer), ("/v1/sessions", {})):
            refused = front.api.request("POST", path, body)
            assert refused.status == 400, (path, refused.body)
            message = refused.body["error"]["message"]
            assert "cannot run on the cluster" in message and "without cluster.address" in message

        reply = front.api.request("POST", "/v1/streams", {"ingest": "rtmp", "id": "studio"})
        assert reply.status == 201, reply.body
        key = reply.body["stream_key"]
        publish_url = reply.body["ingest_url"]
        placed = reply.body["cluster"]
        first = urlsplit(publish_url)
        # The stream's own node, as Ray reports it, with the key: only in this answer.
        assert first.scheme == "rtmp" and first.hostname == placed["node_ip"]
        assert first.path == f"/live/{key}"
        shown = front.stream("studio")
        assert shown["ingest_url"] == publish_url.replace(key, "***")

        publishers.append(push(publish_url))
        wait_for_a_new_alarm(receiver, set(), 120)
        lost = front.stream("studio")["cluster"]["node_id"]
        assert lost == placed["node_id"]

        node = next(n for n in cluster.worker_nodes if n.node_id == lost)
        cluster.remove_node(node, allow_graceful=False)
        node_lost = time.monotonic()

        def reopened(stream: dict[str, Any]) -> bool:
            return stream["cluster"]["moves"] >= 1 and stream["ingest_url"] is not None

        front.wait("studio", reopened, NODE_RESUME_S * 2, "the ingest reopened elsewhere")
        shown_after_s = time.monotonic() - node_lost
        moved = front.stream("studio")
        assert moved["cluster"]["node_id"] != lost
        address = urlsplit(moved["ingest_url"])
        assert address.hostname == moved["cluster"]["node_ip"] and address.path == "/live/***"
        print(
            f"\nthe push ingest moved from {shown['ingest_url']} to {moved['ingest_url']}, shown "
            f"{shown_after_s:.2f} s after its node went"
        )
        assert shown_after_s < NODE_RESUME_S

        # The first publisher's connection died with the node; it reconnects to the new address.
        # (The restored worker goes on with the run of its checkpoint: the face there when the
        # node went keeps its alarm; the next face to appear raises a new one.)
        publishers[0].kill()
        before = alarm_ids(receiver)
        publishers.append(push(moved["ingest_url"].replace("***", key)))
        wait_for_a_new_alarm(receiver, before, 120)

        # Its process dies on the one node left: made again there, it listens at the same
        # address, so the publisher's reconnect to the URL it had is taken.
        os.kill(moved["cluster"]["pid"], signal.SIGKILL)

        def made_again(stream: dict[str, Any]) -> bool:
            return stream["cluster"]["restarts"] >= 2 and stream["ingest_url"] is not None

        front.wait("studio", made_again, NODE_RESUME_S * 2, "made again after its crash")
        again = front.stream("studio")
        assert again["ingest_url"] == moved["ingest_url"] and again["cluster"]["moves"] == 1
        publishers[1].kill()
        publishers.append(push(moved["ingest_url"].replace("***", key)))
        front.wait("studio", resumed(2), 60, "analysing the publish to the same URL")

        # The one node left has no free slot: a second ingest's answer waits for one. Its
        # client gives up and deletes it: that answer ends at once, not after the wait.
        with ThreadPoolExecutor(1) as pool:
            late = {"ingest": "rtmp", "id": "late"}
            waiting = pool.submit(front.api.request, "POST", "/v1/streams", late)
            while front.api.request("GET", "/v1/streams/late").status != 200:
                time.sleep(0.05)
            deleted_at = time.monotonic()
            assert front.api.request("DELETE", "/v1/streams/late").status == 204
            answer = waiting.result(timeout=60)
            answered_s = time.monotonic() - deleted_at
        assert answer.status == 404, answer.body
        assert answered_s < 10, f"answered {answered_s:.1f} s after the DELETE"

        assert front.api.request("DELETE", "/v1/streams/studio").status == 204
        ids = {e["id"] for e in front.outbox_events()}
        assert receiver.wait_for(ids, 30), ids - set(receiver.ids())

        # The key went to its creator only: not in the listing, the metrics or the logs.
        listing = front.api.request("GET", "/v1/streams").body
        metrics = front.api.request("GET", "/metrics").body
        for seen in (json.dumps(listing), metrics, front.log.read_text(errors="replace")):
            assert key not in seen
    finally:
        for publisher in publishers:
            publisher.kill()
            publisher.communicate(timeout=10)  # closes its pipes
        front.stop()

    delivered = [json.loads(d.body) for d in receiver.deliveries]
    alarms = [e for e in delivered if e["type"].startswith("alert.")]
    ids_of: dict[tuple[Any, ...], set[str]] = {}
    for e in alarms:
        key_of = (e["stream"], e["run"], e["type"], e["track"], e["media_time"])
        ids_of.setdefault(key_of, set()).add(e["id"])
    assert all(len(ids) == 1 for ids in ids_of.values()), ids_of
