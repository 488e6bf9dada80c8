"""A real webhook receiver on 127.0.0.1 (the standard library's HTTP server, in a thread).

It can be down (not listening yet), slow (answers after a delay), failing (answers a status) or
up, and it checks every signature as a receiver would.
"""

from __future__ import annotations

import socket
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from swapwatch.events.errors import SignatureError
from swapwatch.events.signing import SIGNATURE_HEADER, verify
from swapwatch.events.sinks.webhook import EVENT_ID_HEADER


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass(frozen=True)
class Delivery:
    event_id: str
    body: bytes
    signature_ok: bool
    at: float  # time.time() when it arrived


class Receiver:
    def __init__(self, secret: str | None = None, port: int | None = None) -> None:
        self.secret = secret
        self.port = port or free_port()
        self.delay = 0.0  # seconds before answering
        self.status = 200
        self.redirect: str | None = None  # answer each POST with a 302 to this path
        self.deliveries: list[Delivery] = []
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    def ids(self) -> list[str]:
        with self._lock:
            return [d.event_id for d in self.deliveries]

    def start(self) -> Receiver:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                if receiver.delay:
                    time.sleep(receiver.delay)
                if receiver.redirect is not None:
                    self.send_response(302)
                    self.send_header("Location", receiver.redirect)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                status = receiver.status
                if status == 200:
                    ok = True
                    if receiver.secret is not None:
                        try:
                            verify(receiver.secret, self.headers.get(SIGNATURE_HEADER, ""), body)
                        except SignatureError:
                            ok = False
                    with receiver._lock:
                        receiver.deliveries.append(
                            Delivery(self.headers.get(EVENT_ID_HEADER, ""), body, ok, time.time())
                        )
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def do_GET(self) -> None:  # a page, as where a redirect usually leads
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def wait_for(self, ids: set[str], timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if ids <= set(self.ids()):
                return True
            time.sleep(0.02)
        return False
