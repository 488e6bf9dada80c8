"""`swapwatch events ...`, `swapwatch webhook verify` and `scan --events`, as a user runs them."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
import uuid
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import pytest
from receivers import Receiver

from swapwatch.cli.main import main
from swapwatch.events import Event, EventLog, EventType
from swapwatch.events.signing import sign
from swapwatch.fusion import DecisionConfig

SECRET = "whsec-cli"


def swapwatch(*args: str) -> list[str]:
    return [sys.executable, "-m", "swapwatch", *args]


def fill(path: Path, count: int) -> list[str]:
    with EventLog(path) as outbox:
        events = [
            Event(str(uuid.uuid4()), EventType.ALERT_RAISED, datetime.now(UTC), f"s{i % 3}", "r", i)
            for i in range(count)
        ]
        for e in events:
            outbox.append(e)
    return [e.id for e in events]


@pytest.mark.network
def test_delivery_killed_with_sigkill_and_restarted_loses_nothing(tmp_path: Path) -> None:
    db = tmp_path / "outbox.sqlite"
    ids = fill(db, 30)
    receiver = Receiver(SECRET).start()
    receiver.delay = 0.05
    sink = f"webhook:{receiver.url};secret={SECRET};backoff=0.05;max_backoff=0.2"
    try:
        worker = subprocess.Popen(
            swapwatch("events", "deliver", "--db", str(db), "--sink", sink),
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 30
        while len(receiver.ids()) < 8 and time.monotonic() < deadline:
            time.sleep(0.01)
        os.kill(worker.pid, signal.SIGKILL)  # mid-delivery: the receiver is still answering
        assert worker.wait(timeout=10) == -signal.SIGKILL
        with EventLog(db) as outbox:
            [state] = outbox.sinks()
        assert 0 < state.backlog < 30
        restarted = subprocess.run(
            swapwatch("events", "deliver", "--db", str(db), "--sink", sink, "--until-idle"),
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert restarted.returncode == 0, restarted.stderr
    finally:
        receiver.stop()
    got = receiver.ids()
    assert set(got) == set(ids)
    assert all(d.signature_ok for d in receiver.deliveries)
    assert len(got) - len(ids) <= 2  # at most the event in flight at the kill comes twice
    repeated = [i for i, n in Counter(got).items() if n > 1]
    for event_id in repeated:
        assert len({d.body for d in receiver.deliveries if d.event_id == event_id}) == 1


def test_tail_replay_and_status(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = tmp_path / "outbox.sqlite"
    ids = fill(db, 4)
    out = tmp_path / "events.jsonl"
    assert main(["events", "tail", "--db", str(db), "-n", "2"]) == 0
    assert [json.loads(line)["id"] for line in capsys.readouterr().out.splitlines()] == ids[2:]

    deliver = ["events", "deliver", "--db", str(db), "--sink", f"jsonl:{out}", "--until-idle"]
    assert main(deliver) == 0
    assert main(["events", "replay", "--db", str(db), "--since", "1h"]) == 0
    assert "4 deliveries queued again" in capsys.readouterr().out
    assert main(deliver) == 0
    lines = [json.loads(line)["id"] for line in out.read_text().splitlines()]
    assert lines == ids + ids

    assert main(["events", "status", "--db", str(db), "--json"]) == 0
    status = json.loads(capsys.readouterr().out)
    assert status["sinks"] == [
        {"name": f"jsonl:{out}", "cursor": 4, "backlog": 0, "dead": 0, "requeued": 0}
    ]


def test_the_cli_leaves_the_outboxs_history_to_the_process_that_writes_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # A service keeping 30 days (events.keep_days): a delivery worker started beside it, or a
    # replay, must not prune its history by a default of its own.
    db = tmp_path / "outbox.sqlite"
    ids = fill(db, 4)
    ten_days_ago = time.time() - 10 * 86_400
    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE events SET created = ?", (ten_days_ago,))
    out = tmp_path / "events.jsonl"
    deliver = ["events", "deliver", "--db", str(db), "--sink", f"jsonl:{out}", "--until-idle"]
    assert main(deliver) == 0
    assert main(deliver) == 0  # started again: its events are settled now, and old
    assert main(["events", "tail", "--db", str(db), "-n", "10"]) == 0
    assert [json.loads(line)["id"] for line in capsys.readouterr().out.splitlines()] == ids
    assert main([*deliver, "--keep-days", "7"]) == 0  # asked for: settled and older, pruned
    assert main(["events", "tail", "--db", str(db), "-n", "10"]) == 0
    assert capsys.readouterr().out == ""


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (
            ["events", "deliver", "--sink", "teams:x"],
            2,
            "unknown sink type 'teams' (available: jsonl, kafka, live, mqtt, nats, webhook)",
        ),
        (["events", "deliver"], 2, "no sinks"),
        (["events", "tail", "--db", "{garbage}"], 5, "is not readable"),
        (["events", "tail", "--db", "{missing}"], 2, "no event outbox at"),
        (["events", "deliver", "--sink", "webhook:ftp://x"], 2, "http(s) URL"),
        (["events", "deliver", "--sink", "webhook:http://x;colour=red"], 2, "colour"),
    ],
)
def test_clear_one_line_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], code: int, message: str
) -> None:
    garbage = tmp_path / "garbage.sqlite"
    garbage.write_bytes(b"\x00not sqlite\x00" * 500)
    db = ["--db", str(tmp_path / "ok.sqlite")] if "--db" not in args else []
    args = [a.format(garbage=garbage, missing=tmp_path / "missing.sqlite") for a in args]
    assert main([*args[:2], *db, *args[2:]]) == code
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and err.startswith("swapwatch: error: ")


def test_webhook_verify_for_receivers(tmp_path: Path) -> None:
    body = tmp_path / "body.json"
    body.write_bytes(b'{"id":"x"}')
    header, _ = sign([SECRET], body.read_bytes())
    ok = subprocess.run(
        swapwatch("webhook", "verify", "--secret", SECRET, "--signature", header),
        input=body.read_bytes(),
        capture_output=True,
        timeout=30,
    )
    assert ok.returncode == 0 and ok.stdout.startswith(b"valid: signed at ")
    bad = subprocess.run(
        swapwatch("webhook", "verify", "--secret", "wrong", "--signature", header, str(body)),
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert bad.returncode == 7
    assert bad.stderr == "swapwatch: error: signature does not match the body\n"


def test_scan_records_and_delivers_its_events(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], one_face_video: Path, fake_model: Path
) -> None:
    db, out = tmp_path / "o.sqlite", tmp_path / "e.jsonl"
    args = ["scan", str(one_face_video), "--model", str(fake_model), "--json"]
    code = main([*args, "--events", str(db), "--sink", f"jsonl:{out}", "--stream-id", "kyc-42"])
    assert code == 0
    result = json.loads(capsys.readouterr().out)
    events = [json.loads(line) for line in out.read_text().splitlines()]
    assert [e["type"] for e in events] == ["stream.started", "alert.raised", "stream.ended"]
    assert {e["stream"] for e in events} == {"kyc-42"} and len({e["run"] for e in events}) == 1
    raised = events[1]
    # The scan report rounds times to 4 decimals, the event to 6.
    assert raised["media_time"] == pytest.approx(result["alerts"][0]["time"], abs=1e-4)
    assert raised["evidence"]["threshold"] == DecisionConfig().h
    assert events[2]["detail"]["verdict"] == "fake"


def test_scan_with_a_corrupt_outbox_stops_before_analysing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], one_face_video: Path, fake_model: Path
) -> None:
    garbage = tmp_path / "garbage.sqlite"
    garbage.write_bytes(b"\x00not sqlite\x00" * 500)
    code = main(["scan", str(one_face_video), "--model", str(fake_model), "--events", str(garbage)])
    assert code == 5
    assert "is not readable" in capsys.readouterr().err


def test_a_second_deliverer_of_one_sink_is_refused_and_another_sink_is_not(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Two processes delivering one sink would each send from its cursor: events twice and out
    of order. `events deliver` beside the deliverer of that sink stops with one line."""
    db = tmp_path / "outbox.sqlite"
    ids = fill(db, 3)
    first, second = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    worker = subprocess.Popen(
        swapwatch("events", "deliver", "--db", str(db), "--sink", f"jsonl:{first}"),
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while (not first.exists() or len(first.read_text().splitlines()) < 3) and (
            time.monotonic() < deadline
        ):
            time.sleep(0.05)
        until_idle = ["events", "deliver", "--db", str(db), "--until-idle", "--sink"]
        assert main([*until_idle, f"jsonl:{first}"]) == 5
        err = capsys.readouterr().err
        assert f"sink jsonl:{first} of {db} is being delivered by another process" in err
        assert f"(pid {worker.pid})" in err
        assert main([*until_idle, f"jsonl:{second}"]) == 0  # another sink is free
    finally:
        worker.terminate()
        worker.wait(timeout=10)
    assert main([*until_idle, f"jsonl:{first}"]) == 0  # free once its deliverer stopped
    assert [json.loads(line)["id"] for line in first.read_text().splitlines()] == ids
    assert [json.loads(line)["id"] for line in second.read_text().splitlines()] == ids


def test_the_service_waits_for_a_busy_sink_and_then_delivers_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The service is the sink's usual deliverer: started while a command delivers the sink,
    it records events and delivers them once the command has ended."""
    import asyncio

    from swapwatch.events import delivery
    from swapwatch.events.delivery import Dispatcher, Route
    from swapwatch.events.sinks.jsonl import JsonlOptions, JsonlSink

    monkeypatch.setattr(delivery, "BUSY_RETRY_S", 0.1)
    db = tmp_path / "outbox.sqlite"
    ids = fill(db, 2)
    out = tmp_path / "events.jsonl"
    sink = f"jsonl:{out}"
    worker = subprocess.Popen(
        swapwatch("events", "deliver", "--db", str(db), "--sink", sink),
        stderr=subprocess.DEVNULL,
    )

    deadline = time.monotonic() + 30  # the command holds the sink once it has delivered
    while (not out.exists() or len(out.read_text().splitlines()) < 2) and (
        time.monotonic() < deadline
    ):
        time.sleep(0.05)

    async def run() -> None:
        with EventLog(db) as outbox:
            route = Route(JsonlSink(sink, str(out), JsonlOptions()))
            async with Dispatcher(outbox, [route], wait_for_busy_sinks=True) as dispatcher:
                stats = dispatcher.stats[sink]
                deadline = time.monotonic() + 20
                while "another process" not in (stats.last_error or ""):
                    assert time.monotonic() < deadline, stats
                    await asyncio.sleep(0.05)
                # The command stopped but still holding the sink: nothing goes out twice.
                worker.send_signal(signal.SIGSTOP)
                outbox.append(
                    Event(str(uuid.uuid4()), EventType.ALERT_RAISED, datetime.now(UTC), "s", "r")
                )
                await asyncio.sleep(0.5)
                assert stats.delivered == 0 and not stats.running
                worker.kill()  # however it ends, the kernel lets its lock go
                await asyncio.to_thread(worker.wait, 10)
                assert await dispatcher.wait_idle(20)
                assert stats.delivered == 1

    try:
        asyncio.run(asyncio.wait_for(run(), 60))
    finally:
        worker.kill()
        worker.wait(timeout=10)
    delivered = [json.loads(line)["id"] for line in out.read_text().splitlines()]
    assert delivered[: len(ids)] == ids and len(delivered) == 3
