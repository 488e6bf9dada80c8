"""Losing parts of the Ray head (marker `cluster`, run by .ci/run after make test).

- Its GCS, restarted: with Ray's GCS fault tolerance on an external Redis, a stream on a worker
  node goes on analysing, `/v1/streams` goes on answering, and every alarm reaches the webhook
  receiver once.
- Its Ray Client server, which a front joined with `ray://` goes through: the front exits for
  its supervisor, and started again resumes its saved stream.

The Redis is Debian's `redis-server` on a free loopback port; the GCS is switched to it the way
`ray start --head` is (`RAY_REDIS_ADDRESS`), killed with SIGKILL and started again on the same
port by Ray's own node utilities, as a restarted head container would start it.
"""

from __future__ import annotations

import json
import shutil
import signal
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from itertools import pairwise
from pathlib import Path
from typing import Any

import pytest
from live_ts import LiveFeed, write_live_clip
from media import Placement
from receivers import Receiver
from redis_server import RedisServer

ray = pytest.importorskip(
    "ray", reason="the cluster test needs Ray: pip install 'swapwatch[ray]' (make test-cluster)"
)
from ray._private import ray_constants  # noqa: E402
from ray.cluster_utils import Cluster  # noqa: E402
from test_cluster import (  # noqa: E402
    CLIP_S,
    HEALTH_CHECKS,
    Front,
    head_with_client_server,
    resumed,
)

pytestmark = pytest.mark.cluster

# The GCS stays down 5 s, and until the stream has raised an alarm (a face comes every 10 s):
# well within the 60 s (`gcs_rpc_server_reconnect_timeout_s`) after which Ray's processes exit.
DOWN_AT_LEAST_S = 5.0
STEADY_S = 6.0  # watched before the kill, for comparison
MAX_TIME = datetime.max.replace(tzinfo=UTC)
CLIENT_GRACE_S = 10  # RAY_CLIENT_RECONNECT_GRACE_PERIOD of the Ray Client front (Ray's: 30)


def face_4_s_of_10(t: float) -> list[Placement]:
    """Gone 6 s: long enough for its track to end (15 analysed frames without it) even when
    few frames are analysed, so each appearance raises an alarm."""
    return [Placement(0.5, 0.5, 230)] if t % 10.0 < 4.0 else []


@pytest.fixture
def feed(tmp_path: Path) -> Iterator[LiveFeed]:
    clip = write_live_clip(tmp_path / "live.ts", CLIP_S, face_4_s_of_10)
    feed = LiveFeed(clip, CLIP_S).start()
    yield feed
    feed.stop()


@pytest.fixture
def redis(tmp_path: Path) -> Iterator[RedisServer]:
    if shutil.which("redis-server") is None and not Path("/usr/bin/redis-server").exists():
        pytest.skip("GCS fault tolerance needs Redis: apt-get install redis-server")
    server = RedisServer(tmp_path / "redis").start()
    yield server
    server.stop()


@pytest.fixture
def cluster(redis: RedisServer, monkeypatch: pytest.MonkeyPatch) -> Iterator[Cluster]:
    """A head whose GCS keeps its tables in `redis` and that holds the detector, and one worker
    node with two stream slots."""
    head = {"num_cpus": 1, "resources": {"detector": 1}, "_system_config": HEALTH_CHECKS}
    with monkeypatch.context() as env:
        env.setenv("RAY_REDIS_ADDRESS", redis.address)
        cluster = Cluster(initialize_head=True, head_node_args=head)
    try:
        cluster.add_node(num_cpus=1, resources={"stream_slots": 2})
        yield cluster
    finally:
        cluster.shutdown()


@dataclass(frozen=True)
class Sample:
    at: float  # time.monotonic() when the reply came
    took: float  # seconds the request took
    status: int | None  # None: no answer (refused, reset, timed out)
    stream: dict[str, Any] | None  # the watched stream, as the list shows it


