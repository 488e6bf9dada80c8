"""What a service keeps across restarts, in a SQLite file beside its outbox: the streams added
through the API (resumed at start) and the run each stream has open (closed as `crashed` at
start when the process died under it).

Every write is committed with `synchronous=FULL` before it returns: a stream the API answered
201 for is resumed after a power cut, and one it answered 204 for is not. The file holds pulled
URLs as given, credentials included, so it is created readable by its owner only (0600). An RTMP
push ingest's key is not in it: only its SHA-256, which is all the ingest needs to check a
publisher.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from swapwatch.errors import SwapwatchError
from swapwatch.sqlite_layout import create_layout

log = logging.getLogger(__name__)

APPLICATION_ID = 0x53575354  # "SWST": tells this file from an outbox or another program's file
LAYOUT_VERSION = 1
FILE_MODE = 0o600

_LAYOUT = """
CREATE TABLE IF NOT EXISTS streams (
    id TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    url TEXT,
    policy TEXT NOT NULL,
    key_sha256 TEXT,
    port INTEGER,
    publisher TEXT,
    added REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS open_runs (
    stream TEXT PRIMARY KEY,
    run TEXT NOT NULL,
    opened REAL NOT NULL
);
"""


class StateError(SwapwatchError):
    """The service's state file cannot be opened, read or written."""

    exit_code = 5


@dataclass(frozen=True, slots=True)
class SavedStream:
    """A stream as the service resumes it."""

    stream_id: str
    kind: str  # "pull", "nginx-rtmp" (pulled from the relay) or "rtmp" (pushed to us)
    policy: str
    url: str | None = None  # pulls: what to read
    key_sha256: str | None = None  # rtmp: the SHA-256 of the stream key, hex
    port: int | None = None  # rtmp: the port publishers push to
    publisher: str | None = None  # nginx-rtmp: the client id of the session that started it


@dataclass(frozen=True, slots=True)
class OpenRun:
    stream_id: str
    run: str
    opened: float  # unix time


def state_path(events_path: Path) -> Path:
    """The state file of the service whose outbox is `events_path`: beside it, named after it
    (events.sqlite -> events-streams.sqlite), so two outboxes in one folder keep two states."""
    return events_path.with_name(f"{events_path.stem}-streams.sqlite")


class StateStore:
    """The state file. Thread-safe; every method blocks on SQLite (run it off the event loop)."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = None

    def open(self) -> None:
        """Open (or create, 0600) the file; raises StateError naming it when it is unusable."""
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            os.close(os.open(self.path, os.O_CREAT | os.O_WRONLY, FILE_MODE))
            os.chmod(self.path, FILE_MODE)  # an older file made with the umask's mode
        except OSError as exc:
            raise StateError(f"cannot create the state file {self.path}: {exc}") from exc
        try:
            conn = sqlite3.connect(
                self.path, isolation_level=None, check_same_thread=False, timeout=10.0
            )
        except sqlite3.Error as exc:
            raise StateError(f"cannot open the state file {self.path}: {exc}") from exc
        try:
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA synchronous = FULL")
            self._check_and_create(conn)
        except sqlite3.DatabaseError as exc:
            conn.close()
            raise StateError(
                f"the state file {self.path} is not readable ({exc}); move it aside to start "
                "without the saved streams"
            ) from exc
        except BaseException:
            conn.close()
            raise
        self._conn = conn

    def _check_and_create(self, conn: sqlite3.Connection) -> None:
        app_id = int(conn.execute("PRAGMA application_id").fetchone()[0])
        tables = int(conn.execute("SELECT count(*) FROM sqlite_master").fetchone()[0])
        if tables:
            if app_id != APPLICATION_ID:
                raise StateError(f"{self.path} is an SQLite file but not a swapwatch state file")
            version = int(conn.execute("PRAGMA user_version").fetchone()[0])
            if version != LAYOUT_VERSION:
                raise StateError(
                    f"the state file {self.path} has layout {version}, expected {LAYOUT_VERSION}"
                )
            return
        create_layout(conn, _LAYOUT, APPLICATION_ID, LAYOUT_VERSION)

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            conn = self._conn
            if conn is None:
                raise StateError(f"the state file {self.path} is not open")
            try:
                conn.execute("BEGIN IMMEDIATE")
                yield conn
                conn.execute("COMMIT")
            except sqlite3.Error as exc:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise StateError(f"the state file {self.path}: {exc}") from exc

    # -- streams -------------------------------------------------------------------------------

    def save_stream(self, stream: SavedStream) -> None:
        """Keep `stream` (replacing a stream of the same id, in its place) to resume it."""
        with self._transaction() as conn:
            conn.execute(
                "INSERT INTO streams (id, kind, url, policy, key_sha256, port, publisher, added) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO UPDATE SET "
                "kind = excluded.kind, url = excluded.url, policy = excluded.policy, "
                "key_sha256 = excluded.key_sha256, port = excluded.port, "
                "publisher = excluded.publisher",
                (
                    stream.stream_id,
                    stream.kind,
                    stream.url,
                    stream.policy,
                    stream.key_sha256,
                    stream.port,
                    stream.publisher,
                    time.time(),
                ),
            )

    def forget_stream(self, stream_id: str) -> None:
        """Do not resume `stream_id` any more (removed, or came to its end by itself)."""
        with self._transaction() as conn:
            conn.execute("DELETE FROM streams WHERE id = ?", (stream_id,))

    def streams(self) -> list[SavedStream]:
        """The saved streams, in the order they were added."""
        with self._transaction() as conn:
            rows = conn.execute(
                "SELECT id, kind, policy, url, key_sha256, port, publisher FROM streams "
                "ORDER BY added, id"
            ).fetchall()
        return [SavedStream(*row) for row in rows]

    # -- runs ----------------------------------------------------------------------------------

    def run_opened(self, stream_id: str, run: str) -> None:
        """`run` is the stream's run now (a stream has one run open at a time)."""
        with self._transaction() as conn:
            conn.execute(
                "INSERT OR REPLACE INTO open_runs (stream, run, opened) VALUES (?, ?, ?)",
                (stream_id, run, time.time()),
            )

    def run_closed(self, stream_id: str, run: str) -> None:
        """`run` ended with an event of its own (a later run of the stream stays open)."""
        with self._transaction() as conn:
            conn.execute("DELETE FROM open_runs WHERE stream = ? AND run = ?", (stream_id, run))

    def open_runs(self) -> list[OpenRun]:
        """Runs that were open when the last process stopped: at start, runs it never closed."""
        with self._transaction() as conn:
            rows = conn.execute(
                "SELECT stream, run, opened FROM open_runs ORDER BY opened, stream"
            ).fetchall()
        return [OpenRun(*row) for row in rows]
