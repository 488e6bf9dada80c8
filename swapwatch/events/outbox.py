"""The durable outbox: every event is committed to a local SQLite file before any delivery.

One table holds the events in append order (`seq`); each sink has a cursor (the last `seq` it
settled: delivered or dead-lettered), its dead letters, and a queue of events to send again
(replays). Appends are committed with `synchronous=FULL`: once `append` returns, the event survives
a crash or a power cut. Cursor moves use `synchronous=NORMAL`, because losing the last few after a
power cut only sends those events again, which receivers drop by id.
"""

from __future__ import annotations

import logging
import math
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from swapwatch.events.errors import OutboxCorrupt, OutboxError, OutboxFull
from swapwatch.events.model import Event
from swapwatch.sqlite_layout import create_layout

log = logging.getLogger(__name__)

APPLICATION_ID = 0x53575754  # "SWWT" in the SQLite header: tells our files from others
LAYOUT_VERSION = 1
SQLITE_FULL = 13
SQLITE_IOERR_WRITE = 778  # (3 << 8) | SQLITE_IOERR
BUSY_TIMEOUT_MS = 10_000

_LAYOUT = """
CREATE TABLE IF NOT EXISTS events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    stream TEXT NOT NULL,
    type TEXT NOT NULL,
    created REAL NOT NULL,
    body TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS events_created ON events (created);
CREATE TABLE IF NOT EXISTS cursors (
    sink TEXT PRIMARY KEY,
    seq INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS dead_letters (
    sink TEXT NOT NULL,
    seq INTEGER NOT NULL,
    attempts INTEGER NOT NULL,
    error TEXT NOT NULL,
    failed_at REAL NOT NULL,
    PRIMARY KEY (sink, seq)
);
CREATE TABLE IF NOT EXISTS requeue (
    sink TEXT NOT NULL,
    seq INTEGER NOT NULL,
    PRIMARY KEY (sink, seq)
);
"""


@dataclass(frozen=True, slots=True)
class Retention:
    """How much the outbox keeps. Events are pruned only once every sink has settled them."""

    keep_seconds: float = 7 * 24 * 3600.0  # settled events and dead letters older than this go
    keep_events: int = 100_000  # at most this many settled events are kept
    max_bytes: int | None = 256 * 1024 * 1024  # hard size limit; appends past it fail

    def __post_init__(self) -> None:
        if self.keep_seconds < 0 or self.keep_events < 0:
            raise ValueError("retention must not be negative")
        if self.max_bytes is not None and self.max_bytes < 64 * 1024:
            raise ValueError("max_bytes below 64 KiB")


@dataclass(frozen=True, slots=True)
class StoredEvent:
    """An event as the outbox holds it: its sequence number and the exact body to send."""

    seq: int
    id: str
    stream: str
    type: str
    created: float  # unix time of the append
    body: str

    def event(self) -> Event:
        return Event.decode(self.body)


@dataclass(frozen=True, slots=True)
class DeadLetter:
    sink: str
    seq: int
    event_id: str
    attempts: int
    error: str
    failed_at: float


@dataclass(frozen=True, slots=True)
class SinkState:
    name: str
    cursor: int
    backlog: int  # events after the cursor
    dead: int
    requeued: int


Listener = Callable[[int], None]


