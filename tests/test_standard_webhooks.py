"""The webhook sink's Standard Webhooks headers, verified by the scheme's own library
(`standardwebhooks` from PyPI) in a real HTTP receiver, through the outbox and dispatcher."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest
from aiohttp import web
from standardwebhooks import Webhook, WebhookVerificationError

from swapwatch.events import (
    Dispatcher,
    Event,
    EventLog,
    EventType,
    RetryPolicy,
    Route,
    SinkConfigError,
    parse_sink,
)
from swapwatch.events.signing import SIGNATURE_HEADER, verify
from swapwatch.events.sinks.factory import create_sink
from swapwatch.events.standard_webhooks import new_secret

FAST_RETRY = RetryPolicy(backoff=0.05, max_backoff=0.2, max_attempts=50, send_timeout=5.0)


@dataclass(frozen=True)
class Received:
    headers: dict[str, str]
    body: bytes


class Receiver:
    """Answers 503 to the first `fail_first` requests, then 200; keeps what it got."""

    def __init__(self, fail_first: int = 0) -> None:
        self.fail_first = fail_first
        self.received: list[Received] = []

    async def handle(self, request: web.Request) -> web.Response:
        self.received.append(Received(dict(request.headers), await request.read()))
        return web.Response(status=503 if len(self.received) <= self.fail_first else 200)


async def deliver(options: str, receiver: Receiver, tmp_path: Path, count: int = 3) -> list[str]:
    app = web.Application()
    app.router.add_post("/hook", receiver.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    outbox = EventLog(tmp_path / "o.sqlite")
    try:
        events = [
            Event(str(uuid.uuid4()), EventType.ALERT_RAISED, datetime.now(UTC), "s", "r", i)
            for i in range(count)
        ]
        for e in events:
            outbox.append(e)
        ids = [e.id for e in events]
        sink = create_sink(parse_sink(f"webhook:http://127.0.0.1:{port}/hook;{options}"))
        async with Dispatcher(outbox, [Route(sink, FAST_RETRY)]) as dispatcher:
            assert await dispatcher.wait_idle(timeout=20)
        return ids
    finally:
        outbox.close()
        await runner.cleanup()


def test_every_delivery_verifies_with_the_standard_webhooks_library(tmp_path: Path) -> None:
    secret = new_secret()
    receiver = Receiver(fail_first=2)  # two failed tries: redeliveries are signed again
    ids = asyncio.run(
        deliver(f"secret={secret};signature_scheme=standard-webhooks", receiver, tmp_path)
    )
    hook = Webhook(secret)
    assert len(receiver.received) == len(ids) + 2
    for got in receiver.received:
        hook.verify(got.body, got.headers)  # raises when a signature does not match
        assert SIGNATURE_HEADER not in got.headers  # only the scheme asked for
    # webhook-id is the event id, the same on a redelivery, so receivers drop repeats by it.
    assert [g.headers["webhook-id"] for g in receiver.received[2:]] == ids
    assert receiver.received[0].headers["webhook-id"] == ids[0]
    with pytest.raises(WebhookVerificationError):
        hook.verify(receiver.received[-1].body + b" ", receiver.received[-1].headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(new_secret()).verify(receiver.received[-1].body, receiver.received[-1].headers)


def test_both_schemes_side_by_side(tmp_path: Path) -> None:
    secret = new_secret()
    receiver = Receiver()
    asyncio.run(deliver(f"secret={secret};signature_scheme=both", receiver, tmp_path, count=1))
    (got,) = receiver.received
    Webhook(secret).verify(got.body, got.headers)
    verify(secret, got.headers[SIGNATURE_HEADER], got.body)
    assert got.headers["webhook-timestamp"] == got.headers[SIGNATURE_HEADER].split(",")[0][2:]


def test_the_default_stays_swapwatch_signature_only(tmp_path: Path) -> None:
    receiver = Receiver()
    asyncio.run(deliver("secret=plain-secret", receiver, tmp_path, count=1))
    (got,) = receiver.received
    verify("plain-secret", got.headers[SIGNATURE_HEADER], got.body)
    assert not {"webhook-id", "webhook-signature"} & {k.lower() for k in got.headers}


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ("signature_scheme=standard-webhooks", "needs a secret"),
        ("signature_scheme=standard-webhooks;secret=plain", "starts with 'whsec_'"),
        ("signature_scheme=both;secret=whsec_not*base64", "not valid base64"),
        ("signature_scheme=both;secret=whsec_c2hvcnQ=", "24-64 bytes, this one 5"),
        ("signature_scheme=svix;secret=whsec_x", "signature_scheme"),
    ],
)
def test_bad_standard_webhooks_settings_are_refused_by_name(options: str, message: str) -> None:
    with pytest.raises(SinkConfigError, match=message):
        create_sink(parse_sink(f"webhook:http://127.0.0.1:9/hook;{options}"))


def test_new_secret_command_prints_a_usable_secret() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "swapwatch", "webhook", "new-secret"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    secret = done.stdout.strip()
    assert secret.startswith("whsec_") and len(done.stdout.splitlines()) == 1
    create_sink(
        parse_sink(f"webhook:http://127.0.0.1:9/hook;signature_scheme=both;secret={secret}")
    )
    assert secret != new_secret()
