"""Replayed sessions: the fingerprint of a session's frames against recent sessions' (SQLite)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import numpy as np
import pytest
from kyc_media import decoded, encode, left_to_right, right_to_left, session_frames

from swapwatch.kyc.fingerprint import SessionFingerprint, align, hamming, phash
from swapwatch.kyc.readings import Contribution
from swapwatch.kyc.replay_store import ReplayStore, ReplayStoreError, replay_reading


def fingerprint(path: Path) -> np.ndarray:
    session = SessionFingerprint()
    for time_s, image in decoded(path):
        session.update(time_s, image)
    return session.hashes


@pytest.fixture(scope="module")
def sessions(tmp_path_factory: pytest.TempPathFactory) -> dict[str, np.ndarray]:
    """A filmed session, its replay (re-encoded smaller, at 4/5 of the frame rate), and
    another session. Small and at 10 fps, to keep the suite fast: the fingerprint samples twice
    a second whatever the rate."""
    folder = tmp_path_factory.mktemp("sessions")
    size = (320, 180)
    filmed_frames = session_frames(left_to_right, 8.0, 10, size=size)
    filmed = encode(folder / "filmed.mp4", filmed_frames, 10)
    kept = ((t, f) for t, f in decoded(filmed) if round(t * 10) % 5 != 4)  # 10 -> 8 fps
    replay = encode(folder / "replay.mp4", kept, 8, crf=32, size=(240, 136))
    other_frames = session_frames(right_to_left, 8.0, 10, size=size, seed=99)
    other = encode(folder / "other.mp4", other_frames, 10)
    return {
        name: fingerprint(p)
        for name, p in [("filmed", filmed), ("replay", replay), ("other", other)]
    }


def test_a_replayed_session_is_matched_and_another_is_not(
    sessions: dict[str, np.ndarray], tmp_path: Path
) -> None:
    store = ReplayStore(tmp_path / "fingerprints.sqlite3")
    try:
        assert replay_reading(sessions["filmed"], store).contribution is Contribution.NONE
        store.add("session-1", sessions["filmed"])
        replayed = replay_reading(sessions["replay"], store)
        other = replay_reading(sessions["other"], store)
    finally:
        store.close()
    assert replayed.contribution is Contribution.STRONG
    assert replayed.value == 1.0 and "session-1" in replayed.explanation
    assert other.contribution is Contribution.NONE
    assert other.value is not None and isinstance(other.value, float) and other.value < 0.2


def test_a_replay_that_starts_later_is_matched_at_its_shift(
    sessions: dict[str, np.ndarray],
) -> None:
    late = sessions["replay"][4:]  # the attacker's video begins 2 s into the recording
    alignment = align(late, sessions["filmed"])
    assert alignment.matched and alignment.shift == 4


def test_a_session_that_hardly_moves_is_not_matched(tmp_path: Path) -> None:
    still = np.full(16, phash(np.full((64, 64), 100, np.uint8)), dtype=np.uint64)
    store = ReplayStore(tmp_path / "fp.sqlite3")
    try:
        store.add("s", still)
        reading = replay_reading(still, store)
    finally:
        store.close()
    assert reading.contribution is Contribution.NONE
    assert "too little movement" in reading.explanation


def test_a_re_encoded_frame_stays_within_the_match_distance(
    sessions: dict[str, np.ndarray],
) -> None:
    distances = hamming(sessions["replay"], sessions["filmed"])
    assert distances.max() <= 8
    assert hamming(sessions["other"], sessions["filmed"]).mean() > 16


def test_the_store_keeps_only_the_newest_sessions_and_survives_reopening(tmp_path: Path) -> None:
    path = tmp_path / "fp.sqlite3"
    store = ReplayStore(path, max_sessions=3, max_age_s=100.0)
    try:
        for n in range(5):
            store.add(f"s{n}", np.arange(10, dtype=np.uint64) + n, now=1000.0 + n)
        assert len(store) == 3
    finally:
        store.close()
    store = ReplayStore(path, max_sessions=3, max_age_s=100.0)
    try:
        kept = {row[0] for row in store._conn.execute("SELECT session FROM fingerprints")}
        assert kept == {"s2", "s3", "s4"}
        store.add("late", np.arange(10, dtype=np.uint64), now=1200.0)  # the others are too old
        assert len(store) == 1
        assert path.stat().st_mode & 0o777 == 0o600
    finally:
        store.close()


def test_another_sqlite_file_is_refused_by_name(tmp_path: Path) -> None:
    path = tmp_path / "other.sqlite3"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE t (x)")
    with pytest.raises(ReplayStoreError, match="not a fingerprint file"):
        ReplayStore(path)
    garbage = tmp_path / "garbage.sqlite3"
    garbage.write_bytes(b"not a database at all" * 100)
    with pytest.raises(ReplayStoreError, match="not readable"):
        ReplayStore(garbage)
