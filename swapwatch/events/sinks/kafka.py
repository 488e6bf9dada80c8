"""Kafka sink (aiokafka, extra `kafka`): idempotent producer, acks from all in-sync replicas.

The message key is the stream id, so one stream's events stay in one partition, in order.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from swapwatch.events.errors import SinkConfigError, SinkError
from swapwatch.events.outbox import StoredEvent
from swapwatch.events.sinks.base import SinkSpec, sink_options

EVENT_ID_HEADER = "swapwatch-event-id"


class KafkaOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    topic: str = Field(default="swapwatch.events", min_length=1, description="topic to produce to")
    request_timeout: float = Field(default=30.0, gt=0, le=600, description="seconds")


def _aiokafka() -> Any:
    try:
        import aiokafka
        import aiokafka.errors
    except ImportError:
        raise SinkConfigError(
            "the kafka sink needs aiokafka: pip install 'swapwatch[kafka]'"
        ) from None
    return aiokafka


class KafkaSink:
    def __init__(self, name: str, bootstrap: str, options: KafkaOptions) -> None:
        if not bootstrap:
            raise SinkConfigError(f"sink {name}: kafka needs bootstrap servers (HOST:PORT[,...])")
        self.name = name
        self.bootstrap = bootstrap
        self.options = options
        self._kafka = _aiokafka()
        self._producer: Any = None

    async def start(self) -> None:
        if self._producer is not None:
            return
        producer = self._kafka.AIOKafkaProducer(
            bootstrap_servers=self.bootstrap,
            acks="all",
            enable_idempotence=True,
            request_timeout_ms=int(self.options.request_timeout * 1000),
        )
        try:
            await producer.start()
        except self._kafka.errors.KafkaError as exc:
            await producer.stop()
            raise SinkError(f"cannot reach Kafka at {self.bootstrap}: {exc}") from exc
        self._producer = producer

    async def send(self, event: StoredEvent) -> None:
        await self.start()
        try:
            await self._producer.send_and_wait(
                self.options.topic,
                value=event.body.encode(),
                key=event.stream.encode(),
                headers=[(EVENT_ID_HEADER, event.id.encode())],
            )
        except self._kafka.errors.KafkaError as exc:
            raise SinkError(f"Kafka produce failed: {exc}") from exc

    async def aclose(self) -> None:
        producer, self._producer = self._producer, None
        if producer is not None:
            await producer.stop()


def create(spec: SinkSpec) -> KafkaSink:
    return KafkaSink(spec.name, spec.target, sink_options(KafkaOptions, spec))