class EventLog:
    """The outbox file. Thread-safe; every method blocks on SQLite (run it off the event loop)."""

    def __init__(self, path: Path, retention: Retention | None = None) -> None:
        self.path = Path(path)
        self.retention = retention or Retention()
        self._lock = threading.Lock()
        self._listeners: list[Listener] = []
        self._closed = False
        self._appends = self._connect(synchronous="FULL")
        try:
            self._check_and_create()
            self._state = self._connect(synchronous="NORMAL")
        except BaseException:
            self._appends.close()
            raise

    # -- opening -------------------------------------------------------------------------------

    def _connect(self, synchronous: str) -> sqlite3.Connection:
        try:
            conn = sqlite3.connect(
                self.path, isolation_level=None, check_same_thread=False, timeout=10.0
            )
        except sqlite3.Error as exc:
            raise OutboxError(f"cannot open event outbox {self.path}: {exc}") from exc
        try:
            conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                raise OutboxError(f"event outbox {self.path}: WAL mode not available ({mode})")
            conn.execute(f"PRAGMA synchronous = {synchronous}")
            if self.retention.max_bytes is not None:
                page = int(conn.execute("PRAGMA page_size").fetchone()[0])
                conn.execute(
                    f"PRAGMA max_page_count = {math.ceil(self.retention.max_bytes / page)}"
                )
        except sqlite3.DatabaseError as exc:
            conn.close()
            raise OutboxCorrupt(f"event outbox {self.path} is not readable: {exc}") from exc
        except BaseException:
            conn.close()
            raise
        return conn

    def _check_and_create(self) -> None:
        conn = self._appends
        try:
            app_id = int(conn.execute("PRAGMA application_id").fetchone()[0])
            tables = conn.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]
            if tables and app_id != APPLICATION_ID:
                raise OutboxCorrupt(f"{self.path} is an SQLite file but not a swapwatch outbox")
            if tables:
                check = [str(row[0]) for row in conn.execute("PRAGMA quick_check")]
                if check != ["ok"]:
                    raise OutboxCorrupt(f"event outbox {self.path} is damaged: {check[0]}")
                version = int(conn.execute("PRAGMA user_version").fetchone()[0])
                if version != LAYOUT_VERSION:
                    raise OutboxCorrupt(
                        f"event outbox {self.path} has layout {version}, expected {LAYOUT_VERSION}"
                    )
                return
            create_layout(conn, _LAYOUT, APPLICATION_ID, LAYOUT_VERSION)
        except sqlite3.DatabaseError as exc:
            raise OutboxCorrupt(f"event outbox {self.path} is not readable: {exc}") from exc

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._appends.close()
            self._state.close()

    def __enter__(self) -> EventLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- writing -------------------------------------------------------------------------------

    def add_listener(self, listener: Listener) -> None:
        """Call `listener(seq)` after each committed append (from the appending thread)."""
        self._listeners.append(listener)

    def remove_listener(self, listener: Listener) -> None:
        self._listeners.remove(listener)

    def append(self, event: Event) -> int:
        """Commit `event` durably and return its sequence number.

        Appending an id that is already in the outbox changes nothing and returns its first
        sequence number: a restarted worker may repeat events without duplicating them.
        """
        body = event.encode()
        row = (event.id, event.stream, event.type.value, time.time(), body)
        try:
            seq = self._insert(row)
        except OutboxFull:
            if not self.prune():
                raise
            seq = self._insert(row)
        for listener in list(self._listeners):
            listener(seq)
        return seq

    def _insert(self, row: tuple[str, str, str, float, str]) -> int:
        with self._transaction(self._appends) as conn:
            conn.execute(
                "INSERT INTO events (id, stream, type, created, body) VALUES (?, ?, ?, ?, ?) "
                "ON CONFLICT (id) DO NOTHING",
                row,
            )
            found = conn.execute("SELECT seq FROM events WHERE id = ?", (row[0],)).fetchone()
        return int(found[0])

    @contextmanager
    def _transaction(self, conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
        with self._lock:
            if self._closed:
                raise OutboxError(f"event outbox {self.path} is closed")
            try:
                conn.execute("BEGIN IMMEDIATE")
                yield conn
                conn.execute("COMMIT")
            except BaseException as exc:
                # SQLite has already rolled back after some errors (e.g. SQLITE_FULL).
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                if isinstance(exc, sqlite3.OperationalError):
                    code = getattr(exc, "sqlite_errorcode", None)
                    if code == SQLITE_FULL:
                        raise OutboxFull(
                            f"event outbox {self.path} is full ({exc}): free disk space or "
                            "raise events_max_mb; appends resume by themselves"
                        ) from exc
                    if code == SQLITE_IOERR_WRITE:
                        # What a disk that is full reports when the write fails outright (or a
                        # file-size limit, EFBIG) rather than short (ENOSPC): SQLite says "I/O".
                        raise OutboxFull(
                            f"event outbox {self.path} cannot be written ({exc}): the disk is "
                            "full, a file-size limit was reached or the disk failed; appends "
                            "resume by themselves once it can be written"
                        ) from exc
                    raise OutboxError(f"event outbox {self.path}: {exc}") from exc
                if isinstance(exc, sqlite3.DatabaseError):
                    raise OutboxCorrupt(f"event outbox {self.path} is damaged: {exc}") from exc
                raise

    @contextmanager
    def _reading(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            if self._closed:
                raise OutboxError(f"event outbox {self.path} is closed")
            try:
                yield self._state
            except sqlite3.DatabaseError as exc:
                raise OutboxError(f"event outbox {self.path}: {exc}") from exc

    # -- reading -------------------------------------------------------------------------------

    def last_seq(self) -> int:
        with self._reading() as conn:
            return int(conn.execute("SELECT coalesce(max(seq), 0) FROM events").fetchone()[0])

    def read_after(self, seq: int, limit: int = 256) -> list[StoredEvent]:
        """Events with a sequence number above `seq`, in order."""
        with self._reading() as conn:
            rows = conn.execute(
                "SELECT seq, id, stream, type, created, body FROM events "
                "WHERE seq > ? ORDER BY seq LIMIT ?",
                (seq, limit),
            ).fetchall()
        return [StoredEvent(*row) for row in rows]

    def read_since(self, since: float, limit: int = 1000) -> list[StoredEvent]:
        """Events appended at or after unix time `since`, in order."""
        with self._reading() as conn:
            rows = conn.execute(
                "SELECT seq, id, stream, type, created, body FROM events "
                "WHERE created >= ? ORDER BY seq LIMIT ?",
                (since, limit),
            ).fetchall()
        return [StoredEvent(*row) for row in rows]

    def stream_events_since(
        self, stream: str, types: tuple[str, ...], since: float
    ) -> list[StoredEvent]:
        """The events of `stream` of the given types appended at or after unix time `since`, in
        order."""
        marks = ", ".join("?" * len(types))
        with self._reading() as conn:
            rows = conn.execute(
                "SELECT seq, id, stream, type, created, body FROM events "
                f"WHERE created >= ? AND stream = ? AND type IN ({marks}) ORDER BY seq",
                (since, stream, *types),
            ).fetchall()
        return [StoredEvent(*row) for row in rows]

    # -- per-sink state ------------------------------------------------------------------------

    def cursor(
        self, sink: str, start: Literal["oldest", "latest"] = "oldest", formerly: str | None = None
    ) -> int:
        """The sink's cursor; a sink seen for the first time takes over the cursor, dead letters
        and requeued events of its former name `formerly` if there are any, else starts before
        the oldest event still held (`oldest`) or after the newest (`latest`)."""
        with self._transaction(self._state) as conn:
            row = conn.execute("SELECT seq FROM cursors WHERE sink = ?", (sink,)).fetchone()
            if row is not None:
                return int(row[0])
            if formerly is not None:
                row = conn.execute("SELECT seq FROM cursors WHERE sink = ?", (formerly,)).fetchone()
                if row is not None:
                    for table in ("cursors", "dead_letters", "requeue"):
                        conn.execute(
                            f"UPDATE {table} SET sink = ? WHERE sink = ?", (sink, formerly)
                        )
                    log.info("sink %s: its former name's cursor taken over", sink)
                    return int(row[0])
            if start == "latest":
                seq = int(conn.execute("SELECT coalesce(max(seq), 0) FROM events").fetchone()[0])
            else:
                oldest = conn.execute("SELECT min(seq) FROM events").fetchone()[0]
                seq = 0 if oldest is None else int(oldest) - 1
            conn.execute("INSERT INTO cursors (sink, seq) VALUES (?, ?)", (sink, seq))
            return seq

    def settle(self, sink: str, seq: int, dead: tuple[int, str] | None = None) -> None:
        """Move the sink's cursor to `seq`: delivered, or given up (`dead`: attempts, error)."""
        with self._transaction(self._state) as conn:
            if dead is not None:
                self._bury(conn, sink, seq, dead)
            conn.execute("UPDATE cursors SET seq = max(seq, ?) WHERE sink = ?", (seq, sink))

    def requeued(self, sink: str, limit: int = 64) -> list[StoredEvent]:
        """Events queued to be sent to `sink` again (replays), in order."""
        with self._reading() as conn:
            rows = conn.execute(
                "SELECT e.seq, e.id, e.stream, e.type, e.created, e.body "
                "FROM requeue r JOIN events e ON e.seq = r.seq WHERE r.sink = ? "
                "ORDER BY e.seq LIMIT ?",
                (sink, limit),
            ).fetchall()
        return [StoredEvent(*row) for row in rows]

    def settle_requeued(self, sink: str, seq: int, dead: tuple[int, str] | None = None) -> None:
        with self._transaction(self._state) as conn:
            conn.execute("DELETE FROM requeue WHERE sink = ? AND seq = ?", (sink, seq))
            if dead is not None:
                self._bury(conn, sink, seq, dead)

    @staticmethod
    def _bury(conn: sqlite3.Connection, sink: str, seq: int, dead: tuple[int, str]) -> None:
        attempts, error = dead
        conn.execute(
            "INSERT INTO dead_letters (sink, seq, attempts, error, failed_at) "
            "VALUES (?, ?, ?, ?, ?) ON CONFLICT (sink, seq) DO UPDATE SET "
            "attempts = attempts + excluded.attempts, error = excluded.error, "
            "failed_at = excluded.failed_at",
            (sink, seq, attempts, error[:1000], time.time()),
        )

    def dead_letters(self, sink: str | None = None) -> list[DeadLetter]:
        with self._reading() as conn:
            rows = conn.execute(
                "SELECT d.sink, d.seq, e.id, d.attempts, d.error, d.failed_at "
                "FROM dead_letters d JOIN events e ON e.seq = d.seq "
                "WHERE ? IS NULL OR d.sink = ? ORDER BY d.sink, d.seq",
                (sink, sink),
            ).fetchall()
        return [DeadLetter(*row) for row in rows]

    def replay_dead(self, sink: str | None = None) -> int:
        """Queue the dead letters (of one sink, or all) to be sent again; returns how many."""
        with self._transaction(self._state) as conn:
            conn.execute(
                "INSERT OR IGNORE INTO requeue (sink, seq) "
                "SELECT sink, seq FROM dead_letters WHERE ? IS NULL OR sink = ?",
                (sink, sink),
            )
            return conn.execute(
                "DELETE FROM dead_letters WHERE ? IS NULL OR sink = ?", (sink, sink)
            ).rowcount

    def replay_since(self, since: float, sink: str | None = None) -> int:
        """Queue every already-settled event appended since unix time `since` to be sent again
        to one sink or all known sinks; returns how many (event, sink) pairs were queued."""
        with self._transaction(self._state) as conn:
            return conn.execute(
                "INSERT OR IGNORE INTO requeue (sink, seq) "
                "SELECT c.sink, e.seq FROM cursors c JOIN events e "
                "ON e.seq <= c.seq AND e.created >= ? WHERE ? IS NULL OR c.sink = ?",
                (since, sink, sink),
            ).rowcount

    def sinks(self) -> list[SinkState]:
        with self._reading() as conn:
            rows = conn.execute(
                "SELECT c.sink, c.seq, "
                "(SELECT count(*) FROM events e WHERE e.seq > c.seq), "
                "(SELECT count(*) FROM dead_letters d WHERE d.sink = c.sink), "
                "(SELECT count(*) FROM requeue r WHERE r.sink = c.sink) "
                "FROM cursors c ORDER BY c.sink"
            ).fetchall()
        return [SinkState(*row) for row in rows]

    def forget_sink(self, sink: str) -> None:
        """Drop a sink that is no longer configured, so its cursor stops holding events back."""
        with self._transaction(self._state) as conn:
            for table in ("cursors", "dead_letters", "requeue"):
                conn.execute(f"DELETE FROM {table} WHERE sink = ?", (sink,))

    # -- retention -----------------------------------------------------------------------------

    def prune(self, now: float | None = None) -> int:
        """Delete settled events past the retention limits; returns how many went."""
        cutoff = (time.time() if now is None else now) - self.retention.keep_seconds
        with self._transaction(self._state) as conn:
            conn.execute("DELETE FROM dead_letters WHERE failed_at < ?", (cutoff,))
            last = int(conn.execute("SELECT coalesce(max(seq), 0) FROM events").fetchone()[0])
            settled = conn.execute("SELECT min(seq) FROM cursors").fetchone()[0]
            safe = last if settled is None else int(settled)
            deleted = conn.execute(
                "DELETE FROM events WHERE seq <= ? AND (created < ? OR seq <= ?) "
                "AND seq NOT IN (SELECT seq FROM dead_letters) "
                "AND seq NOT IN (SELECT seq FROM requeue)",
                (safe, cutoff, last - self.retention.keep_events),
            ).rowcount
        if deleted:
            log.info("pruned %d settled events from %s", deleted, self.path)
        return int(deleted)