class ListWatcher:
    """Reads `GET /v1/streams` every 0.1 s in a thread, as a dashboard would."""

    def __init__(self, front: Front, stream_id: str) -> None:
        self.front = front
        self.stream_id = stream_id
        self.samples: list[Sample] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="list watcher", daemon=True)

    def __enter__(self) -> ListWatcher:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(15)

    def _run(self) -> None:
        while not self._stop.wait(0.1):
            began = time.monotonic()
            try:
                reply = self.front.api.request("GET", "/v1/streams")
            except OSError:  # urllib's URLError, a reset or a timeout: no answer
                self.samples.append(Sample(time.monotonic(), time.monotonic() - began, None, None))
                continue
            streams = reply.body["streams"] if reply.status == 200 else []
            stream = next((s for s in streams if s["id"] == self.stream_id), None)
            took = time.monotonic() - began
            self.samples.append(Sample(time.monotonic(), took, reply.status, stream))

    def between(self, start: float, end: float) -> list[Sample]:
        return [s for s in self.samples if start <= s.at <= end]

    def frames_at(self, moment: float) -> int:
        """`frames_analysed` as the last read before `moment` saw it."""
        seen = [s.stream["frames_analysed"] for s in self.samples if s.at <= moment and s.stream]
        assert seen, f"no read before {moment}"
        return int(seen[-1])

    def longest_gap(self, start: float, end: float) -> float:
        """The longest time between two reads that saw more frames analysed."""
        grew, last = [], None
        for s in self.between(start, end):
            if s.stream is None:
                continue
            if last is not None and s.stream["frames_analysed"] > last:
                grew.append(s.at)
            last = s.stream["frames_analysed"]
        return max((b - a for a, b in pairwise(grew)), default=end - start)


def alarms_in(events: list[dict[str, Any]], start: datetime, end: datetime) -> list[dict[str, Any]]:
    return [
        e
        for e in events
        if e["type"] == "alert.raised" and start <= datetime.fromisoformat(e["time"]) < end
    ]


def wait_for_alarm(
    front: Front, stream_id: str, since: datetime, timeout: float, what: str
) -> None:
    """Until the front's outbox holds an alarm of `stream_id` raised at `since` or later. Not the
    status's `alarms_raised`: the front learns of an alarm at its next poll of the actor, so a
    count read before `since` can miss one raised just before it."""
    began = time.monotonic()
    while time.monotonic() - began < timeout:
        if alarms_in(
            [e for e in front.outbox_events() if e["stream"] == stream_id], since, MAX_TIME
        ):
            return
        time.sleep(0.1)
    raise AssertionError(f"{stream_id}: {what} not within {timeout} s: {front.stream(stream_id)}")


