"""A real Redis (Debian's `redis-server`) on a free loopback port, in its own process: the
external store of Ray's GCS fault tolerance in tests/test_cluster_head.py."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from pathlib import Path

from receivers import free_port

NOT_SAVED = ("--save", "", "--appendonly", "no")  # the test's cluster lives as long as it does


class RedisServer:
    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self, timeout: float = 10.0) -> RedisServer:
        binary = shutil.which("redis-server") or "/usr/bin/redis-server"
        self.workdir.mkdir(parents=True, exist_ok=True)
        with (self.workdir / "redis.log").open("ab") as log:
            self.process = subprocess.Popen(
                [binary, "--port", str(self.port), "--bind", "127.0.0.1", *NOT_SAVED],
                cwd=self.workdir,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if self.command("PING") == "PONG":
                    return self
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"redis-server did not answer on {self.address} in {timeout} s")

    def command(self, *words: str) -> str:
        """One inline command; its simple-string or integer reply."""
        with socket.create_connection(("127.0.0.1", self.port), timeout=5) as conn:
            conn.sendall((" ".join(words) + "\r\n").encode())
            reply = conn.makefile("rb").readline().decode().rstrip("\r\n")
        if reply.startswith("-"):
            raise RuntimeError(f"redis: {reply[1:]}")
        return reply[1:]

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=10)
