"""Standard Webhooks signatures (standardwebhooks.com), beside swapwatch's own header.

    webhook-id: <event id>            the idempotency key: the same on every redelivery
    webhook-timestamp: <unix seconds> when this attempt was signed
    webhook-signature: v1,<base64>    HMAC-SHA256 over "<id>.<timestamp>.<raw body>"

The key is the base64 after `whsec_` in the secret, as the scheme's libraries read it, so a
receiver verifies with one call of a maintained library (`standardwebhooks`, `svix`) in any
language instead of code of its own.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets

SECRET_PREFIX = "whsec_"
MIN_KEY_BYTES = 24  # the scheme asks for 24 to 64 random bytes
MAX_KEY_BYTES = 64
ID_HEADER = "webhook-id"
TIMESTAMP_HEADER = "webhook-timestamp"
SIGNATURE_HEADER = "webhook-signature"


def decode_secret(secret: str) -> bytes:
    """The HMAC key of a `whsec_<base64>` secret; ValueError naming what is wrong otherwise."""
    if not secret.startswith(SECRET_PREFIX):
        raise ValueError(
            f"a Standard Webhooks secret starts with {SECRET_PREFIX!r} followed by base64 "
            "(make one with `swapwatch webhook new-secret`)"
        )
    try:
        key = base64.b64decode(secret[len(SECRET_PREFIX) :], validate=True)
    except binascii.Error:
        raise ValueError(f"the part after {SECRET_PREFIX!r} is not valid base64") from None
    if not MIN_KEY_BYTES <= len(key) <= MAX_KEY_BYTES:
        raise ValueError(
            f"a Standard Webhooks key holds {MIN_KEY_BYTES}-{MAX_KEY_BYTES} bytes, "
            f"this one {len(key)}"
        )
    return key


def new_secret(key_bytes: int = 32) -> str:
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(key_bytes)).decode()


def signed_headers(key: bytes, message_id: str, body: bytes, timestamp: int) -> dict[str, str]:
    signed = f"{message_id}.{timestamp}.".encode() + body
    digest = hmac.new(key, signed, hashlib.sha256).digest()
    return {
        ID_HEADER: message_id,
        TIMESTAMP_HEADER: str(timestamp),
        SIGNATURE_HEADER: "v1," + base64.b64encode(digest).decode(),
    }