def test_a_stream_goes_on_through_a_restart_of_the_heads_gcs_kept_in_redis(
    tmp_path: Path,
    redis: RedisServer,
    cluster: Cluster,
    feed: LiveFeed,
    receiver: Receiver,
    fake_model: Path,
) -> None:
    """The head's GCS process dies mid-stream and comes back from the tables it kept in Redis:
    the stream's worker is not made again, the API answers throughout, every alarm raised while
    the GCS was down or after it came back reaches the receiver once, and a stream added after
    it came back is placed."""
    front = Front(tmp_path, cluster.address, fake_model, receiver)
    front.start()
    try:
        reply = front.api.request("POST", "/v1/streams", {"url": feed.url, "id": "cam-a"})
        assert reply.status == 201, reply.body
        front.wait("cam-a", lambda s: s["alarms_raised"] >= 1, 90, "a first alarm")
        assert int(redis.command("DBSIZE")) > 0  # the GCS keeps its tables there
        before = front.stream("cam-a")

        with ListWatcher(front, "cam-a") as watcher:
            time.sleep(STEADY_S)
            down_at, down_wall = time.monotonic(), datetime.now(UTC)
            cluster.head_node.kill_gcs_server()  # SIGKILL
            time.sleep(DOWN_AT_LEAST_S)
            wait_for_alarm(front, "cam-a", down_wall, 30, "an alarm raised with the GCS down")
            up_at, up_wall = time.monotonic(), datetime.now(UTC)
            cluster.head_node.start_gcs_server()
            wait_for_alarm(front, "cam-a", up_wall, 30, "an alarm raised with the GCS back")
            end_at, end_wall = time.monotonic(), datetime.now(UTC)

        # Once the GCS is back, a new stream is placed and analyses: actors are made again.
        reply = front.api.request("POST", "/v1/streams", {"url": feed.url, "id": "cam-b"})
        assert reply.status == 201, reply.body
        placed_s = front.wait("cam-b", resumed(0), 60, "cam-b analysing")
        assert front.process is not None and front.process.poll() is None  # it did not exit

        after = front.stream("cam-a")
        for sid in ("cam-a", "cam-b"):
            assert front.api.request("DELETE", f"/v1/streams/{sid}").status == 204
        recorded = front.outbox_events()
        assert receiver.wait_for({e["id"] for e in recorded}, 30)
    finally:
        front.stop()

    steady_from = down_at - STEADY_S
    outage, steady = watcher.between(down_at, up_at), watcher.between(steady_from, down_at)
    frames_down = watcher.frames_at(up_at) - watcher.frames_at(down_at)
    first = next(s for s in steady if s.stream)
    steady_rate = (watcher.frames_at(down_at) - first.stream["frames_analysed"]) / (
        down_at - first.at
    )  # type: ignore[index]
    during = alarms_in(recorded, down_wall, up_wall)
    after_up = alarms_in(recorded, up_wall, end_wall)
    arrived = {d.event_id: d.at for d in receiver.deliveries}
    delays = [arrived[e["id"]] - datetime.fromisoformat(e["time"]).timestamp() for e in during]
    print(
        f"\nGCS down {up_at - down_at:.1f} s: cam-a analysed {frames_down} frames meanwhile "
        f"({frames_down / (up_at - down_at):.1f}/s; {steady_rate:.1f}/s in the {STEADY_S:.0f} s "
        f"before), longest time between two reads that saw more frames "
        f"analysed {watcher.longest_gap(down_at, end_at):.2f} s from the kill to an alarm "
        f"after the restart ({watcher.longest_gap(steady_from, down_at):.2f} s before); "
        f"/v1/streams answered {sum(s.status == 200 for s in outage)} of {len(outage)} reads "
        f"while it was down, the slowest in {max(s.took for s in outage) * 1000:.0f} ms "
        f"({max(s.took for s in steady) * 1000:.0f} ms before); alarms raised while it was "
        "down reached the receiver "
        + ", ".join(f"{d:.2f} s" for d in delays)
        + f" after they were raised; a stream added once it was back analysed in {placed_s:.1f} s"
    )
    # The worker went on: not made again, the same process, the same run.
    assert after["run"] == before["run"]
    assert after["cluster"]["restarts"] == 0
    assert after["cluster"]["pid"] == before["cluster"]["pid"]
    assert frames_down > 0
    assert outage and all(s.status == 200 for s in watcher.between(steady_from, end_at))
    # Every alarm raised while the GCS was down and after it came back, delivered once.
    assert during and after_up, [(e["type"], e["time"]) for e in recorded]
    delivered = [json.loads(d.body) for d in receiver.deliveries]
    counts = Counter(e["id"] for e in delivered if e["type"].startswith("alert."))
    assert all(counts[e["id"]] == 1 for e in during + after_up), counts


@pytest.fixture
def client_head() -> Iterator[tuple[Cluster, int]]:
    with head_with_client_server() as running:
        yield running


