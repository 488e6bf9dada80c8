"""HTTP/1.1 over a plain socket, so that a fuzz test can send what `urllib` refuses to (any
header bytes, any body with any declared type) and read what comes back, streams included."""

from __future__ import annotations

import json
import socket
from dataclasses import dataclass
from typing import Any


@dataclass
class RawReply:
    status: int  # 0: the server closed the connection without an answer
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


def exchange(
    base: str,
    method: str,
    path: str,
    body: bytes = b"",
    headers: list[tuple[bytes, bytes]] | None = None,
    timeout: float = 20.0,
    stream_for: float | None = None,
) -> RawReply:
    """One request on its own connection. `stream_for`: the reply is a stream that does not end
    (SSE); read what arrives in that many seconds after the headers, then hang up."""
    host, port = base.removeprefix("http://").split(":")
    lines = [f"{method} {path} HTTP/1.1".encode(), f"Host: {host}:{port}".encode()]
    given = {name.lower() for name, _ in headers or []}
    if b"content-length" not in given and b"transfer-encoding" not in given:
        lines.append(f"Content-Length: {len(body)}".encode())
    lines.append(b"Connection: close")
    lines += [name + b": " + value for name, value in headers or []]
    request = b"\r\n".join(lines) + b"\r\n\r\n" + body
    with socket.create_connection((host, int(port)), timeout=timeout) as connection:
        connection.sendall(request)
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = connection.recv(65536)
            if not chunk:
                break
            data += chunk
        if stream_for is not None:
            connection.settimeout(stream_for)
        try:
            while chunk := connection.recv(65536):
                data += chunk
        except TimeoutError:
            if stream_for is None:
                raise
        except ConnectionResetError:
            pass
    return parse_reply(data)


def parse_reply(data: bytes) -> RawReply:
    if not data:
        return RawReply(0, {}, b"")
    head, _, body = data.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    status = int(status_line.split(" ", 2)[1])
    headers = {}
    for line in header_lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    if headers.get("transfer-encoding") == "chunked":
        body = dechunk(body)
    return RawReply(status, headers, body)


def dechunk(body: bytes) -> bytes:
    out = b""
    while body:
        size_line, _, rest = body.partition(b"\r\n")
        try:
            size = int(size_line.split(b";")[0], 16)
        except ValueError:
            break  # a stream cut where we hung up
        if size == 0:
            break
        out += rest[:size]
        body = rest[size + 2 :]
    return out
