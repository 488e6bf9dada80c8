"""SIGTERM to a real `swapwatch scan`, `watch` or `events deliver` process whose plugin is stuck
for good: the process still ends, soon after its drain, naming what held it, and what it had
recorded stays in the outbox."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest
from stuck_plugins import stuck_signal_plugin, stuck_sink_plugin

from swapwatch.cli.hard_stop import COMMAND_EXIT_MARGIN_S, FORCED_EXIT_STATUS
from swapwatch.events.model import Event, EventType
from swapwatch.events.outbox import EventLog

DRAIN_S = 1.0
STARTUP_S = 60.0
MARGIN_S = 3.0  # the interpreter's own start of the exit, on a loaded machine


def start(args: list[str], site: Path, log: Path) -> subprocess.Popen[bytes]:
    """`python -m swapwatch ARGS`: the process's own command line, as a supervisor runs it."""
    paths = [str(Path(__file__).parents[1]), str(site)]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(paths)}
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "swapwatch", *args],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
        )


def terminate_when(marker: Path, process: subprocess.Popen[bytes], log: Path) -> float:
    """Once `marker` exists (the plugin is stuck), SIGTERM; the seconds the process took to end."""
    deadline = time.monotonic() + STARTUP_S
    try:
        while not marker.exists():
            assert process.poll() is None, log.read_text()[-2000:]
            assert time.monotonic() < deadline, log.read_text()[-2000:]
            time.sleep(0.1)
        started = time.monotonic()
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=30)
        return time.monotonic() - started
    finally:
        process.kill()
        process.wait()


@pytest.mark.parametrize("command", ["scan", "watch"])
def test_a_stop_with_the_analysis_stuck_for_good_ends_the_process_after_the_drain(
    tmp_path: Path, fake_model: Path, one_face_video: Path, command: str
) -> None:
    site, marker, log = tmp_path / "site", tmp_path / "analysing", tmp_path / "out.log"
    site.mkdir()
    stuck_signal_plugin(site, marker)
    outbox = tmp_path / "events.sqlite"
    options = ["--model", str(fake_model), "--signal", "stuck", "--drain", str(DRAIN_S)]
    process = start([command, str(one_face_video), *options, "--events", str(outbox)], site, log)
    seconds = terminate_when(marker, process, log)
    text = log.read_text()
    assert process.returncode == FORCED_EXIT_STATUS, text[-2000:]
    assert seconds < DRAIN_S + COMMAND_EXIT_MARGIN_S + MARGIN_S, f"{seconds:.1f}s"
    [forced] = [line for line in text.splitlines() if "exiting without waiting" in line]
    assert "stuck_signal.py" in forced, forced  # the supervisor's log says what held it
    with EventLog(outbox) as events:
        recorded = [stored.event().type for stored in events.read_after(0, 100)]
    assert recorded[0] is EventType.STREAM_STARTED


def test_a_stop_with_a_send_stuck_for_good_ends_events_deliver(tmp_path: Path) -> None:
    site, marker, log = tmp_path / "site", tmp_path / "sending", tmp_path / "out.log"
    site.mkdir()
    stuck_sink_plugin(site, marker)
    outbox = tmp_path / "events.sqlite"
    with EventLog(outbox) as events:
        stuck = Event(str(uuid.uuid4()), EventType.ALERT_RAISED, datetime.now(UTC), "s", "r", 1)
        events.append(stuck)
    process = start(["events", "deliver", "--db", str(outbox), "--sink", "stuck:x"], site, log)
    seconds = terminate_when(marker, process, log)
    text = log.read_text()
    assert process.returncode == FORCED_EXIT_STATUS, text[-2000:]
    assert seconds < COMMAND_EXIT_MARGIN_S + MARGIN_S, f"{seconds:.1f}s"
    [forced] = [line for line in text.splitlines() if "exiting without waiting" in line]
    assert "stuck_sink.py" in forced, forced
    with EventLog(outbox) as events:  # not settled: it is sent again at the next delivery
        [state] = events.sinks()
        assert state.cursor == 0
