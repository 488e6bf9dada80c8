"""The event: what swapwatch tells the systems that act on alarms (schema: schema/event-v1.json).

An event's `id` is its idempotency key. Ids of alarm and stream events are derived from what they
describe (stream, run, type, track, media time), so a worker that restarts from a checkpoint and
analyses the same frames again produces the same ids, and receivers drop the repeats.
"""

from __future__ import annotations

import enum
import json
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import resources
from typing import Any

from swapwatch.fusion import AlarmChange

SCHEMA_VERSION = 1
SCHEMA_RESOURCE = "event-v1.json"
# Fixed namespace of the derived ids: changing it would change every id receivers have seen.
ID_NAMESPACE = uuid.UUID("6c1f8a5e-3b7d-5f0e-9a41-2d9c7e4b1a30")


class EventType(enum.Enum):
    ALERT_RAISED = "alert.raised"
    ALERT_CLEARED = "alert.cleared"
    STREAM_STARTED = "stream.started"
    STREAM_ENDED = "stream.ended"
    STREAM_ERROR = "stream.error"
    SESSION_COMPLETED = "session.completed"

    @classmethod
    def from_alarm(cls, change: AlarmChange) -> EventType:
        return cls(change.value)


def utc_now() -> datetime:
    return datetime.now(UTC)


def format_time(moment: datetime) -> str:
    """RFC 3339, UTC, milliseconds: 2026-01-31T12:00:00.123Z."""
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def parse_time(text: str) -> datetime:
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment


def derived_id(*parts: object) -> str:
    """A stable UUID (v5) for what `parts` describe."""
    return str(uuid.uuid5(ID_NAMESPACE, "\x1f".join(str(p) for p in parts)))


@dataclass(frozen=True, slots=True)
class Event:
    """One event, as documented in schema/event-v1.json."""

    id: str
    type: EventType
    time: datetime  # wall clock when it happened, UTC
    stream: str  # the stream's id (never a URL with credentials)
    run: str  # one run of the stream: a restart from a checkpoint keeps it, a new start does not
    track: int | None = None
    media_time: float | None = None  # seconds into the stream
    score: float | None = None  # display probability of manipulation, 0-1
    evidence: Mapping[str, Any] | None = None  # alarms: cusum, threshold, policy
    detail: Mapping[str, Any] | None = field(default=None)  # stream events: source, counts, error

    def __post_init__(self) -> None:
        if not self.id or not self.stream or not self.run:
            raise ValueError("an event needs an id, a stream and a run")
        if self.time.tzinfo is None:
            raise ValueError("event time must be timezone-aware")
        if self.score is not None and not 0.0 <= self.score <= 1.0:
            raise ValueError(f"score {self.score} outside 0-1")

    def to_json(self) -> dict[str, Any]:
        return {
            "version": SCHEMA_VERSION,
            "id": self.id,
            "type": self.type.value,
            "time": format_time(self.time),
            "stream": self.stream,
            "run": self.run,
            "track": self.track,
            "media_time": None if self.media_time is None else round(self.media_time, 6),
            "score": None if self.score is None else round(self.score, 6),
            "evidence": None if self.evidence is None else dict(self.evidence),
            "detail": None if self.detail is None else dict(self.detail),
        }

    def encode(self) -> str:
        """The exact text stored in the outbox and sent to every sink (and signed)."""
        return json.dumps(self.to_json(), separators=(",", ":"), sort_keys=True)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Event:
        if data.get("version") != SCHEMA_VERSION:
            raise ValueError(f"unsupported event version {data.get('version')!r}")
        return cls(
            id=data["id"],
            type=EventType(data["type"]),
            time=parse_time(data["time"]),
            stream=data["stream"],
            run=data["run"],
            track=data.get("track"),
            media_time=data.get("media_time"),
            score=data.get("score"),
            evidence=data.get("evidence"),
            detail=data.get("detail"),
        )

    @classmethod
    def decode(cls, text: str) -> Event:
        return cls.from_json(json.loads(text))


def schema() -> dict[str, Any]:
    """The JSON Schema of events, as shipped in the package."""
    text = resources.files("swapwatch.events.schema").joinpath(SCHEMA_RESOURCE).read_text("utf-8")
    loaded: dict[str, Any] = json.loads(text)
    return loaded
