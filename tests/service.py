"""A real `swapwatch serve` in a background thread of the test process, and HTTP helpers."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from swapwatch.cli.serve import serve
from swapwatch.server.config import ServiceConfig


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Reply:
    status: int
    body: Any
    headers: dict[str, str]


@dataclass
class RunningService:
    config: ServiceConfig
    base: str

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        token: str | None = None,
        headers: dict[str, str] | None = None,
        raw: bytes | None = None,
    ) -> Reply:
        data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
        request = urllib.request.Request(self.base + path, data=data, method=method)
        request.add_header("Content-Type", "application/json")
        if token:
            request.add_header("Authorization", f"Bearer {token}")
        for key, value in (headers or {}).items():
            request.add_header(key, value)
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                payload = response.read()
                status, got = response.status, dict(response.headers)
        except urllib.error.HTTPError as error:
            payload, status, got = error.read(), error.code, dict(error.headers)
        text = payload.decode()
        try:
            parsed: Any = json.loads(text) if text else None
        except ValueError:
            parsed = text
        return Reply(status, parsed, got)

    def wait_for(
        self,
        predicate: Callable[[dict[str, Any]], bool],
        stream: str,
        timeout: float = 30.0,
        token: str | None = None,
    ) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        last: Any = None
        while time.monotonic() < deadline:
            reply = self.request("GET", f"/v1/streams/{stream}", token=token)
            last = reply.body
            if reply.status == 200 and predicate(last):
                return dict(last)
            time.sleep(0.2)
        raise AssertionError(f"stream {stream} never reached the expected status; last: {last}")


@contextmanager
def running_service(config: ServiceConfig) -> Iterator[RunningService]:
    """Start the service on a free port; stop it (gracefully) at the end."""
    if config.http.port == 8080:
        config = config.model_copy(
            update={"http": config.http.model_copy(update={"port": free_port()})}
        )
    if config.events.path is None:  # never the user's own outbox
        outbox = Path(tempfile.mkdtemp()) / "events.sqlite"
        config = config.model_copy(
            update={"events": config.events.model_copy(update={"path": outbox})}
        )
    loop = asyncio.new_event_loop()
    ready = threading.Event()
    started = asyncio.Event()
    stop_requested: dict[str, Callable[[], None]] = {}
    errors: list[BaseException] = []

    async def main() -> None:
        task = asyncio.create_task(serve(config, started))
        await started.wait()
        stop_requested["stop"] = lambda: task.cancel()
        ready.set()
        with suppress(asyncio.CancelledError):
            await task

    def run() -> None:
        try:
            loop.run_until_complete(main())
        except BaseException as exc:  # surfaced in the test thread
            errors.append(exc)
            ready.set()
        finally:
            loop.close()

    thread = threading.Thread(target=run, name="service", daemon=True)
    thread.start()
    if not ready.wait(60) or errors:
        raise RuntimeError(f"service did not start: {errors}")
    try:
        yield RunningService(config, f"http://127.0.0.1:{config.http.port}")
    finally:
        loop.call_soon_threadsafe(stop_requested["stop"])
        thread.join(30)


def serve_process(config_file: Path, log: Path) -> subprocess.Popen[bytes]:
    """`swapwatch serve --config FILE` as its own process (the test can SIGKILL it), its output
    appended to `log`."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "swapwatch", "serve", "--config", str(config_file)],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
        )


def wait_until_ready(base: str, process: subprocess.Popen[bytes], timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, "the service exited"
        try:
            with urllib.request.urlopen(base + "/readyz", timeout=2) as reply:
                if reply.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.2)
    raise AssertionError("the service never became ready")
