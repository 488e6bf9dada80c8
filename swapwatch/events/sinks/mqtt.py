"""MQTT sink (paho-mqtt): each event published with QoS 1 and delivered once the broker acks it.

paho runs its network loop in its own thread and reconnects by itself; `send` waits for the
PUBACK in a worker thread, so the event loop never blocks on the broker.
"""

from __future__ import annotations

import asyncio
import logging
import re
import threading
from typing import Any
from urllib.parse import urlsplit

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from pydantic import BaseModel, ConfigDict, Field, field_validator

from swapwatch.events.errors import SinkConfigError, SinkError, SinkUnavailable
from swapwatch.events.outbox import StoredEvent
from swapwatch.events.sinks.base import SinkSpec, check_template, resolve_secret, sink_options

log = logging.getLogger(__name__)

_TOPIC_UNSAFE = re.compile(r"[/+#\s]")


class MqttOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    topic: str = Field(
        default="swapwatch/events/{type}",
        min_length=1,
        description="topic; {type} and {stream} expand",
    )
    qos: int = Field(
        default=1, ge=0, le=2, description="1 or 2 for at-least-once; 0 is fire-and-forget"
    )
    client_id: str = Field(default="", description="empty: the broker assigns one")
    username: str | None = None
    password: str | None = Field(default=None, description="or env:NAME / file:PATH")
    keepalive: int = Field(default=30, ge=5, le=3600)
    connect_timeout: float = Field(default=5.0, gt=0, le=120)
    ack_timeout: float = Field(default=10.0, gt=0, le=300, description="seconds to wait for PUBACK")

    @field_validator("topic")
    @classmethod
    def _expands(cls, topic: str) -> str:
        return check_template(topic, "type", "stream")


class MqttSink:
    def __init__(self, name: str, target: str, options: MqttOptions) -> None:
        url = urlsplit(target if "://" in target else f"mqtt://{target}")
        if url.scheme not in ("mqtt", "mqtts") or not url.hostname:
            raise SinkConfigError(f"sink {name}: MQTT target must be mqtt[s]://HOST[:PORT]")
        self.name = name
        self.host = url.hostname
        self.tls = url.scheme == "mqtts"
        self.port = url.port or (8883 if self.tls else 1883)
        self.options = options
        self._client: mqtt.Client | None = None
        self._connected = threading.Event()

    def _on_connect(
        self, client: mqtt.Client, userdata: Any, flags: Any, rc: Any, props: Any
    ) -> None:
        if not rc.is_failure:
            self._connected.set()
        else:
            log.warning("sink %s: broker refused the connection: %s", self.name, rc)

    def _on_disconnect(
        self, client: mqtt.Client, userdata: Any, flags: Any, rc: Any, props: Any
    ) -> None:
        self._connected.clear()

    async def start(self) -> None:
        if self._client is not None:
            return
        o = self.options
        client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=o.client_id, protocol=mqtt.MQTTv311
        )
        if o.username is not None:
            password = None if o.password is None else resolve_secret(o.password)
            client.username_pw_set(o.username, password)
        if self.tls:
            client.tls_set()
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.reconnect_delay_set(min_delay=1, max_delay=30)
        try:
            client.connect_async(self.host, self.port, keepalive=o.keepalive)
        except (OSError, ValueError) as exc:
            raise SinkError(f"cannot connect to {self.host}:{self.port}: {exc}") from exc
        client.loop_start()
        self._client = client
        await asyncio.to_thread(self._connected.wait, o.connect_timeout)

    async def send(self, event: StoredEvent) -> None:
        if self._client is None:
            await self.start()
        client = self._client
        assert client is not None
        if not self._connected.is_set():
            # paho would queue the message itself; the outbox is our queue.
            raise SinkUnavailable(f"not connected to the broker at {self.host}:{self.port}")
        topic = self.options.topic.format(
            type=event.type, stream=_TOPIC_UNSAFE.sub("_", event.stream)
        )
        info = client.publish(topic, event.body.encode(), qos=self.options.qos)
        if info.rc != mqtt.MQTT_ERR_SUCCESS:
            raise SinkError(f"publish failed: {mqtt.error_string(info.rc)}")
        try:
            await asyncio.to_thread(info.wait_for_publish, self.options.ack_timeout)
        except (RuntimeError, ValueError) as exc:
            raise SinkError(f"publish failed: {exc}") from exc
        if not info.is_published():
            raise SinkError(f"no acknowledgement from the broker in {self.options.ack_timeout}s")

    async def aclose(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            client.disconnect()
            await asyncio.to_thread(client.loop_stop)


def create(spec: SinkSpec) -> MqttSink:
    return MqttSink(spec.name, spec.target, sink_options(MqttOptions, spec))
