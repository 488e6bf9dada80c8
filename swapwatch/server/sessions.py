"""KYC sessions of the service: created through the API, run over a WebRTC connection, ended by
one durable `session.completed` event.

Each session is kept in `<outbox>-sessions.sqlite` (`session_store`) from its creation, so a
restart loses none: a completed session is still answered for with its verdict, a waiting one
can still be joined until it expires, and one that was running when the service stopped is
judged `retry` for `interrupted` (at shutdown, or at the next start after a crash). Running
sessions' measurements live in memory only: the connection that fed them is gone with the
process anyway. The newest MAX_SESSIONS are also held in memory.
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
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from swapwatch.errors import ConfigError, SwapwatchError
from swapwatch.events.model import Event, EventType, derived_id, format_time, utc_now
from swapwatch.fusion import DecisionConfig
from swapwatch.kyc.camera_label import CameraReport, capabilities_reading, label_reading
from swapwatch.kyc.capture_format import CaptureFormat, FormatProbe, format_reading
from swapwatch.kyc.challenges import Challenge, challenge_sequence
from swapwatch.kyc.combination import Verdict, assess_injection
from swapwatch.kyc.readings import SignalReading
from swapwatch.kyc.replay_store import ReplayStore, ReplayStoreError, replay_reading
from swapwatch.kyc.session import (
    Reason,
    SessionCourse,
    SessionFace,
    SessionPolicy,
    SessionVerdict,
)
from swapwatch.kyc.stream_signals import StreamSignals
from swapwatch.server.session_store import SessionStore, SessionStoreError, StoredSession
from swapwatch.stream.pipeline import FrameResult

log = logging.getLogger(__name__)
_T = TypeVar("_T")

MAX_SESSIONS = 1000  # held in memory; the sessions file keeps more
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
    created_at: float  # unix time
    expires_at: float  # unix time after which a waiting session can no longer be joined
    state: str = "waiting"  # waiting -> running -> completed
    stream_id: str | None = None
    running_since: float | None = None  # unix time its connection was taken
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

    @property
    def expired(self) -> bool:
        return self.state == "waiting" and time.time() > self.expires_at

    def to_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "id": self.id,
            "state": "expired" if self.expired else self.state,
            "created": _time(self.created_at),
            "expires": _time(self.expires_at),
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


def _time(unix: float) -> str:
    return format_time(datetime.fromtimestamp(unix, UTC))


def interrupted_verdict(running_since: float | None, noticed: float, by: str) -> SessionVerdict:
    """The verdict of a session whose service stopped under it: its measurements are gone with
    the process, so nothing was judged and the person may try again."""
    return SessionVerdict(
        Verdict.RETRY,
        (Reason.INTERRUPTED,),
        {
            "interrupted": {
                "by": by,
                "running_since": None if running_since is None else _time(running_since),
                "noticed": _time(noticed),
            }
        },
    )


def _format(data: Any) -> CaptureFormat:
    if not isinstance(data, dict):
        raise ValueError("a format is an object")
    rate = data.get("frameRate")
    return CaptureFormat(int(data["width"]), int(data["height"]), None if rate is None else rate)


class SessionRegistry:
    """The service's sessions, kept in the sessions file, and what ends one: its verdict,
    recorded and announced."""

    def __init__(
        self,
        store_path: Path | None,
        replay_path: Path | None,
        record: Callable[[Event], asyncio.Future[bool]],
        run_of: Callable[[str], str | None],
        wait_s: float,
    ) -> None:
        """`record` queues a verdict's event for the outbox: a future of whether the outbox
        has it. A verdict is answered once its event is in the outbox, or after `wait_s`."""
        self._sessions: OrderedDict[str, KycSession] = OrderedDict()
        self._running: dict[str, KycSession] = {}
        self._store_path = store_path
        self._store: SessionStore | None = None
        self._replay_path = replay_path
        self._replay: ReplayStore | None = None
        self._record = record
        self._run_of = run_of  # a stream's current run id
        self._wait_s = wait_s
        self._announcing: set[asyncio.Task[None]] = set()
        self._lock = asyncio.Lock()
        # SQLite connections stay on the thread that made them: the stores have this one.
        self._store_thread = ThreadPoolExecutor(1, thread_name_prefix="session-store")

    async def _in_store(self, work: Callable[..., _T], *args: Any) -> _T:
        return await asyncio.get_running_loop().run_in_executor(self._store_thread, work, *args)

    async def start(self) -> None:
        """Open the sessions file; judge the sessions a stopped process left running, and
        announce again verdicts whose events the outbox may lack."""
        self._store = await self._in_store(self._open_store)
        if self._store is None:
            return
        store = self._store
        # Verdicts a stopped process reached but did not see in the outbox go out again first
        # (the outbox keeps one copy of an event), then those of the sessions it cut.
        announcing = [
            self._announce(stored.id, Event.decode(stored.event))
            for stored in await self._in_store(store.unannounced)
            if stored.event is not None
        ]
        noticed = time.time()
        for stored in await self._in_store(store.interrupted):
            session = self._remember(self._from_stored(stored))
            log.warning("session %s: interrupted by a restart, judged retry", session.id)
            verdict = interrupted_verdict(stored.running_since, noticed, "restart")
            announcing.append(await self._judge(session, verdict))
        await self._settled(announcing)

    def _open_store(self) -> SessionStore | None:
        if self._store_path is None:
            return None
        try:
            return SessionStore(self._store_path)
        except SessionStoreError as exc:
            log.error("sessions are kept in memory only (a restart loses them): %s", exc)
            return None

    async def create(self, policy: SessionPolicy, join_within_s: float) -> KycSession:
        now = time.time()
        session = KycSession(
            "kyc-" + secrets.token_hex(10),
            policy,
            challenge_sequence(policy.challenges),
            now,
            now + join_within_s,
        )
        if self._store is not None:
            await self._in_store(self._store.add, self._to_stored(session))
        return self._remember(session)

    def _remember(self, session: KycSession) -> KycSession:
        self._sessions[session.id] = session
        self._sessions.move_to_end(session.id)
        while len(self._sessions) > MAX_SESSIONS:
            self._sessions.popitem(last=False)
        return session

    async def get(self, session_id: str) -> KycSession:
        # A running session may have left the memory cache; its live object is the one to show.
        session = self._running.get(session_id) or self._sessions.get(session_id)
        if session is not None:
            return session
        stored = None
        if self._store is not None:
            stored = await self._in_store(self._store.get, session_id)
        if stored is None:
            raise SessionNotFound(f"no session {session_id!r}")
        # Another request may have loaded it meanwhile: one object per session.
        session = self._sessions.get(session_id)
        return session if session is not None else self._remember(self._from_stored(stored))

    async def claim(self, session_id: str) -> KycSession:
        """The session an offer is for; each session takes one connection."""
        session = await self.get(session_id)
        if session.expired:
            raise SessionBusy(f"session {session_id!r} has expired: create a new one")
        if session.state != "waiting":
            raise SessionBusy(f"session {session_id!r} is {session.state}: create a new one")
        session.state = "running"
        session.running_since = time.time()
        self._running[session.id] = session
        if self._store is not None:
            await self._in_store(self._store.running, session.id, session.id, session.running_since)
        return session

    async def release(self, session: KycSession) -> None:
        """No connection came of the offer: the session may be joined again."""
        if session.state != "running" or session.verdict is not None:
            return
        session.state = "waiting"
        session.running_since = None
        self._running.pop(session.id, None)
        if self._store is not None:
            await self._in_store(self._store.waiting, session.id)

    async def complete(self, session: KycSession) -> SessionVerdict:
        """Judge the session (once), record its verdict as an event, remember its fingerprint."""
        async with self._lock:
            if session.verdict is not None:
                return session.verdict
            session.course.stop()
            store = await self._in_store(self._open_replay)
            readings = await self._in_store(session.readings, store)
            verdict = session.course.verdict(assess_injection(readings))
            hashes = session.signals.fingerprint.hashes
            if store is not None and len(hashes):
                try:
                    await self._in_store(store.add, session.id, hashes, time.time())
                except ReplayStoreError as exc:
                    log.error("session %s: fingerprint not kept: %s", session.id, exc)
            announcing = await self._judge(session, verdict)
        # Outside the lock: a verdict reached after this one does not queue behind its wait.
        await self._settled([announcing])
        return verdict

    async def interrupt_running(self) -> None:
        """At shutdown: the sessions still running are judged `retry` for `interrupted`. Their
        events are queued for the outbox, whose closing commits them."""
        noticed = time.time()
        async with self._lock:
            for session in list(self._running.values()):
                if session.verdict is None:
                    session.course.stop()
                    verdict = interrupted_verdict(session.running_since, noticed, "shutdown")
                    await self._judge(session, verdict)

    async def _judge(self, session: KycSession, verdict: SessionVerdict) -> asyncio.Task[None]:
        """Keep the verdict and its event in the sessions file, then queue the event for the
        outbox: the task marks the session announced once the outbox has it."""
        session.verdict = verdict
        session.state = "completed"
        self._running.pop(session.id, None)
        self._remember(session)
        event = self._event(session, verdict)
        session.event_id = event.id
        if self._store is not None:
            try:
                await self._in_store(
                    self._store.completed, session.id, verdict.to_json(), event.encode()
                )
            except SessionStoreError as exc:
                log.error("session %s: verdict not kept in the sessions file: %s", session.id, exc)
        return self._announce(session.id, event)

    def _announce(self, session_id: str, event: Event) -> asyncio.Task[None]:
        """Queue the event now, so that the outbox takes verdicts in the order they were
        reached; the task waits for it however long the outbox takes."""
        written = self._record(event)
        task = asyncio.create_task(self._mark_announced(session_id, written))
        self._announcing.add(task)
        task.add_done_callback(self._announcing.discard)
        return task

    async def _mark_announced(self, session_id: str, written: asyncio.Future[bool]) -> None:
        # The sessions file says "announced" only for an event the outbox has: any other is
        # announced again at the next start.
        try:
            recorded = await written
        except Exception:
            log.exception("session %s: writing its verdict's event failed", session_id)
            recorded = False
        if not recorded:
            log.warning("session %s: its verdict's event is not in the outbox", session_id)
            return
        if self._store is not None:
            try:
                await self._in_store(self._store.announced, session_id)
            except SessionStoreError as exc:
                log.error("session %s: %s", session_id, exc)

    async def _settled(self, announcing: list[asyncio.Task[None]]) -> None:
        """Wait for these verdicts' events to be in the outbox, `wait_s` at most: a stuck outbox
        (a locked file) holds no answer, start or stop longer. What it has not taken by then
        is marked announced when it does, or announced again at the next start."""
        if not announcing:
            return
        _, pending = await asyncio.wait(announcing, timeout=self._wait_s)
        if pending:
            log.warning(
                "%d session verdicts' events are not in the outbox after %gs; still queued",
                len(pending),
                self._wait_s,
            )

    def _event(self, session: KycSession, verdict: SessionVerdict) -> Event:
        stream = session.stream_id or session.id
        frames = verdict.evidence.get("frames")
        return Event(
            id=derived_id(EventType.SESSION_COMPLETED.value, session.id),
            type=EventType.SESSION_COMPLETED,
            time=utc_now(),
            stream=stream,
            run=self._run_of(stream) or session.id,
            media_time=None if frames is None else frames["duration_s"],
            evidence=verdict.evidence,
            detail={
                "session": session.id,
                "verdict": verdict.verdict.value,
                "reasons": [r.value for r in verdict.reasons],
            },
        )

    @staticmethod
    def _to_stored(session: KycSession) -> StoredSession:
        return StoredSession(
            session.id,
            session.created_at,
            session.expires_at,
            session.state,
            session.policy,
            session.challenges,
        )

    @staticmethod
    def _from_stored(stored: StoredSession) -> KycSession:
        session = KycSession(
            stored.id,
            stored.policy,
            stored.challenges,
            stored.created,
            stored.expires,
            state=stored.state,
            stream_id=stored.stream,
            running_since=stored.running_since,
        )
        if stored.verdict is not None:
            session.verdict = SessionVerdict(
                Verdict(stored.verdict["verdict"]),
                tuple(Reason(r) for r in stored.verdict["reasons"]),
                stored.verdict["evidence"],
            )
            session.event_id = None if stored.event is None else Event.decode(stored.event).id
        return session

    def _open_replay(self) -> ReplayStore | None:
        if self._replay is None and self._replay_path is not None:
            try:
                self._replay = ReplayStore(self._replay_path)
            except ReplayStoreError as exc:
                log.error("replayed sessions are not checked: %s", exc)
                self._replay_path = None
        return self._replay

    async def close(self) -> None:
        """After the outbox has closed (and so committed or given up every event queued)."""
        if self._announcing:
            _, pending = await asyncio.wait(set(self._announcing), timeout=self._wait_s)
            for task in pending:
                task.cancel()  # its session stays unannounced: announced again at the next start
        await self._in_store(self._close_stores)
        self._store_thread.shutdown()

    def _close_stores(self) -> None:
        if self._replay is not None:
            self._replay.close()
            self._replay = None
        if self._store is not None:
            self._store.close()
            self._store = None


def check_session_id(value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise ConfigError("'session' must be a non-empty string")
    return value
