"""The SQLite outbox: durability settings, cursors, dead letters, replays, retention, damage."""

from __future__ import annotations

import sqlite3
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest

from swapwatch.events import Event, EventLog, EventType, Retention, StreamEvents
from swapwatch.events.errors import OutboxCorrupt, OutboxFull
from swapwatch.fusion import AlarmChange, Alert


def event(stream: str = "s1", kind: EventType = EventType.ALERT_RAISED) -> Event:
    return Event(str(uuid.uuid4()), kind, datetime.now(UTC), stream, "run", 1, 1.0, 0.9)


def test_wal_and_durable_appends_in_order(tmp_path: Path) -> None:
    with EventLog(tmp_path / "o.sqlite") as outbox:
        seqs = [outbox.append(event()) for _ in range(5)]
        assert seqs == sorted(seqs) and len(set(seqs)) == 5
        assert [e.seq for e in outbox.read_after(seqs[1])] == seqs[2:]
    conn = sqlite3.connect(tmp_path / "o.sqlite")
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    conn.close()


def test_appending_an_id_again_keeps_one_copy(tmp_path: Path) -> None:
    with EventLog(tmp_path / "o.sqlite") as outbox:
        e = event()
        assert outbox.append(e) == outbox.append(e)
        assert len(outbox.read_after(0)) == 1


def test_cursor_dead_letter_and_replay(tmp_path: Path) -> None:
    with EventLog(tmp_path / "o.sqlite") as outbox:
        seqs = [outbox.append(event()) for _ in range(3)]
        assert outbox.cursor("hook") == 0
        outbox.settle("hook", seqs[0])
        outbox.settle("hook", seqs[1], dead=(5, "HTTP 400"))
        [state] = outbox.sinks()
        assert (state.name, state.cursor, state.backlog, state.dead) == ("hook", seqs[1], 1, 1)
        [dead] = outbox.dead_letters("hook")
        assert (dead.seq, dead.attempts, dead.error) == (seqs[1], 5, "HTTP 400")
        assert outbox.replay_dead() == 1
        assert [e.seq for e in outbox.requeued("hook")] == [seqs[1]]
        assert outbox.dead_letters() == []
        outbox.settle_requeued("hook", seqs[1])
        assert outbox.requeued("hook") == []
        # Replaying by time queues only what the sink had settled.
        assert outbox.replay_since(0.0, "hook") == 2
        assert [e.seq for e in outbox.requeued("hook")] == seqs[:2]


def test_a_new_sink_starts_at_the_oldest_or_latest_event(tmp_path: Path) -> None:
    with EventLog(tmp_path / "o.sqlite") as outbox:
        seqs = [outbox.append(event()) for _ in range(3)]
        assert outbox.cursor("a") == seqs[0] - 1
        assert outbox.cursor("b", start="latest") == seqs[-1]


def test_retention_prunes_only_settled_events(tmp_path: Path) -> None:
    with EventLog(tmp_path / "o.sqlite", Retention(keep_seconds=3600, keep_events=2)) as outbox:
        seqs = [outbox.append(event()) for _ in range(6)]
        outbox.cursor("hook")
        outbox.settle("hook", seqs[3])
        outbox.settle("hook", seqs[4], dead=(1, "refused"))
        assert outbox.prune() == 4  # settled, and not among the last 2
        remaining = [e.seq for e in outbox.read_after(0)]
        assert remaining == seqs[4:]  # the dead letter and the unsettled one stay
        assert outbox.prune(now=1e12) == 1  # past the age limit, the dead letter goes too
        assert [e.seq for e in outbox.read_after(0)] == seqs[5:]


def test_a_file_that_is_not_an_outbox_is_refused_clearly(tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.sqlite"
    garbage.write_bytes(b"this is not a database at all" * 200)
    with pytest.raises(OutboxCorrupt, match="not readable"):
        EventLog(garbage)
    other = tmp_path / "other.sqlite"
    conn = sqlite3.connect(other)
    conn.execute("CREATE TABLE t (x)")
    conn.close()
    with pytest.raises(OutboxCorrupt, match="not a swapwatch outbox"):
        EventLog(other)


def test_a_damaged_outbox_is_refused_clearly(tmp_path: Path) -> None:
    path = tmp_path / "o.sqlite"
    with EventLog(path) as outbox:
        for _ in range(200):
            outbox.append(event())
    data = bytearray(path.read_bytes())
    page = 4096
    data[2 * page : 6 * page] = b"\xa5" * (4 * page)  # overwrite table pages, keep the header
    path.write_bytes(bytes(data))
    with pytest.raises(OutboxCorrupt):
        EventLog(path)


def test_a_full_outbox_loses_events_counted_and_keeps_going(tmp_path: Path) -> None:
    outbox = EventLog(tmp_path / "o.sqlite", Retention(max_bytes=64 * 1024))
    outbox.cursor("down")  # a sink that never delivers: nothing may be pruned
    with pytest.raises(OutboxFull, match="full"):
        for _ in range(2000):
            outbox.append(event())
    events = StreamEvents(outbox, "cam", "run")
    for i in range(5):
        events.alert(Alert(AlarmChange.RAISED, i, float(i), 0.9, 12.0))  # never raises
    assert (events.appended, events.lost) == (0, 5)
    outbox.settle("down", outbox.last_seq())  # the sink catches up: retention frees space
    outbox.retention = Retention(max_bytes=64 * 1024, keep_events=0)
    events.alert(Alert(AlarmChange.CLEARED, 1, 9.0, 0.1, 0.0))
    assert events.appended == 1
    outbox.close()