# Ray's head leaves its client server's log files open in this (the test's) process.
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_a_ray_client_front_whose_client_server_dies_exits_and_its_restart_resumes_the_stream(
    tmp_path: Path,
    client_head: tuple[Cluster, int],
    feed: LiveFeed,
    receiver: Receiver,
    fake_model: Path,
    one_face_video: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The head's Ray Client server dies (and with it the driver that owned the front's actors):
    the front gives up once Ray Client stops reconnecting, exits with status 1 for its
    supervisor, and started again resumes the saved stream as a new run (but not a file that
    its node had read to the end, and a DELETE removes such a one); every event it had
    recorded reaches the receiver."""
    pytest.importorskip("grpc", reason="Ray Client needs ray[client]: pip install 'swapwatch[ray]'")
    monkeypatch.setenv("RAY_CLIENT_RECONNECT_GRACE_PERIOD", str(CLIENT_GRACE_S))  # the front's
    cluster, port = client_head
    files = ["ingest.pull.allow_file_urls = true"]
    front = Front(tmp_path, f"ray://127.0.0.1:{port}", fake_model, receiver, files)
    front.start()
    assert front.process is not None
    try:
        reply = front.api.request("POST", "/v1/streams", {"url": feed.url, "id": "cam-a"})
        assert reply.status == 201, reply.body
        clip = {"url": one_face_video.as_uri(), "id": "clip"}
        assert front.api.request("POST", "/v1/streams", clip).status == 201
        front.wait("clip", lambda s: s["state"] == "ended", 90, "the clip read to its end")
        rates = ("fps_in", "fps_analysed", "faces")
        front.wait("clip", lambda s: [s[k] for k in rates] == [0, 0, 0], 10, "its rates over")
        assert front.stream("clip")["frames_analysed"] > 0  # what it did stays
        # A stream that ended by itself (its actor gone) is still removed by a DELETE.
        again = {"url": one_face_video.as_uri(), "id": "clip-2"}
        assert front.api.request("POST", "/v1/streams", again).status == 201
        front.wait("clip-2", lambda s: s["state"] == "ended", 90, "the second clip read")
        assert front.api.request("DELETE", "/v1/streams/clip-2").status == 204
        assert front.api.request("GET", "/v1/streams/clip-2").status == 404
        front.wait("cam-a", lambda s: s["alarms_raised"] >= 1, 90, "a first alarm")
        before = front.stream("cam-a")

        # SIGKILL, as a crash; Ray's own tests stop head processes this way.
        cluster.head_node._kill_process_type(
            ray_constants.PROCESS_TYPE_RAY_CLIENT_SERVER, check_alive=False, wait=True
        )
        dropped_at = time.monotonic()
        exit_status = front.process.wait(timeout=CLIENT_GRACE_S + 60)
        exited_s = time.monotonic() - dropped_at
        log = front.log.read_text()
        assert exit_status == 1, log[-3000:]
        assert "lost its connection to the Ray cluster" in log, log[-3000:]

        # Its supervisor starts it again once the head (here its client server) is back.
        began = time.monotonic()
        cluster.head_node.start_ray_client_server()
        client_server_s = time.monotonic() - began
        restarted_at = time.monotonic()
        front.start()
        front.wait(
            "cam-a",
            lambda s: s["run"] != before["run"] and s["latency_ms"] is not None,
            120,
            "cam-a resumed by the restarted front",
        )
        resumed_s = time.monotonic() - restarted_at
        listed = front.api.request("GET", "/v1/streams").body["streams"]
        assert [s["id"] for s in listed] == ["cam-a"]  # the clip that ended is forgotten
        front.wait("cam-a", lambda s: s["alarms_raised"] >= 1, 60, "an alarm in the new run")
        assert front.api.request("DELETE", "/v1/streams/cam-a").status == 204
        recorded = front.outbox_events()
        assert receiver.wait_for({e["id"] for e in recorded}, 30)
        # A front holding a stream that ended by itself still stops cleanly.
        last = {"url": one_face_video.as_uri(), "id": "clip-3"}
        assert front.api.request("POST", "/v1/streams", last).status == 201
        front.wait("clip-3", lambda s: s["state"] == "ended", 90, "the last clip read")
        front.process.send_signal(signal.SIGTERM)
        assert front.process.wait(timeout=60) == 0, front.log.read_text()[-3000:]
    finally:
        front.stop()
    print(
        f"\nthrough Ray Client: the front exited (status 1) {exited_s:.1f} s after the head's "
        f"client server died (reconnect grace {CLIENT_GRACE_S} s); the client server started "
        f"again in {client_server_s:.1f} s; the front, started again, analysed the stream "
        f"{resumed_s:.1f} s after its start"
    )
    # The cut run is closed as crashed by the restarted front, which resumed the stream.
    ended = [e for e in recorded if e["run"] == before["run"] and e["type"] == "stream.ended"]
    assert [e["detail"]["reason"] for e in ended] == ["crashed"], ended
