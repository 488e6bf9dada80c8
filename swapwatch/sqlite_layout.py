"""Creating a swapwatch SQLite file's tables, stamped with what it is and which layout it has."""

from __future__ import annotations

import sqlite3


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
