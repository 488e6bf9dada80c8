"""WebRTC ingest: a browser or SDK sends its camera; the verdict goes back on a data channel.

aiortc decodes the incoming video in its own tasks and queues every frame; analysis is slower
than the camera, so a pump task keeps reading and holds only the newest frame (the rest are
counted as dropped), and the analysis takes frames at most `rate` times a second.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import time
from collections.abc import Callable, Coroutine
from typing import Any

import numpy as np
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from aiortc.sdp import SessionDescription
from av.video.reformatter import VideoReformatter

from swapwatch.errors import ConfigError, EndOfStream, SourceUnreadable
from swapwatch.fusion import AlarmChange, Policy
from swapwatch.server.manager import StreamManager
from swapwatch.server.sessions import KycSession, SessionRegistry
from swapwatch.stream.frames import Frame, SourceCounters, VideoInfo
from swapwatch.stream.pipeline import FrameResult
from swapwatch.stream.rate import RateCap
from swapwatch.stream.source import FrameSource, upright_rgb

log = logging.getLogger(__name__)

SENDING = (None, "sendrecv", "sendonly")  # directions of a section that sends us video

FIRST_FRAME_TIMEOUT = 15.0
UPDATES_PER_SECOND = 5.0
START_BITRATE_KBPS = 1500  # Chrome starts VP8 at ~300 kbit/s (and 640x360) without a hint


# aiortc's SDP parser checks lines with `assert` and unguarded lookups: what a malformed offer
# raises there (found by fuzzing), each a 400.
SDP_PARSE_ERRORS = (ValueError, IndexError, KeyError, AssertionError, StopIteration)


def _reason(exc: BaseException) -> str:
    return str(exc) or f"malformed ({type(exc).__name__})"


StampObserver = Callable[[int | None, float], None]  # RTP capture stamp, arrival (s)
ImageObserver = Callable[[float, np.ndarray], None]  # media time, RGB picture (worker thread)


class TrackSource(FrameSource):
    """A `FrameSource` over a remote aiortc video track, newest frame first.

    `on_stamp` sees every frame that arrives (its RTP capture stamp and arrival time, on the
    event loop: keep it O(1)); `on_image` every frame delivered for analysis, in the thread
    that converts it."""

    def __init__(
        self,
        track: MediaStreamTrack,
        name: str,
        rate: float,
        on_stamp: StampObserver | None = None,
        on_image: ImageObserver | None = None,
    ) -> None:
        self.track = track
        self.name = name
        self._on_stamp = on_stamp
        self._on_image = on_image
        self.counters = SourceCounters()
        self._cap = RateCap(rate)
        # One conversion at a time: recv() awaits each before the next, and a cancelled recv()
        # ends the stream, so two executor threads never share it.
        self._reformatter = VideoReformatter()
        self._latest: Any = None
        self._arrival = 0.0
        self._fresh = asyncio.Event()
        self._ended = False
        self._pump_task: asyncio.Task[None] | None = None
        self._first_time: float | None = None

    async def start(self) -> VideoInfo:
        self._pump_task = asyncio.get_running_loop().create_task(self._pump())
        try:
            await asyncio.wait_for(self._fresh.wait(), FIRST_FRAME_TIMEOUT)
        except TimeoutError:
            raise SourceUnreadable(
                f"no video from {self.name} within {FIRST_FRAME_TIMEOUT:g}s"
            ) from None
        if self._latest is None:
            raise SourceUnreadable(f"{self.name} ended before its first frame")
        frame = self._latest
        return VideoInfo(
            url=self.name,
            width=frame.width,
            height=frame.height,
            fps=None,
            codec="webrtc",
            duration=None,
            live=True,
        )

    async def _pump(self) -> None:
        try:
            while True:
                frame = await self.track.recv()
                self.counters.decoded += 1
                if self._latest is not None:
                    self.counters.dropped += 1
                self._latest, self._arrival = frame, time.monotonic()
                if self._on_stamp is not None:
                    self._on_stamp(frame.pts, self._arrival)
                self._fresh.set()
        except MediaStreamError:
            pass
        except Exception:  # aiortc swallows errors in tracks: say so, then end the stream
            log.exception("reading %s failed", self.name)
        finally:
            self._ended = True
            self._fresh.set()

    async def recv(self) -> Frame:
        while True:
            if self._latest is None:
                if self._ended:
                    raise EndOfStream(f"{self.name} ended")
                self._fresh.clear()
                await self._fresh.wait()
                continue
            frame, arrival = self._latest, self._arrival
            self._latest = None
            t = float(frame.time) if frame.time is not None else arrival
            if self._first_time is None:
                self._first_time = t
            t -= self._first_time
            if not self._cap.admit(t):
                self.counters.skipped += 1
                # wait for a newer frame rather than analysing above the rate cap
                await asyncio.sleep(self._cap.wait(t))
                continue
            self.counters.delivered += 1
            # the decoded frames arrive before their conversion; convert only those analysed
            image: np.ndarray = await asyncio.get_running_loop().run_in_executor(
                None, self._convert, frame, t
            )
            return Frame(image=image, index=self.counters.decoded - 1, time=t, arrival=arrival)

    def _convert(self, frame: Any, t: float) -> np.ndarray:
        image = upright_rgb(frame, self._reformatter)
        if self._on_image is not None:
            self._on_image(t, image)
        return image

    async def aclose(self) -> None:
        if self._pump_task is not None:
            self._pump_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._pump_task
        self.track.stop()


def _log_failure(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("a session's ending failed", exc_info=task.exception())


def hint_start_bitrate(sdp: str, kbps: int = START_BITRATE_KBPS) -> str:
    """Add `x-google-start-bitrate` to the video codecs of an answer, so Chrome starts sending
    at a useful quality instead of ramping up from ~300 kbit/s over many seconds."""
    lines = sdp.split("\r\n")
    video_payloads: list[str] = []
    in_video = False
    for line in lines:
        if line.startswith("m="):
            in_video = line.startswith("m=video")
        elif in_video:
            match = re.match(r"a=rtpmap:(\d+) (VP8|VP9|H264|AV1)/", line)
            if match:
                video_payloads.append(match.group(1))
    out: list[str] = []
    for line in lines:
        match = re.match(r"a=fmtp:(\d+) (.*)", line)
        if match and match.group(1) in video_payloads and "x-google-start-bitrate" not in line:
            line = f"{line};x-google-start-bitrate={kbps}"
        out.append(line)
        match = re.match(r"a=rtpmap:(\d+) ", line)
        if match and match.group(1) in video_payloads and not _has_fmtp(lines, match.group(1)):
            out.append(f"a=fmtp:{match.group(1)} x-google-start-bitrate={kbps}")
    return "\r\n".join(out)


def _has_fmtp(lines: list[str], payload: str) -> bool:
    return any(line.startswith(f"a=fmtp:{payload} ") for line in lines)


class WebRtcSessions:
    """Offer/answer for browsers and SDKs; each session becomes a `webrtc` stream."""

    def __init__(self, manager: StreamManager, sessions: SessionRegistry | None = None) -> None:
        self.manager = manager
        self.sessions = sessions
        self.peers: dict[str, RTCPeerConnection] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    async def answer(
        self,
        sdp: str,
        kind: str,
        stream_id: str | None,
        policy: Policy | None,
        session_id: str | None = None,
    ) -> dict[str, Any]:
        """The answer to an offer; with `session_id`, the connection runs that KYC session
        (its stream id is the session's, its policy kyc)."""
        self.manager.check_webrtc_here()
        if kind != "offer":
            raise ConfigError("type must be 'offer'")
        kyc: KycSession | None = None
        if session_id is not None:
            if stream_id is not None or policy is not None:
                raise ConfigError(
                    "a session's offer takes no 'id' or 'policy': its session has them"
                )
            if self.sessions is None:
                raise ConfigError("this service runs no sessions")
            await self.sessions.get(session_id)  # 404 before the offer is read
        try:
            media = SessionDescription.parse(sdp).media
        except SDP_PARSE_ERRORS as exc:
            raise ConfigError(f"the offer is not valid SDP: {_reason(exc)}") from None
        # A section without a direction attribute is sendrecv (RFC 4566).
        if not any(m.kind == "video" and m.direction in SENDING for m in media):
            raise ConfigError(
                "the offer has no video: send a camera track (recvonly is not enough)"
            )
        if session_id is not None:
            assert self.sessions is not None
            kyc = await self.sessions.claim(session_id)
            stream_id, policy = kyc.id, Policy.KYC
        peer = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        channel: dict[str, Any] = {}
        last_sent = [0.0]
        session: dict[str, str] = {}

        def send(message: dict[str, Any]) -> None:
            dc = channel.get("dc")
            if dc is not None and dc.readyState == "open":
                dc.send(json.dumps(message))

        def resend(messages: list[dict[str, Any]]) -> None:
            for message in messages:
                send(message)

        def on_result(result: FrameResult) -> None:
            if kyc is not None:
                self._follow_session(kyc, result, send)
            now = time.monotonic()
            if not result.alerts and now - last_sent[0] < 1.0 / UPDATES_PER_SECOND:
                return
            last_sent[0] = now
            worker = self.manager.workers.get(session.get("id", ""))
            if worker is None:
                return
            status = worker.to_json()
            video = status["video"] or {}
            send(
                {
                    "type": "status",
                    "stream": status["id"],
                    "alarm": status["alarm"],
                    "verdict": "fake"
                    if status["alarm"]
                    else "real"
                    if any(t["frames_scored"] for t in status["tracks"])
                    else "unknown",
                    "width": video.get("width"),
                    "height": video.get("height"),
                    "fps_analysed": status["fps_analysed"],
                    "faces": [
                        {**t, "box": [round(v, 1) for v in face.box]}
                        for face in result.faces
                        for t in status["tracks"]
                        if t["track_id"] == face.track_id
                    ],
                    "alerts": [{"type": a.type.value, "track": a.track_id} for a in result.alerts],
                }
            )

        @peer.on("datachannel")
        def on_datachannel(dc: Any) -> None:
            channel["dc"] = dc
            if kyc is not None:
                dc.on("message", kyc.on_client_message)
                # Prompts drawn before the channel opened are sent again once it is.
                dc.on("open", lambda: resend(kyc.sent))

        started = asyncio.get_running_loop().create_future()

        @peer.on("track")
        def on_track(track: MediaStreamTrack) -> None:
            if track.kind != "video" or started.done():
                return

            async def add() -> None:
                try:
                    worker = await self.manager.add_source(
                        stream_id,
                        "webrtc",
                        lambda: TrackSource(
                            track,
                            f"webrtc:{session.get('id', '?')}",
                            self.manager.settings.analysis.rate,
                            None if kyc is None else kyc.signals.clock.update,
                            None if kyc is None else kyc.observe_image,
                        ),
                        policy,
                        on_result,
                        score_past_pose_gate=kyc is not None,
                    )
                    session["id"] = worker.spec.stream_id
                    if kyc is not None:
                        kyc.stream_id = worker.spec.stream_id
                    self.peers[worker.spec.stream_id] = peer
                    started.set_result(worker.spec.stream_id)
                except Exception as exc:
                    started.set_exception(exc)

            asyncio.get_running_loop().create_task(add())

        @peer.on("connectionstatechange")
        async def on_state() -> None:
            if peer.connectionState in ("failed", "closed"):
                sid = session.get("id")
                if kyc is not None and kyc.verdict is None and self.sessions is not None:
                    await self.sessions.complete(kyc)  # the person left: judged as it stands
                if sid and sid in self.manager.workers:
                    with contextlib.suppress(ConfigError):
                        await self.manager.remove(sid)
                self.peers.pop(sid or "", None)
                await peer.close()

        try:
            try:
                await peer.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="offer"))
            except ValueError as exc:  # aiortc checks the SDP here (ICE, DTLS, codecs)
                raise ConfigError(f"the offer is not usable: {exc}") from None
            try:
                sid = await asyncio.wait_for(started, 5.0)
            except TimeoutError:
                raise SourceUnreadable("the offer's video track did not start within 5 s") from None
            answer = await peer.createAnswer()
            await peer.setLocalDescription(answer)
        except BaseException:
            await peer.close()
            if kyc is not None and self.sessions is not None:
                await self.sessions.release(kyc)  # no connection came of it: it may try again
            raise
        local = peer.localDescription
        answer_body = {"type": local.type, "sdp": hint_start_bitrate(local.sdp), "stream": sid}
        if kyc is not None:
            answer_body["session"] = kyc.id
            # Judged when its time is up even if its frames stop coming (a stalled sender).
            limit = kyc.policy.max_duration_s + FIRST_FRAME_TIMEOUT
            self._spawn(self._finish(kyc, send, after_s=limit))
        return answer_body

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        task.add_done_callback(_log_failure)

    def _follow_session(
        self, kyc: KycSession, result: FrameResult, send: Callable[[dict[str, Any]], None]
    ) -> None:
        """One analysed frame of a session: prompts and results to the person; at its end,
        the verdict, then the stream stops."""
        if kyc.verdict is not None or kyc.course.done:
            return
        info = self.manager.engine.info
        face = kyc.main_face(result, info.temperature, self.manager.decision(Policy.KYC))
        alarm = any(a.type is AlarmChange.RAISED for a in result.alerts)
        for message in kyc.course.observe(result.time, face, alarm):
            kyc.sent.append(message)
            send(message)
        if kyc.course.done:
            self._spawn(self._finish(kyc, send))

    async def _finish(
        self, kyc: KycSession, send: Callable[[dict[str, Any]], None], after_s: float = 0.0
    ) -> None:
        assert self.sessions is not None
        if after_s:
            await asyncio.sleep(after_s)
            if kyc.verdict is not None:
                return
            log.info("session %s: out of time, judged as it stands", kyc.id)
        verdict = await self.sessions.complete(kyc)
        send({"type": "verdict", "session": kyc.id, "event": kyc.event_id, **verdict.to_json()})
        await asyncio.sleep(0.5)  # let the verdict leave before the connection goes
        sid = kyc.stream_id
        if sid is not None and sid in self.manager.workers:
            with contextlib.suppress(ConfigError):
                await self.manager.remove(sid)
        peer = self.peers.pop(sid or "", None)
        if peer is not None:
            await peer.close()

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await asyncio.gather(*(p.close() for p in self.peers.values()), return_exceptions=True)
        self.peers.clear()
