"""Webhook signatures: HMAC-SHA256 over "<timestamp>.<body>", sent in one header.

    Swapwatch-Signature: t=1767225600,v1=<64 hex digits>

The timestamp is signed with the body, so a captured request cannot be replayed later than the
receiver's tolerance window; several `v1=` entries may appear while a secret is being rotated.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Iterable

from swapwatch.events.errors import SignatureError

SIGNATURE_HEADER = "Swapwatch-Signature"
SCHEME = "v1"
DEFAULT_TOLERANCE_S = 300.0


def signature(secret: str | bytes, timestamp: int, body: bytes) -> str:
    """Hex HMAC-SHA256 of f"{timestamp}.{body}"."""
    key = secret.encode() if isinstance(secret, str) else secret
    return hmac.new(key, str(timestamp).encode() + b"." + body, hashlib.sha256).hexdigest()


def sign(
    secrets: Iterable[str | bytes], body: bytes, timestamp: int | None = None
) -> tuple[str, int]:
    """The header value for `body` signed with each secret, and the timestamp used."""
    t = int(time.time()) if timestamp is None else timestamp
    parts = [f"t={t}", *(f"{SCHEME}={signature(s, t, body)}" for s in secrets)]
    return ",".join(parts), t


def parse_header(header: str) -> tuple[int, list[str]]:
    """`t=...,v1=...[,v1=...]` -> (timestamp, signatures)."""
    timestamp: int | None = None
    found: list[str] = []
    for item in header.split(","):
        key, sep, value = item.strip().partition("=")
        if not sep:
            continue
        if key == "t":
            try:
                timestamp = int(value)
            except ValueError:
                raise SignatureError(f"signature timestamp is not an integer: {value!r}") from None
        elif key == SCHEME:
            found.append(value)
    if timestamp is None:
        raise SignatureError("signature header has no timestamp (t=...)")
    if not found:
        raise SignatureError(f"signature header has no {SCHEME}= signature")
    return timestamp, found


def verify(
    secret: str | bytes,
    header: str,
    body: bytes,
    tolerance: float = DEFAULT_TOLERANCE_S,
    now: float | None = None,
) -> int:
    """Check a `Swapwatch-Signature` header against the raw body; return its timestamp.

    Raises SignatureError when the header is malformed, older or newer than `tolerance` seconds,
    or no signature matches. Compare against the raw bytes received, before any JSON parsing.
    """
    timestamp, candidates = parse_header(header)
    current = time.time() if now is None else now
    if abs(current - timestamp) > tolerance:
        raise SignatureError(
            f"signature timestamp {timestamp} is {current - timestamp:+.0f}s away from now "
            f"(tolerance {tolerance:.0f}s)"
        )
    expected = signature(secret, timestamp, body)
    # compare_digest against every candidate, without stopping early, takes the same time
    # whichever one matches.
    matched = False
    for candidate in candidates:
        matched |= hmac.compare_digest(expected, candidate)
    if not matched:
        raise SignatureError("signature does not match the body")
    return timestamp
