"""Signal (e), second half: recent sessions' fingerprints, to find a session replayed.

One SQLite file (stdlib `sqlite3`, mode 0600), bounded: it keeps the `max_sessions` newest
sessions and forgets those older than `max_age_s`. Only the 64-bit perceptual hashes are kept:
no picture can be rebuilt from them, and they are still personal data for as long as they are
kept, hence the bound.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from swapwatch.errors import SwapwatchError
from swapwatch.kyc.fingerprint import (
    MATCH_BITS,
    MATCH_SHARE,
    MIN_SPREAD_BITS,
    Alignment,
    align,
    spread_bits,
)
from swapwatch.kyc.readings import Contribution, SignalReading
from swapwatch.sqlite_layout import open_private_file

APPLICATION_ID = 0x53575250  # "SWRP"
LAYOUT_VERSION = 1
_LAYOUT = """
CREATE TABLE fingerprints (
    session TEXT PRIMARY KEY,
    created REAL NOT NULL,
    hashes BLOB NOT NULL
);
CREATE INDEX fingerprints_created ON fingerprints (created)
"""


class ReplayStoreError(SwapwatchError):
    """The fingerprint file cannot be opened or is not one."""


@dataclass(frozen=True, slots=True)
class ReplayMatch:
    """The earlier session a fingerprint lies on best."""

    session: str
    alignment: Alignment


class ReplayStore:
    """Recent sessions' fingerprints in one SQLite file."""

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
            "fingerprint file",
            ReplayStoreError,
            synchronous_full=False,
        )

    def best_match(self, hashes: np.ndarray, now: float | None = None) -> ReplayMatch | None:
        """The kept session that `hashes` lies on best (matched or not); None if none kept."""
        oldest = (time.time() if now is None else now) - self.max_age_s
        best: ReplayMatch | None = None
        rows = self._conn.execute(
            "SELECT session, hashes FROM fingerprints WHERE created >= ?", (oldest,)
        )
        for session, blob in rows:
            alignment = align(hashes, np.frombuffer(blob, dtype="<u8"))
            if best is None or alignment.share > best.alignment.share:
                best = ReplayMatch(session, alignment)
        return best

    def add(self, session: str, hashes: np.ndarray, now: float | None = None) -> None:
        """Keep a finished session's fingerprint, then drop what is past the bounds."""
        created = time.time() if now is None else now
        blob = np.asarray(hashes, dtype="<u8").tobytes()
        conn = self._conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            conn.execute(
                "INSERT OR REPLACE INTO fingerprints (session, created, hashes) VALUES (?, ?, ?)",
                (session, created, blob),
            )
            conn.execute("DELETE FROM fingerprints WHERE created < ?", (created - self.max_age_s,))
            conn.execute(
                "DELETE FROM fingerprints WHERE session NOT IN "
                "(SELECT session FROM fingerprints ORDER BY created DESC LIMIT ?)",
                (self.max_sessions,),
            )
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise

    def __len__(self) -> int:
        return int(self._conn.execute("SELECT count(*) FROM fingerprints").fetchone()[0])

    def close(self) -> None:
        self._conn.close()


def replay_reading(
    hashes: np.ndarray, store: ReplayStore, now: float | None = None
) -> SignalReading:
    """Whether this session's fingerprint replays a recent session's (checked, not stored:
    the caller adds the session once it is finished)."""
    name, unit = "replayed_session", "share of samples matched"
    threshold = f">= {MATCH_SHARE} within {MATCH_BITS} bits"
    if spread_bits(hashes) < MIN_SPREAD_BITS:
        return SignalReading(
            name,
            None,
            unit,
            threshold,
            Contribution.NONE,
            f"{len(hashes)} samples with too little movement to tell a replay from a retry",
        )
    match = store.best_match(hashes, now)
    if match is None:
        return SignalReading(
            name, 0.0, unit, threshold, Contribution.NONE, "no recent session kept"
        )
    share = round(match.alignment.share, 3)
    if match.alignment.matched:
        return SignalReading(
            name,
            share,
            unit,
            threshold,
            Contribution.STRONG,
            f"replays session {match.session}: {match.alignment.overlap} samples in step",
        )
    return SignalReading(
        name,
        share,
        unit,
        threshold,
        Contribution.NONE,
        f"no recent session in step with this one (best {match.session})",
    )
