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


def terminate_when_stuck(
    processes: list[tuple[subprocess.Popen[bytes], Path, Path]],
) -> list[float]:
    """Once each process's marker exists (its plugin is stuck), SIGTERM it; the seconds each
    took to end from its signal. The processes run side by side, as a supervisor's would."""
    deadline = time.monotonic() + STARTUP_S
    signalled: dict[int, float] = {}
    ended: dict[int, float] = {}
    try:
        while len(ended) < len(processes):
            assert time.monotonic() < deadline + 30, "a process outlived its hard stop"
            for n, (process, marker, log) in enumerate(processes):
                if n not in signalled:
                    if marker.exists():
                        process.send_signal(signal.SIGTERM)
                        signalled[n] = time.monotonic()
                    else:
                        assert process.poll() is None, log.read_text()[-2000:]
                        assert time.monotonic() < deadline, log.read_text()[-2000:]
                elif n not in ended and process.poll() is not None:
                    ended[n] = time.monotonic()
            time.sleep(0.05)
    finally:
        for process, _, _ in processes:
            process.kill()
            process.wait()
    return [ended[n] - signalled[n] for n in range(len(processes))]


def test_a_stop_with_the_analysis_stuck_for_good_ends_scan_and_watch_after_the_drain(
    tmp_path: Path, fake_model: Path, one_face_video: Path
) -> None:
    options = ["--model", str(fake_model), "--signal", "stuck", "--drain", str(DRAIN_S)]
    runs = []
    for command in ("scan", "watch"):
        site, marker = tmp_path / f"site-{command}", tmp_path / f"analysing-{command}"
        site.mkdir()
        stuck_signal_plugin(site, marker)
        log, outbox = tmp_path / f"{command}.log", tmp_path / f"{command}.sqlite"
        args = [command, str(one_face_video), *options, "--events", str(outbox)]
        runs.append((start(args, site, log), marker, log))
    seconds = terminate_when_stuck(runs)
    for (process, _, log), took, command in zip(runs, seconds, ("scan", "watch"), strict=True):
        text = log.read_text()
        assert process.returncode == FORCED_EXIT_STATUS, text[-2000:]
        assert took < DRAIN_S + COMMAND_EXIT_MARGIN_S + MARGIN_S, f"{command}: {took:.1f}s"
        [forced] = [line for line in text.splitlines() if "exiting without waiting" in line]
        assert "stuck_signal.py" in forced, forced  # the supervisor's log says what held it
        with EventLog(tmp_path / f"{command}.sqlite") as events:
            recorded = [stored.event().type for stored in events.read_after(0, 100)]
        assert recorded[0] is EventType.STREAM_STARTED  # what it recorded stays


def test_a_stop_with_a_send_stuck_for_good_ends_events_deliver(tmp_path: Path) -> None:
    site, marker, log = tmp_path / "site", tmp_path / "sending", tmp_path / "out.log"
    site.mkdir()
    stuck_sink_plugin(site, marker)
    outbox = tmp_path / "events.sqlite"
    with EventLog(outbox) as events:
        stuck = Event(str(uuid.uuid4()), EventType.ALERT_RAISED, datetime.now(UTC), "s", "r", 1)
        events.append(stuck)
    process = start(["events", "deliver", "--db", str(outbox), "--sink", "stuck:x"], site, log)
    [seconds] = terminate_when_stuck([(process, marker, log)])
    text = log.read_text()
    assert process.returncode == FORCED_EXIT_STATUS, text[-2000:]
    assert seconds < COMMAND_EXIT_MARGIN_S + MARGIN_S, f"{seconds:.1f}s"
    [forced] = [line for line in text.splitlines() if "exiting without waiting" in line]
    assert "stuck_sink.py" in forced, forced
    with EventLog(outbox) as events:  # not settled: it is sent again at the next delivery
        [state] = events.sinks()
        assert state.cursor == 0
