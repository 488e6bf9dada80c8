"""Webhook sink: one signed HTTP POST per event (aiohttp client, kept-alive connections).

aiohttp rather than httpx: it is one dependency for the client here, the SSE feed handler and the
HTTP service, and it is asyncio-native with a mature connection pool.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Literal

import aiohttp
from pydantic import BaseModel, ConfigDict, Field

from swapwatch.events import standard_webhooks
from swapwatch.events.errors import SinkConfigError, SinkError, SinkRejected, SinkUnavailable
from swapwatch.events.outbox import StoredEvent
from swapwatch.events.signing import SIGNATURE_HEADER, sign
from swapwatch.events.sinks.base import SinkSpec, resolve_secret, sink_options

log = logging.getLogger(__name__)

EVENT_ID_HEADER = "Swapwatch-Event-Id"
EVENT_TYPE_HEADER = "Swapwatch-Event-Type"
RETRYABLE_STATUS = frozenset({408, 409, 425, 429})  # plus every 5xx
# Answers about the URL or the credentials, which every event would get alike: the sink's
# fault, so they wait for it to be mended rather than each being dead-lettered in turn.
ENDPOINT_STATUS = {
    401: "check the sink's secret or credentials",
    403: "check the sink's secret or credentials",
    404: "check the sink's URL",
    405: "check the sink's URL",
    410: "check the sink's URL",
}


class WebhookOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    secret: str | None = Field(
        default=None, description="HMAC key (or env:NAME / file:PATH); unsigned when absent"
    )
    signature_scheme: Literal["swapwatch", "standard-webhooks", "both"] = Field(
        default="swapwatch",
        description="Swapwatch-Signature, the Standard Webhooks headers (secret whsec_<base64>), "
        "or both",
    )
    timeout: float = Field(
        default=10.0, gt=0, le=300, description="seconds for one request, in all"
    )
    connect_timeout: float = Field(default=3.0, gt=0, le=60, description="seconds to connect")


class WebhookSink:
    """POSTs each event's JSON body with `Swapwatch-Event-Id`, `Swapwatch-Event-Type` and the
    signature headers of the chosen scheme (`Swapwatch-Signature`, Standard Webhooks', or both).

    2xx is delivered; 408/409/425/429, 5xx, timeouts and connection errors are retried. A
    receiver that cannot be connected to, redirects (3xx: not followed, as a redirected POST
    loses its body), or answers 401/403/404/405/410 (its URL or credentials are wrong) is
    unavailable: those tries are not counted against the event, which waits for the sink to be
    mended (up to `max_age`). Any other status is a refusal that no retry fixes (dead letter).
    """

    def __init__(self, name: str, url: str, options: WebhookOptions) -> None:
        if not url.startswith(("http://", "https://")):
            raise SinkConfigError(f"sink {name}: webhook target must be an http(s) URL")
        self.name = name
        self.url = url
        secret = None if options.secret is None else resolve_secret(options.secret)
        scheme = options.signature_scheme
        self._secret = secret if scheme in ("swapwatch", "both") else None
        self._standard_key: bytes | None = None
        if scheme in ("standard-webhooks", "both"):
            if secret is None:
                raise SinkConfigError(f"sink {name}: signature_scheme={scheme} needs a secret")
            try:
                self._standard_key = standard_webhooks.decode_secret(secret)
            except ValueError as exc:
                raise SinkConfigError(f"sink {name}: {exc}") from None
        self._timeout = aiohttp.ClientTimeout(
            total=options.timeout, sock_connect=options.connect_timeout
        )
        self._session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=self._timeout)

    async def send(self, event: StoredEvent) -> None:
        if self._session is None:
            await self.start()
        assert self._session is not None
        body = event.body.encode()
        headers = {
            "Content-Type": "application/json",
            EVENT_ID_HEADER: event.id,
            EVENT_TYPE_HEADER: event.type,
        }
        now = int(time.time())
        if self._secret is not None:
            headers[SIGNATURE_HEADER], _ = sign([self._secret], body, now)
        if self._standard_key is not None:
            headers |= standard_webhooks.signed_headers(self._standard_key, event.id, body, now)
        try:
            post = self._session.post(self.url, data=body, headers=headers, allow_redirects=False)
            async with post as response:
                await response.read()  # drain, so the connection is reused
                status = response.status
        except (aiohttp.ClientConnectorError, aiohttp.ConnectionTimeoutError) as exc:
            # No connection was made: the request never reached the receiver.
            raise SinkUnavailable(f"POST failed: {type(exc).__name__}: {exc}") from exc
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise SinkError(f"POST failed: {type(exc).__name__}: {exc}") from exc
        if 200 <= status < 300:
            return
        if 300 <= status < 400:
            raise SinkUnavailable(
                f"receiver answered HTTP {status}, a redirect: set the sink's URL to where it "
                "points (a redirected POST loses its body)"
            )
        if status in ENDPOINT_STATUS:
            raise SinkUnavailable(f"receiver answered HTTP {status}: {ENDPOINT_STATUS[status]}")
        if status >= 500 or status in RETRYABLE_STATUS:
            raise SinkError(f"receiver answered HTTP {status}")
        raise SinkRejected(f"receiver refused the event: HTTP {status}")

    async def aclose(self) -> None:
        if self._session is not None:
            session, self._session = self._session, None
            await session.close()
            await asyncio.sleep(0)  # let aiohttp close its transports before the loop ends


def create(spec: SinkSpec) -> WebhookSink:
    return WebhookSink(spec.name, spec.target, sink_options(WebhookOptions, spec))
