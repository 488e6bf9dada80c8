"""SIGTERM to a real `swapwatch serve` process: it exits within `drain_timeout_s`, and the events
of the streams it stops are recorded and delivered first."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from publisher import start_publisher
from service import free_port
from stuck_plugins import stuck_signal_plugin

from swapwatch.cli.hard_stop import FORCED_EXIT_STATUS, JOIN_LIMIT_S
from swapwatch.events.model import EventType
from swapwatch.events.outbox import EventLog

pytestmark = pytest.mark.network

DRAIN_TIMEOUT_S = 5.0
MARGIN_S = 2.0  # the process's own exit: closing the engine, the interpreter


def write_config(tmp_path: Path, model: Path, **extra: object) -> tuple[Path, int]:
    port = free_port()
    low = 20000 + port % 20000
    settings: dict[str, object] = {
        "http.port": port,
        "analysis.model": str(model),
        "events.path": str(tmp_path / "events.sqlite"),
        "events.sinks": [f"jsonl:{tmp_path / 'delivered.jsonl'}"],
        "ingest.rtmp.ports": [low, low + 20],
        "limits.drain_timeout_s": DRAIN_TIMEOUT_S,
        **extra,
    }
    lines = [f"{key} = {json.dumps(value)}" for key, value in settings.items()]
    path = tmp_path / "swapwatch.toml"
    path.write_text("\n".join(lines) + "\n")
    return path, port


def serve(config: Path, log: Path, extra_path: Path | None = None) -> subprocess.Popen[bytes]:
    paths = [str(Path(__file__).parents[1]), *([str(extra_path)] if extra_path else [])]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(paths)}
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "swapwatch", "serve", "--config", str(config)],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
        )


def post(base: str, body: dict[str, object]) -> dict[str, object]:
    request = urllib.request.Request(
        base + "/v1/streams",
        data=json.dumps(body).encode(),
        method="POST",
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as reply:
        return dict(json.loads(reply.read()))


def get(base: str, path: str) -> dict[str, object]:
    with urllib.request.urlopen(base + path, timeout=10) as reply:
        return dict(json.loads(reply.read()))


def wait_ready(base: str, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        assert process.poll() is None, log.read_text()[-2000:]
        try:
            get(base, "/readyz")
            return
        except OSError:
            time.sleep(0.2)
    raise AssertionError("the service never became ready")


def stop_and_time(process: subprocess.Popen[bytes]) -> float:
    started = time.monotonic()
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.send_signal(signal.SIGABRT)
        process.wait()
        raise
    finally:
        process.kill()
    return time.monotonic() - started


def ended_streams(tmp_path: Path) -> tuple[dict[str, str], set[str]]:
    """(stream -> reason of its recorded stream.ended, ids of the events delivered)."""
    with EventLog(tmp_path / "events.sqlite") as log:
        events = [stored.event() for stored in log.read_after(0, 1000)]
    ended = {
        e.stream: str((e.detail or {}).get("reason"))
        for e in events
        if e.type is EventType.STREAM_ENDED
    }
    lines = (tmp_path / "delivered.jsonl").read_text().splitlines()
    return ended, {json.loads(line)["id"] for line in lines} & {e.id for e in events}


def test_sigterm_with_idle_push_ingests_exits_quickly_and_records_their_end(
    tmp_path: Path, fake_model: Path
) -> None:
    """Nobody publishes: FFmpeg's listeners wait in accept(), which used to hold the shutdown
    for twice the read timeout (22 s with the defaults)."""
    config, port = write_config(tmp_path, fake_model)
    log = tmp_path / "serve.log"
    process = serve(config, log)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_ready(base, process, log)
        for name in ("door", "desk"):
            post(base, {"ingest": "rtmp", "id": name})
        time.sleep(1.0)  # into the listen
    finally:
        seconds = stop_and_time(process)
    assert process.returncode == 0, log.read_text()[-2000:]
    assert seconds < 2 * MARGIN_S, f"{seconds:.1f}s to stop two idle ingests"
    ended, delivered = ended_streams(tmp_path)
    assert ended == {"door": "shutdown", "desk": "shutdown"}
    assert len(delivered) == 2  # both stream.ended events reached the sink before exit


def test_sigterm_with_a_frozen_pull_exits_within_the_drain_timeout(
    tmp_path: Path, fake_model: Path
) -> None:
    """A source that is connected but silent (its read blocks for read_timeout_s, here longer
    than the drain timeout) still lets the service stop within drain_timeout_s."""
    camera = free_port()
    publisher = start_publisher(f"tcp://127.0.0.1:{camera}?listen=1", 2.0, "mpegts", hold=60.0)
    config, port = write_config(tmp_path, fake_model, **{"ingest.read_timeout_s": 60.0})
    log = tmp_path / "serve.log"
    process = serve(config, log)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_ready(base, process, log)
        post(base, {"url": f"tcp://127.0.0.1:{camera}", "id": "frozen"})
        deadline = time.monotonic() + 30
        while get(base, "/v1/streams/frozen")["frames_in"] == 0:
            assert time.monotonic() < deadline, "no frame arrived"
            time.sleep(0.2)
        time.sleep(3.0)  # the publisher has gone silent
        assert get(base, "/v1/streams/frozen")["state"] == "running"
    finally:
        seconds = stop_and_time(process)
        publisher.kill()
        publisher.communicate()
    assert process.returncode == 0, log.read_text()[-2000:]
    assert seconds < DRAIN_TIMEOUT_S + MARGIN_S, f"{seconds:.1f}s to stop a frozen pull"
    ended, delivered = ended_streams(tmp_path)
    assert ended == {"frozen": "shutdown"}
    assert delivered  # the sink was given what was left of the drain time


def test_sigterm_with_an_analysis_stuck_for_good_still_ends_the_process(
    tmp_path: Path, fake_model: Path, one_face_video: Path
) -> None:
    """Python joins a stuck thread at exit for ever: the stop records the stream's end in the
    outbox, then the process is ended soon after the drain, naming the stuck thread."""
    site, marker = tmp_path / "site", tmp_path / "analysing"
    site.mkdir()
    stuck_signal_plugin(site, marker)
    config, port = write_config(
        tmp_path,
        fake_model,
        **{"analysis.signals": ["stuck"], "ingest.pull.allow_file_urls": True},
    )
    log = tmp_path / "serve.log"
    process = serve(config, log, extra_path=site)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_ready(base, process, log)
        post(base, {"url": one_face_video.as_uri(), "id": "stuck"})
        deadline = time.monotonic() + 60
        while not marker.exists():
            assert time.monotonic() < deadline, log.read_text()[-2000:]
            time.sleep(0.2)
    finally:
        seconds = stop_and_time(process)
    text = log.read_text()
    assert process.returncode == FORCED_EXIT_STATUS, text[-2000:]
    # The drain, a second for the analyzer's close, the exit's joins, and the usual margin.
    assert seconds < DRAIN_TIMEOUT_S + 1.0 + JOIN_LIMIT_S + MARGIN_S, f"{seconds:.1f}s"
    assert "stream stuck: its analysis did not finish" in text
    [forced] = [line for line in text.splitlines() if "exiting without waiting" in line]
    assert "s-stuck" in forced and "stuck_signal.py" in forced, forced
    ended, _ = ended_streams(tmp_path)
    assert ended == {"stuck": "shutdown"}  # in the outbox, for the sinks now or at the next start
