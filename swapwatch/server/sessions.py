"""KYC sessions of the service: created through the API, run over a WebRTC connection, ended by
one durable `session.completed` event.

A session lives in memory from `POST /v1/sessions` until it is forgotten (the newest
MAX_SESSIONS are kept); its verdict is also in the outbox, so a restart loses only sessions
still running, whose connections the restart cut anyway.
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from swapwatch.errors import ConfigError, SwapwatchError
from swapwatch.events.model import Event, EventType, derived_id, format_time, utc_now
from swapwatch.fusion import DecisionConfig
from swapwatch.kyc.camera_label import CameraReport, capabilities_reading, label_reading
from swapwatch.kyc.capture_format import CaptureFormat, FormatProbe, format_reading
from swapwatch.kyc.challenges import Challenge, challenge_sequence
from swapwatch.kyc.combination import assess_injection
from swapwatch.kyc.readings import SignalReading
from swapwatch.kyc.replay_store import ReplayStore, ReplayStoreError, replay_reading
from swapwatch.kyc.session import SessionCourse, SessionFace, SessionPolicy, SessionVerdict
from swapwatch.kyc.stream_signals import StreamSignals
from swapwatch.stream.pipeline import FrameResult

log = logging.getLogger(__name__)

MAX_SESSIONS = 1000
MAX_PROBES = 8  # format probes a client may report
MAX_MESSAGE_BYTES = 16_384  # of one data-channel message from the client


class SessionNotFound(SwapwatchError):
    """No session has this id (never created, or forgotten)."""


class SessionBusy(SwapwatchError):
    """The session already has a connection, or has ended."""


@dataclass(slots=True)
class KycSession:
    """One session: its policy, its drawn challenges, and what it has measured so far."""

    id: str
    policy: SessionPolicy
    challenges: tuple[Challenge, ...]
    created: str
    state: str = "waiting"  # waiting -> running -> completed
    stream_id: str | None = None
    camera: CameraReport | None = None
    probes: list[FormatProbe] = field(default_factory=list)
    verdict: SessionVerdict | None = None
    event_id: str | None = None
    ignored_messages: int = 0
    sent: list[dict[str, Any]] = field(default_factory=list)  # prompts and results so far
    course: SessionCourse = field(init=False)
    signals: StreamSignals = field(init=False)

    def __post_init__(self) -> None:
        self.course = SessionCourse(self.policy, self.challenges)
        self.signals = StreamSignals()

    def to_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "id": self.id,
            "state": self.state,
            "created": self.created,
            "stream": self.stream_id,
            # The kinds stay unknown until each is prompted: a sequence known in advance could
            # be pre-recorded.
            "challenges": len(self.challenges),
            "offer": {"url": "/v1/webrtc/offer", "session": self.id},
            "verdict": None,
        }
        if self.verdict is not None:
            body["verdict"] = {**self.verdict.to_json(), "event": self.event_id}
        return body

    def observe_image(self, time_s: float, image: np.ndarray) -> None:
        """A frame delivered for analysis (in the converting thread): the picture signals.
        The frame clock is fed from every arriving frame instead (`signals.clock`)."""
        self.signals.duplicates.update(image)
        self.signals.noise.update(image)
        self.signals.fingerprint.update(time_s, image)

    def main_face(
        self, result: FrameResult, temperature: float, decision: DecisionConfig
    ) -> SessionFace | None:
        """The main face of an analysed frame (the largest), as the course takes it."""
        clip = decision.evidence_clip
        best = None
        for index, face in enumerate(result.faces):
            if face.points is None:
                continue
            x0, y0, x1, y1 = face.box
            area = (x1 - x0) * (y1 - y0)
            if best is None or area > best[0]:
                best = (area, index)
        if best is None:
            return None
        index = best[1]
        face = result.faces[index]
        assert face.points is not None
        evidence = None
        if face.logit is not None:
            evidence = float(np.clip(face.logit / temperature, -clip, clip))
        crop = result.crops[index] if index < len(result.crops) else None
        return SessionFace(result.time, face.track_id, face.points, evidence, crop)

    def on_client_message(self, text: str | bytes) -> None:
        """What the page reports over the data channel: its camera, and format probes."""
        try:
            if len(text) > MAX_MESSAGE_BYTES:
                raise ValueError("too long")
            message = json.loads(text)
            kind = message["type"]
            if kind == "camera":
                label = message.get("label") or ""
                capabilities = message.get("capabilities") or {}
                if not isinstance(label, str) or not isinstance(capabilities, dict):
                    raise ValueError("label must be text and capabilities an object")
                self.camera = CameraReport(label[:256], capabilities)
            elif kind == "format_probe" and len(self.probes) < MAX_PROBES:
                self.probes.append(
                    FormatProbe(_format(message["requested"]), _format(message["delivered"]))
                )
            else:
                raise ValueError(f"unknown message type {kind!r}")
        except (ValueError, KeyError, TypeError) as exc:
            self.ignored_messages += 1
            log.info("session %s: a client message was ignored (%s)", self.id, exc)

    def readings(self, replay: ReplayStore | None) -> list[SignalReading]:
        report = self.camera or CameraReport()
        readings = [
            label_reading(report, self.policy.allowed_camera_labels),
            capabilities_reading(report),
            format_reading(self.probes),
            *self.signals.readings(),
        ]
        if replay is not None:
            readings.append(replay_reading(self.signals.fingerprint.hashes, replay))
        return readings


def _format(data: Any) -> CaptureFormat:
    if not isinstance(data, dict):
        raise ValueError("a format is an object")
    rate = data.get("frameRate")
    return CaptureFormat(int(data["width"]), int(data["height"]), None if rate is None else rate)


class SessionRegistry:
    """The service's sessions, and what ends one: its verdict, recorded and announced."""

    def __init__(
        self,
        replay_path: Path | None,
        publish: Callable[[Event], None],
        run_of: Callable[[str], str | None],
    ) -> None:
        self._sessions: OrderedDict[str, KycSession] = OrderedDict()
        self._replay_path = replay_path
        self._replay: ReplayStore | None = None
        self._publish = publish
        self._run_of = run_of  # a stream's current run id
        self._lock = asyncio.Lock()
        # SQLite connections stay on the thread that made them: the store has one of its own.
        self._store_thread = ThreadPoolExecutor(1, thread_name_prefix="replay-store")

    def create(self, policy: SessionPolicy) -> KycSession:
        session_id = "kyc-" + secrets.token_hex(10)
        session = KycSession(
            session_id, policy, challenge_sequence(policy.challenges), format_time(utc_now())
        )
        self._sessions[session_id] = session
        while len(self._sessions) > MAX_SESSIONS:
            self._sessions.popitem(last=False)
        return session

    def get(self, session_id: str) -> KycSession:
        session = self._sessions.get(session_id)
        if session is None:
            raise SessionNotFound(f"no session {session_id!r}")
        return session

    def claim(self, session_id: str) -> KycSession:
        """The session an offer is for; each session takes one connection."""
        session = self.get(session_id)
        if session.state != "waiting":
            raise SessionBusy(f"session {session_id!r} is {session.state}: create a new one")
        session.state = "running"
        return session

    async def complete(self, session: KycSession) -> SessionVerdict:
        """Judge the session (once), record its verdict as an event, remember its fingerprint."""
        async with self._lock:
            if session.verdict is not None:
                return session.verdict
            session.course.stop()
            loop = asyncio.get_running_loop()
            store = await loop.run_in_executor(self._store_thread, self._open_replay)
            readings = await loop.run_in_executor(self._store_thread, session.readings, store)
            verdict = session.course.verdict(assess_injection(readings))
            hashes = session.signals.fingerprint.hashes
            if store is not None and len(hashes):
                try:
                    await loop.run_in_executor(
                        self._store_thread, store.add, session.id, hashes, time.time()
                    )
                except ReplayStoreError as exc:
                    log.error("session %s: fingerprint not kept: %s", session.id, exc)
            session.verdict = verdict
            session.state = "completed"
            event = self._event(session, verdict)
            session.event_id = event.id
            self._publish(event)
            return verdict

    def _event(self, session: KycSession, verdict: SessionVerdict) -> Event:
        stream = session.stream_id or session.id
        return Event(
            id=derived_id(EventType.SESSION_COMPLETED.value, session.id),
            type=EventType.SESSION_COMPLETED,
            time=utc_now(),
            stream=stream,
            run=self._run_of(stream) or session.id,
            media_time=verdict.evidence["frames"]["duration_s"],
            evidence=verdict.evidence,
            detail={
                "session": session.id,
                "verdict": verdict.verdict.value,
                "reasons": [r.value for r in verdict.reasons],
            },
        )

    def _open_replay(self) -> ReplayStore | None:
        if self._replay is None and self._replay_path is not None:
            try:
                self._replay = ReplayStore(self._replay_path)
            except ReplayStoreError as exc:
                log.error("replayed sessions are not checked: %s", exc)
                self._replay_path = None
        return self._replay

    async def close(self) -> None:
        await asyncio.get_running_loop().run_in_executor(self._store_thread, self._close_replay)
        self._store_thread.shutdown()

    def _close_replay(self) -> None:
        if self._replay is not None:
            self._replay.close()
            self._replay = None


def check_session_id(value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise ConfigError("'session' must be a non-empty string")
    return value
