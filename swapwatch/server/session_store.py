"""KYC sessions kept across restarts: one SQLite file beside the outbox
(`<outbox>-sessions.sqlite`, stdlib `sqlite3`, mode 0600).

A row holds what a session needs to be answered for or joined after a restart: its policy, its
drawn challenges, its state and, once judged, its verdict and the exact `session.completed`
event. The verdict is kept here before its event goes to the outbox, and the row is marked
announced once the outbox has committed the event, so a crash between the two sends the same
event (same id, same body) again at the next start. The file is bounded like the fingerprint
file: the `max_sessions` newest and none older than `max_age_s`, except rows still running or
not yet announced. Verdict evidence is measurements, never pictures.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from swapwatch.errors import SwapwatchError
from swapwatch.kyc.challenges import Challenge, ChallengeKind, ChallengePolicy
from swapwatch.kyc.session import SessionPolicy
from swapwatch.sqlite_layout import open_private_file

APPLICATION_ID = 0x53575353  # "SWSS"
LAYOUT_VERSION = 1
_LAYOUT = """
CREATE TABLE sessions (
    id TEXT PRIMARY KEY,
    created REAL NOT NULL,
    expires REAL NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('waiting', 'running', 'completed')),
    policy TEXT NOT NULL,
    challenges TEXT NOT NULL,
    stream TEXT,
    running_since REAL,
    verdict TEXT,
    event TEXT,
    announced INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX sessions_created ON sessions (created);
