"""KYC sessions across restarts of a real `swapwatch serve` process (SIGKILL and SIGTERM) on the
same state: a completed session is still answered for with its verdict, a session that was
running gets `retry` for `interrupted` as a durable `session.completed` event that reaches the
webhook, and a session never joined can still be joined until it expires. Connections are made
by an aiortc peer in the test process, sending a test-made picture."""

from __future__ import annotations

import asyncio
import stat
import threading
import time
from collections.abc import Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

import aioice.ice
import av
import jsonschema
import numpy as np
import pytest
from aiortc import RTCPeerConnection, RTCSessionDescription, VideoStreamTrack
from kyc_media import with_camera_noise
from media import Placement, render_frame
from receivers import Receiver
from service import RunningService, running_service
from test_restart import delivered, make_service

from swapwatch.events.model import schema
from swapwatch.server.config import ServiceConfig

T = TypeVar("T")

pytestmark = pytest.mark.skipif(
    not aioice.ice.get_host_addresses(True, False),
    reason="aiortc needs a non-loopback IPv4 address to pair with the service",
)


class Camera(VideoStreamTrack):
    """A face with camera-like noise, swaying, at 30 fps."""

    def __init__(self) -> None:
        super().__init__()
        self._n = 0

    async def recv(self) -> av.VideoFrame:
        pts, time_base = await self.next_timestamp()
        t = self._n / 30
        picture = render_frame(320, 240, [Placement(0.5 + 0.05 * np.sin(t), 0.5, 140)], t)
        frame = av.VideoFrame.from_ndarray(with_camera_noise(picture, self._n), format="rgb24")
        frame.pts, frame.time_base = pts, time_base
        self._n += 1
        return frame


class Peers:
    """aiortc peers on their own event loop in a thread, as a browser would hold them."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._thread.start()
        self.open: list[RTCPeerConnection] = []

    def run(self, work: Callable[[], Coroutine[Any, Any, T]], timeout: float = 30.0) -> T:
        return asyncio.run_coroutine_threadsafe(work(), self.loop).result(timeout)

    def join(self, api: RunningService, session: str) -> RTCPeerConnection:
        """Offer a camera to `session`; the answer's status must be 200."""

        async def offer() -> RTCPeerConnection:
            peer = RTCPeerConnection()
            self.open.append(peer)
            peer.createDataChannel("kyc")
            peer.addTrack(Camera())
            await peer.setLocalDescription(await peer.createOffer())
            body = {"type": "offer", "sdp": peer.localDescription.sdp, "session": session}
            reply = await asyncio.to_thread(api.request, "POST", "/v1/webrtc/offer", body)
            assert reply.status == 200, reply.body
            await peer.setRemoteDescription(RTCSessionDescription(reply.body["sdp"], "answer"))
            return peer

        return self.run(offer)

    def close(self) -> None:
        async def close_all() -> None:
            await asyncio.gather(*(p.close() for p in self.open), return_exceptions=True)

        self.run(close_all)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)
        self.loop.close()


@pytest.fixture
def peers() -> Iterator[Peers]:
    peers = Peers()
    yield peers
    peers.close()


def get(api: RunningService, session: str) -> dict[str, Any]:
    reply = api.request("GET", f"/v1/sessions/{session}")
    assert reply.status == 200, reply.body
    return dict(reply.body)


def wait_for_session(
    api: RunningService, session: str, predicate: Callable[[dict[str, Any]], bool], timeout: float
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    body: dict[str, Any] = {}
    while time.monotonic() < deadline:
        body = get(api, session)
        if predicate(body):
            return body
        time.sleep(0.2)
    raise AssertionError(f"session {session} never got there; last: {body}")


def verdict_event(receiver: Receiver, session: str, timeout: float = 30.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for event in delivered(receiver):
            if event["type"] == "session.completed" and event["detail"]["session"] == session:
                return event
        time.sleep(0.2)
    raise AssertionError(f"no session.completed for {session} at the webhook")


# The shortest session the policy allows: settling 1.5 s, one challenge of 1 s, a 1 s gap.
SHORT = {"count": 1, "kinds": ["turn_left"], "window_s": 1.0, "max_duration_s": 4.0}
LONG = {"count": 3, "max_duration_s": 120.0}


def test_sessions_outlive_a_crash_and_a_stop(
    tmp_path: Path, real_model: Path, receiver: Receiver, peers: Peers
) -> None:
    service = make_service(tmp_path, receiver, real_model)
    service.start()
    try:
        api = service.api
        never_joined = api.request("POST", "/v1/sessions", LONG).body["id"]
        finished = api.request("POST", "/v1/sessions", SHORT).body["id"]
        cut = api.request("POST", "/v1/sessions", LONG).body["id"]
        peers.join(api, finished)
        judged = wait_for_session(api, finished, lambda s: s["state"] == "completed", 60)
        verdict_event(receiver, finished)
        peers.join(api, cut)
        assert get(api, cut)["state"] == "running"
        time.sleep(1.0)  # frames flow: the session is under way
        service.kill()
        sessions_file = tmp_path / "state" / "events-sessions.sqlite"
        assert stat.S_IMODE(sessions_file.stat().st_mode) == 0o600

        service.start()
        # Completed before the crash: the same verdict, the same event.
        assert get(api, finished) == judged
        # Running at the crash: judged at the start, announced durably.
        after = get(api, cut)
        assert after["state"] == "completed", after
        verdict = after["verdict"]
        assert verdict["verdict"] == "retry" and verdict["reasons"] == ["interrupted"]
        assert verdict["evidence"]["interrupted"]["by"] == "restart"
        event = verdict_event(receiver, cut)
        assert event["id"] == verdict["event"]
        assert event["detail"] == {"session": cut, "verdict": "retry", "reasons": ["interrupted"]}
        jsonschema.validate(event, schema())
        # Never joined: it still waits, and takes its connection.
        assert get(api, never_joined)["state"] == "waiting"
        peers.join(api, never_joined)
        assert get(api, never_joined)["state"] == "running"
        time.sleep(1.0)

        service.stop()  # SIGTERM: the running session is judged before the service exits
        stopped = verdict_event(receiver, never_joined, timeout=1.0)
        assert stopped["detail"]["reasons"] == ["interrupted"]
        assert stopped["evidence"]["interrupted"]["by"] == "shutdown"
        service.start()
        assert get(api, never_joined)["verdict"]["event"] == stopped["id"]
        assert get(api, cut)["verdict"] == verdict
        time.sleep(1.0)
        ids = [e["id"] for e in delivered(receiver) if e["type"] == "session.completed"]
        assert sorted(ids) == sorted({judged["verdict"]["event"], event["id"], stopped["id"]})
    finally:
        service.stop()


def test_a_session_not_joined_in_time_expires(real_model: Path, peers: Peers) -> None:
    with running_service(ServiceConfig(analysis={"model": real_model})) as api:
        reply = api.request("POST", "/v1/sessions", {"join_within_s": 1.0})
        assert reply.status == 201
        session = reply.body
        assert session["expires"] > session["created"]
        time.sleep(1.2)
        assert get(api, session["id"])["state"] == "expired"

        async def offer() -> Any:
            peer = RTCPeerConnection()
            peers.open.append(peer)
            peer.addTrack(Camera())
            await peer.setLocalDescription(await peer.createOffer())
            body = {"type": "offer", "sdp": peer.localDescription.sdp, "session": session["id"]}
            return await asyncio.to_thread(api.request, "POST", "/v1/webrtc/offer", body)

        refused = peers.run(offer)
        assert refused.status == 409, refused.body
        assert "expired" in refused.body["error"]["message"]
