"""The sessions file: what it keeps of a session, its bounds, and files that are not one; the
registry that keeps sessions in it."""

from __future__ import annotations

import asyncio
import sqlite3
import stat
from pathlib import Path

import pytest

from swapwatch.events.model import Event
from swapwatch.kyc.challenges import ChallengeKind, ChallengePolicy, challenge_sequence
from swapwatch.kyc.session import SessionPolicy
from swapwatch.server import sessions
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

    async def flushed() -> None:
        return None

    async def course() -> None:
        registry = SessionRegistry(
            tmp_path / "s.sqlite", None, published.append, lambda _: None, flushed
        )
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
