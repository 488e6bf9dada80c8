"""NATS sink (nats-py, extra `nats`): JetStream publish with an ack by default.

`Nats-Msg-Id` carries the event id, so JetStream drops repeats inside its duplicate window.
While the client is reconnecting, and while no JetStream stream takes the subject (every event
would get the same answer), tries raise SinkUnavailable: the outage is the sink's, and the events
wait for it (up to `max_age`) instead of being dead-lettered one by one.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from swapwatch.events.errors import SinkConfigError, SinkError, SinkUnavailable
from swapwatch.events.outbox import StoredEvent
from swapwatch.events.sinks.base import SinkSpec, check_template, sink_options


class NatsOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    subject: str = Field(
        default="swapwatch.events.{type}", min_length=1, description="{type} expands"
    )
    jetstream: bool = Field(
        default=True, description="wait for a JetStream ack (else core NATS + flush)"
    )
    timeout: float = Field(default=10.0, gt=0, le=300, description="seconds for an ack or a flush")

    @field_validator("subject")
    @classmethod
    def _expands(cls, subject: str) -> str:
        return check_template(subject, "type")


def _nats() -> Any:
    try:
        import nats
        import nats.errors
        import nats.js.errors
    except ImportError:
        raise SinkConfigError(
            "the nats sink needs nats-py: pip install 'swapwatch[nats]'"
        ) from None
    return nats


class NatsSink:
    def __init__(self, name: str, servers: str, options: NatsOptions) -> None:
        self.name = name
        self.servers = [s for s in servers.split(",") if s] or ["nats://127.0.0.1:4222"]
        self.options = options
        self._nats = _nats()
        self._client: Any = None

    async def start(self) -> None:
        if self._client is not None:
            return
        try:
            self._client = await self._nats.connect(
                servers=self.servers,
                connect_timeout=self.options.timeout,
                max_reconnect_attempts=-1,
            )
        except (self._nats.errors.Error, OSError) as exc:
            raise SinkUnavailable(f"cannot reach NATS at {self.servers}: {exc}") from exc

    async def send(self, event: StoredEvent) -> None:
        await self.start()
        client, errors = self._client, self._nats.errors
        if not client.is_connected:
            # nats-py would buffer the message and wait; the outbox is our buffer.
            raise SinkUnavailable(f"not connected to NATS at {self.servers} (reconnecting)")
        subject = self.options.subject.format(type=event.type)
        body = event.body.encode()
        try:
            if self.options.jetstream:
                await client.jetstream().publish(
                    subject, body, timeout=self.options.timeout, headers={"Nats-Msg-Id": event.id}
                )
            else:
                await client.publish(subject, body, headers={"Nats-Msg-Id": event.id})
                await client.flush(timeout=self.options.timeout)
        except (errors.NoRespondersError, self._nats.js.errors.NoStreamResponseError) as exc:
            raise SinkUnavailable(
                f"no JetStream stream takes subject {subject!r} on NATS at {self.servers}"
            ) from exc
        except (errors.Error, OSError, TimeoutError) as exc:
            if not client.is_connected:  # the connection went while this try waited
                raise SinkUnavailable(f"NATS connection lost: {exc}") from exc
            raise SinkError(f"NATS publish failed: {exc}") from exc

    async def aclose(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await client.close()


def create(spec: SinkSpec) -> NatsSink:
    return NatsSink(spec.name, spec.target, sink_options(NatsOptions, spec))
