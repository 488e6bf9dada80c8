"""The sessions file: what it keeps of a session, its bounds, and files that are not one; the
registry that keeps sessions in it."""

from __future__ import annotations

import asyncio
import sqlite3
import stat
import threading
import time
from pathlib import Path

import pytest

from swapwatch.engines import create_engine
from swapwatch.events.errors import OutboxError
from swapwatch.events.model import Event, EventType
from swapwatch.events.outbox import EventLog
from swapwatch.kyc.challenges import ChallengeKind, ChallengePolicy, challenge_sequence
from swapwatch.kyc.session import SessionPolicy
from swapwatch.server import sessions
from swapwatch.server.app import Service
from swapwatch.server.config import ServiceConfig
from swapwatch.server.metrics import ServiceMetrics
from swapwatch.server.session_store import SessionStore, SessionStoreError, StoredSession
from swapwatch.server.sessions import SessionRegistry

POLICY = SessionPolicy(
    ChallengePolicy(count=2, kinds=(ChallengeKind.TURN_LEFT, ChallengeKind.LOOK_UP)),
    allowed_camera_labels=("Logitech",),
)


def waiting(session_id: str, created: float) -> StoredSession:
    return StoredSession(
        session_id,
        created,
        created + 600,
        "waiting",
        POLICY,
        challenge_sequence(POLICY.challenges),
    )


def test_a_session_comes_back_as_it_was_kept(tmp_path: Path) -> None:
    path = tmp_path / "events-sessions.sqlite"
    kept = waiting("kyc-a", 1000.0)
    store = SessionStore(path)
    store.add(kept)
    store.running("kyc-a", "kyc-a", since=1001.0)
    store.close()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    again = SessionStore(path)
    got = again.get("kyc-a")
    assert got is not None
    assert got.policy == POLICY and got.challenges == kept.challenges
    assert (got.state, got.stream, got.running_since) == ("running", "kyc-a", 1001.0)
    assert [s.id for s in again.interrupted()] == ["kyc-a"]
    again.completed("kyc-a", {"verdict": "retry", "reasons": ["interrupted"]}, '{"id": "e"}')
    assert [s.id for s in again.unannounced()] == ["kyc-a"] and not again.interrupted()
    again.announced("kyc-a")
    assert not again.unannounced()
    assert again.get("nothing") is None


def test_the_file_keeps_the_newest_and_never_drops_what_is_unfinished(tmp_path: Path) -> None:
    store = SessionStore(tmp_path / "s.sqlite", max_sessions=3, max_age_s=100.0)
    store.add(waiting("running", 0.0))
    store.running("running", "running")
    store.add(waiting("unannounced", 1.0))
    store.completed("unannounced", {}, "{}")
    for n in range(2, 8):
        store.add(waiting(f"w{n}", float(n)))
    kept = {s for s in ("running", "unannounced", *(f"w{n}" for n in range(2, 8)))}
    present = {s for s in kept if store.get(s) is not None}
    # The 3 newest, and the two that are not settled yet whatever their age.
    assert present == {"running", "unannounced", "w5", "w6", "w7"}
    store.add(waiting("late", 500.0))  # everything else is past max_age_s now
    assert {s for s in [*kept, "late"] if store.get(s) is not None} == {
        "running",
        "unannounced",
        "late",
    }


def test_a_file_that_is_not_a_sessions_file_is_refused(tmp_path: Path) -> None:
    other = tmp_path / "other.sqlite"
    with sqlite3.connect(other) as conn:
        conn.execute("CREATE TABLE t (x)")
    with pytest.raises(SessionStoreError, match="not a sessions file"):
        SessionStore(other)
    garbage = tmp_path / "garbage.sqlite"
    garbage.write_bytes(b"not sqlite at all" * 100)
    with pytest.raises(SessionStoreError, match="not readable"):
        SessionStore(garbage)


