"""SIGTERM to a real `swapwatch serve` process with live-feed (`/v1/events`) clients: the feed
ends as soon as the last events are out, and the process exits promptly, whether the clients
are still connected or have gone."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from service import free_port

from swapwatch.events.outbox import StoredEvent
from swapwatch.events.sinks.live import FeedClosed, LiveFeed

DRAIN_TIMEOUT_S = 5.0
PROMPT_S = 3.0  # the exit itself (closing the engine, the interpreter) included; the feed's
# heartbeat, which was the only thing an idle live-feed handler woke for, is 15 s


def start_serve(tmp_path: Path, model: Path) -> tuple[subprocess.Popen[bytes], str, Path]:
    port = free_port()
    settings = {
        "http.port": port,
        "analysis.model": str(model),
        "events.path": str(tmp_path / "events.sqlite"),
        "limits.drain_timeout_s": DRAIN_TIMEOUT_S,
    }
    config = tmp_path / "swapwatch.toml"
    config.write_text("".join(f"{key} = {json.dumps(value)}\n" for key, value in settings.items()))
    log = tmp_path / "serve.log"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[1])}
    with log.open("ab") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "swapwatch", "serve", "--config", str(config)],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
        )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        assert process.poll() is None, log.read_text()[-2000:]
        try:
            with urllib.request.urlopen(base + "/readyz", timeout=5):
                return process, base, log
        except OSError:
            time.sleep(0.2)
    process.kill()
    raise AssertionError("the service never became ready")


def open_feed(base: str) -> socket.socket:
    """A live-feed client that has its answer's headers: the handler is waiting for events."""
    host, port = base.removeprefix("http://").split(":")
    client = socket.create_connection((host, int(port)), timeout=30)
    client.sendall(f"GET /v1/events HTTP/1.1\r\nHost: {host}:{port}\r\n\r\n".encode())
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = client.recv(4096)
        assert chunk, "the feed closed before answering"
        head += chunk
    assert head.startswith(b"HTTP/1.1 200"), head
    return client


def stop_and_time(process: subprocess.Popen[bytes]) -> float:
    started = time.monotonic()
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=60)
    finally:
        process.kill()
    return time.monotonic() - started


@pytest.mark.parametrize("client", ["connected", "gone"])
def test_sigterm_with_a_live_feed_client_exits_promptly(
    tmp_path: Path, fake_model: Path, client: str
) -> None:
    process, base, log = start_serve(tmp_path, fake_model)
    feeds = [open_feed(base) for _ in range(2)]
    # A stream whose source cannot be reached: it ends at the shutdown with a stream.ended.
    add = urllib.request.Request(
        base + "/v1/streams",
        data=json.dumps({"url": "tcp://127.0.0.1:1", "id": "door"}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(add, timeout=10) as reply:
        assert reply.status == 201
    try:
        if client == "gone":
            for feed in feeds:
                feed.close()
        time.sleep(0.5)  # the handlers wait for their next event
        seconds = stop_and_time(process)
        if client == "connected":
            feeds[0].settimeout(1.0)
            rest = b""
            while chunk := feeds[0].recv(4096):  # the server ends the feed; no timeout
                rest += chunk
            assert b"event: stream.ended" in rest, rest  # the last events come first
            assert rest.endswith(b"0\r\n\r\n"), rest  # then the chunked answer's proper end
    finally:
        for feed in feeds:
            feed.close()
    assert process.returncode == 0, log.read_text()[-2000:]
    assert "Traceback" not in log.read_text()
    assert seconds < PROMPT_S, f"{seconds:.1f}s to stop with a live-feed client {client}"


def test_a_closed_feed_gives_its_readers_what_came_before_then_ends() -> None:
    async def read_all(feed: LiveFeed) -> list[int]:
        with feed.subscribe() as early:
            for seq in (1, 2):
                feed.publish(StoredEvent(seq, f"e{seq}", "s", "stream.started", 0.0, "{}"))
            feed.close()
            got: list[int] = []
            with pytest.raises(FeedClosed):
                while True:
                    got.append((await asyncio.wait_for(early.get(), 1.0)).seq)
        with feed.subscribe() as late, pytest.raises(FeedClosed):
            await asyncio.wait_for(late.get(), 1.0)
        return got

    assert asyncio.run(read_all(LiveFeed())) == [1, 2]


def test_sigterm_with_a_request_stalled_mid_body_exits_promptly(
    tmp_path: Path, fake_model: Path
) -> None:
    # A client that announced a body and stopped sending it: its handler waits on the body, and
    # aiohttp would wait 60 s for it, then 60 s more, before the process could exit.
    process, base, log = start_serve(tmp_path, fake_model)
    host, port = base.removeprefix("http://").split(":")
    stalled = socket.create_connection((host, int(port)), timeout=30)
    try:
        stalled.sendall(
            f"POST /v1/streams HTTP/1.1\r\nHost: {host}:{port}\r\n"
            'Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{"url": '.encode()
        )
        time.sleep(0.5)  # the handler is reading the body
        seconds = stop_and_time(process)
    finally:
        stalled.close()
    assert process.returncode == 0, log.read_text()[-2000:]
    assert "Traceback" not in log.read_text()
    assert seconds < PROMPT_S + 2.0, f"{seconds:.1f}s to stop with a request stalled mid-body"