CREATE INDEX sessions_open ON sessions (state, announced)
"""


class SessionStoreError(SwapwatchError):
    """The sessions file cannot be opened, is not one, or cannot be written."""


@dataclass(frozen=True, slots=True)
class StoredSession:
    """A session as the file holds it."""

    id: str
    created: float  # unix time
    expires: float  # unix time after which a waiting session can no longer be joined
    state: str
    policy: SessionPolicy
    challenges: tuple[Challenge, ...]
    stream: str | None = None
    running_since: float | None = None
    verdict: dict[str, Any] | None = None  # SessionVerdict.to_json()
    event: str | None = None  # the encoded session.completed event


def policy_to_json(policy: SessionPolicy) -> dict[str, Any]:
    return asdict(policy)


def policy_from_json(data: Mapping[str, Any]) -> SessionPolicy:
    challenges = dict(data["challenges"])
    challenges["kinds"] = tuple(ChallengeKind(k) for k in challenges["kinds"])
    rest = {k: v for k, v in data.items() if k != "challenges"}
    rest["allowed_camera_labels"] = tuple(rest.get("allowed_camera_labels", ()))
    return SessionPolicy(ChallengePolicy(**challenges), **rest)


def challenges_to_json(challenges: tuple[Challenge, ...]) -> list[dict[str, Any]]:
    return [asdict(c) for c in challenges]


def challenges_from_json(data: list[Mapping[str, Any]]) -> tuple[Challenge, ...]:
    return tuple(
        Challenge(ChallengeKind(c["kind"]), float(c["threshold"]), float(c["window_s"]))
        for c in data
    )


class SessionStore:
    """The sessions file; one connection, used from one thread."""

    def __init__(
        self, path: Path, max_sessions: int = 10_000, max_age_s: float = 30 * 24 * 3600.0
    ) -> None:
        if max_sessions < 1 or not max_age_s > 0:
            raise ValueError("max_sessions and max_age_s must be positive")
        self.path = path
        self.max_sessions = max_sessions
        self.max_age_s = max_age_s
        self._conn = open_private_file(
            path,
            _LAYOUT,
            APPLICATION_ID,
            LAYOUT_VERSION,
            "sessions file",
            SessionStoreError,
            synchronous_full=True,
        )

    @contextmanager
    def _writing(self) -> Iterator[sqlite3.Connection]:
        conn = self._conn
        try:
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
        except sqlite3.Error as exc:
            raise SessionStoreError(f"cannot write the sessions file {self.path}: {exc}") from exc

    def add(self, session: StoredSession) -> None:
        """Keep a new session, then let go of what is past the bounds."""
        with self._writing() as conn:
            conn.execute(
                "INSERT INTO sessions (id, created, expires, state, policy, challenges) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (
                    session.id,
                    session.created,
                    session.expires,
                    session.state,
                    json.dumps(policy_to_json(session.policy)),
                    json.dumps(challenges_to_json(session.challenges)),
                ),
            )
            # Running sessions and verdicts not yet in the outbox are never let go.
            settled = "(state = 'waiting' OR announced = 1)"
            conn.execute(
                f"DELETE FROM sessions WHERE created < ? AND {settled}",
                (session.created - self.max_age_s,),
            )
            conn.execute(
                f"DELETE FROM sessions WHERE {settled} AND id NOT IN "
                "(SELECT id FROM sessions ORDER BY created DESC LIMIT ?)",
                (self.max_sessions,),
            )

    def running(self, session_id: str, stream: str, since: float | None = None) -> None:
        """The session has its connection."""
        with self._writing() as conn:
            conn.execute(
                "UPDATE sessions SET state = 'running', stream = ?, running_since = ? WHERE id = ?",
                (stream, time.time() if since is None else since, session_id),
            )

    def waiting(self, session_id: str) -> None:
        """No connection came of an offer: the session may be joined again."""
        with self._writing() as conn:
            conn.execute(
                "UPDATE sessions SET state = 'waiting', stream = NULL, running_since = NULL "
                "WHERE id = ? AND state = 'running'",
                (session_id,),
            )

    def completed(self, session_id: str, verdict: dict[str, Any], event: str) -> None:
        """The session's verdict and its event, kept before the event goes to the outbox."""
        with self._writing() as conn:
            conn.execute(
                "UPDATE sessions SET state = 'completed', verdict = ?, event = ?, announced = 0 "
                "WHERE id = ?",
                (json.dumps(verdict), event, session_id),
            )

    def announced(self, session_id: str) -> None:
        """The outbox holds the session's event."""
        with self._writing() as conn:
            conn.execute("UPDATE sessions SET announced = 1 WHERE id = ?", (session_id,))

    def get(self, session_id: str) -> StoredSession | None:
        row = self._conn.execute(f"SELECT {_COLUMNS} FROM sessions WHERE id = ?", (session_id,))
        found = row.fetchone()
        return None if found is None else _session(found)

    def interrupted(self) -> list[StoredSession]:
        """Sessions that were running when the process holding them stopped (call at start)."""
        rows = self._conn.execute(
            f"SELECT {_COLUMNS} FROM sessions WHERE state = 'running' ORDER BY created"
        )
        return [_session(r) for r in rows]

    def unannounced(self) -> list[StoredSession]:
        """Judged sessions whose event the outbox may not hold yet."""
        rows = self._conn.execute(
            f"SELECT {_COLUMNS} FROM sessions WHERE state = 'completed' AND announced = 0 "
            "ORDER BY created"
        )
        return [_session(r) for r in rows]

    def __len__(self) -> int:
        return int(self._conn.execute("SELECT count(*) FROM sessions").fetchone()[0])

    def close(self) -> None:
        self._conn.close()


_COLUMNS = "id, created, expires, state, policy, challenges, stream, running_since, verdict, event"


def _session(row: tuple[Any, ...]) -> StoredSession:
    verdict = None if row[8] is None else json.loads(row[8])
    return StoredSession(
        id=row[0],
        created=float(row[1]),
        expires=float(row[2]),
        state=row[3],
        policy=policy_from_json(json.loads(row[4])),
        challenges=challenges_from_json(json.loads(row[5])),
        stream=row[6],
        running_since=None if row[7] is None else float(row[7]),
        verdict=verdict,
        event=row[9],
    )