def test_a_running_session_is_shown_as_it_runs_after_leaving_the_memory_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sessions, "MAX_SESSIONS", 1)
    published: list[Event] = []

    def record(event: Event) -> asyncio.Future[bool]:
        published.append(event)
        recorded: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        recorded.set_result(True)
        return recorded

    async def course() -> None:
        registry = SessionRegistry(tmp_path / "s.sqlite", None, record, lambda _: None, 10.0)
        await registry.start()
        running = await registry.claim((await registry.create(POLICY, 600.0)).id)
        await registry.create(POLICY, 600.0)  # pushes the running one out of the cache
        assert await registry.get(running.id) is running
        await registry.complete(running)
        shown = await registry.get(running.id)
        assert shown.state == "completed" and shown.verdict is not None
        assert [e.detail["session"] for e in published if e.detail] == [running.id]
        await registry.close()

    asyncio.run(course())


def verdict_events(outbox: Path, session_id: str) -> list[str]:
    with EventLog(outbox) as log:
        stored = log.read_after(0, 1000)
    return [
        s.id
        for s in stored
        if s.type == "session.completed" and (s.event().detail or {}).get("session") == session_id
    ]


def unannounced(tmp_path: Path) -> list[str]:
    store = SessionStore(tmp_path / "events-sessions.sqlite")
    try:
        return [s.id for s in store.unannounced()]
    finally:
        store.close()


def service_on(tmp_path: Path, model: Path, drain_timeout_s: float = 10.0) -> Service:
    config = ServiceConfig(
        analysis={"model": model},
        events={"path": tmp_path / "events.sqlite"},
        limits={"drain_timeout_s": drain_timeout_s},
    )
    return Service(config, create_engine("onnxruntime", model), ServiceMetrics())


def test_a_verdict_the_outbox_failed_to_record_is_announced_at_the_next_start(
    tmp_path: Path, fake_model: Path
) -> None:
    # The sessions file must not say "announced" for an event the outbox never got, or the
    # verdict's event is lost for good.
    async def course() -> str:
        service = service_on(tmp_path, fake_model)
        await service.start()
        assert service.events.outbox is not None
        append = service.events.outbox.append

        def full_disk(event: Event) -> int:
            if event.type is EventType.SESSION_COMPLETED:
                raise OutboxError("database or disk is full")
            return append(event)

        service.events.outbox.append = full_disk  # type: ignore[method-assign]
        try:
            session = await service.sessions.create(POLICY, 600.0)
            await service.sessions.complete(await service.sessions.claim(session.id))
        finally:
            await service.close()
        return session.id

    session_id = asyncio.run(course())
    assert verdict_events(tmp_path / "events.sqlite", session_id) == []

    async def restart() -> None:
        service = service_on(tmp_path, fake_model)
        await service.start()
        await service.close()

    asyncio.run(restart())
    assert len(verdict_events(tmp_path / "events.sqlite", session_id)) == 1
    assert unannounced(tmp_path) == []


def test_a_stuck_outbox_holds_each_verdict_for_the_drain_time_at_most(
    tmp_path: Path, fake_model: Path
) -> None:
    released = threading.Event()

    async def course() -> None:
        service = service_on(tmp_path, fake_model, drain_timeout_s=1.0)
        await service.start()
        assert service.events.outbox is not None
        append = service.events.outbox.append

        def locked_file(event: Event) -> int:
            if event.type is EventType.SESSION_COMPLETED:
                released.wait(30)
            return append(event)

        service.events.outbox.append = locked_file  # type: ignore[method-assign]
        try:
            created = [await service.sessions.create(POLICY, 600.0) for _ in range(2)]
            claimed = [await service.sessions.claim(s.id) for s in created]
            began = time.monotonic()
            # Two verdicts at once: the second does not queue behind the first one's wait.
            verdicts = await asyncio.wait_for(
                asyncio.gather(*(service.sessions.complete(s) for s in claimed)), 10
            )
            took = time.monotonic() - began
            assert all(v.verdict is not None for v in verdicts)
            assert 0.9 < took < 1.8, took
            ids = sorted(s.id for s in created)
            assert sorted(unannounced(tmp_path)) == ids  # not known to be in the outbox
            assert all(verdict_events(tmp_path / "events.sqlite", i) == [] for i in ids)

            released.set()  # the file is free: both are committed and marked, no restart needed
            for _ in range(100):
                if not unannounced(tmp_path):
                    break
                await asyncio.sleep(0.05)
            assert unannounced(tmp_path) == []
            assert all(len(verdict_events(tmp_path / "events.sqlite", i)) == 1 for i in ids)
        finally:
            released.set()
            await service.close()

    asyncio.run(course())
