"""Creating a swapwatch SQLite file's tables, stamped with what it is and which layout it has,
and opening such a file that only its owner may read."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

PRIVATE_MODE = 0o600


def create_layout(conn: sqlite3.Connection, layout: str, application_id: int, version: int) -> None:
    """Create every table of `layout` (statements separated by `;`) in one transaction and
    stamp the file with `application_id` and `version` (PRAGMA user_version)."""
    conn.execute("BEGIN IMMEDIATE")
    for statement in layout.split(";"):
        if statement.strip():
            conn.execute(statement)
    conn.execute(f"PRAGMA application_id = {application_id}")
    conn.execute(f"PRAGMA user_version = {version}")
    conn.execute("COMMIT")


def open_private_file(
    path: Path,
    layout: str,
    application_id: int,
    version: int,
    what: str,
    error: type[Exception],
    synchronous_full: bool = False,
) -> sqlite3.Connection:
    """Open (or create, mode 0600) the SQLite file `path` of `layout`, in WAL mode; raises
    `error` naming `what` ("sessions file") when it cannot be opened, is damaged, is another
    kind of SQLite file or has another layout version."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        os.close(os.open(path, os.O_CREAT | os.O_WRONLY, PRIVATE_MODE))
        conn = sqlite3.connect(path, isolation_level=None, timeout=10.0)
    except (OSError, sqlite3.Error) as exc:
        raise error(f"cannot open the {what} {path}: {exc}") from exc
    try:
        conn.execute("PRAGMA journal_mode = WAL")
        if synchronous_full:
            conn.execute("PRAGMA synchronous = FULL")
        tables = int(conn.execute("SELECT count(*) FROM sqlite_master").fetchone()[0])
        if not tables:
            create_layout(conn, layout, application_id, version)
            return conn
        if int(conn.execute("PRAGMA application_id").fetchone()[0]) != application_id:
            raise error(f"{path} is an SQLite file but not a {what}")
        found = int(conn.execute("PRAGMA user_version").fetchone()[0])
        if found != version:
            raise error(f"the {what} {path} has layout {found}, expected {version}")
    except sqlite3.DatabaseError as exc:
        conn.close()
        raise error(f"the {what} {path} is not readable: {exc}") from exc
    except BaseException:
        conn.close()
        raise
    return conn
