"""Durable events: the event model, the SQLite outbox, delivery to sinks, webhook signatures.

The service's API: open an `EventLog`, append with `StreamEvents` (or `EventLog.append`), and run
a `Dispatcher` over `Route`s built by `create_routes(specs)` (sinks from the `swapwatch.sinks`
entry points).
"""

from swapwatch.events.delivery import Dispatcher, Route, SinkStats
from swapwatch.events.emit import StreamEvents
from swapwatch.events.errors import (
    OutboxCorrupt,
    OutboxError,
    OutboxFull,
    SignatureError,
    SinkConfigError,
    SinkError,
    SinkRejected,
    SinkUnavailable,
)
from swapwatch.events.model import Event, EventType
from swapwatch.events.outbox import EventLog, Retention, StoredEvent
from swapwatch.events.sinks.base import RetryPolicy, Sink, SinkSpec, parse_sink
from swapwatch.events.sinks.factory import create_routes, create_sink

__all__ = [
    "Dispatcher",
    "Event",
    "EventLog",
    "EventType",
    "OutboxCorrupt",
    "OutboxError",
    "OutboxFull",
    "Retention",
    "RetryPolicy",
    "Route",
    "SignatureError",
    "Sink",
    "SinkConfigError",
    "SinkError",
    "SinkRejected",
    "SinkSpec",
    "SinkStats",
    "SinkUnavailable",
    "StoredEvent",
    "StreamEvents",
    "create_routes",
    "create_sink",
    "parse_sink",
]
