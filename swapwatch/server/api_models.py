"""The typed bodies of the HTTP API: what requests carry and what answers hold.

Handlers read requests through these models and build answers from them; `/openapi.json` is
generated from the same classes (see `apidoc`), so the document and the code cannot disagree.
A request that does not fit its model is one `ConfigError` naming the field (a 400).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Annotated, Any, Literal, TypeVar

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    model_validator,
)
from pydantic_core import ErrorDetails

from swapwatch.errors import ConfigError
from swapwatch.fusion import Policy
from swapwatch.kyc.challenges import ChallengeKind
from swapwatch.server.events import MAX_RECENT
from swapwatch.server.nginx_rtmp import APP_NAME
from swapwatch.server.streams import STREAM_ID
from swapwatch.stream.lifecycle import StreamState

STREAM_ID_RULE = "1-64 letters, digits, '_', '.' or '-', starting with a letter or digit"
StreamId = Annotated[str, Field(pattern=STREAM_ID.pattern)]
Text = Annotated[str, Field(min_length=1)]


class RequestModel(BaseModel):
    """A request body whose unknown fields are refused."""

    model_config = ConfigDict(extra="forbid")


class AnswerModel(BaseModel):
    """An answer body: exactly what the service sends, nothing left out or added."""

    model_config = ConfigDict(extra="forbid")


class NewStream(RequestModel):
    """`POST /v1/streams`: pull a URL, or open an RTMP ingest to push to."""

    url: Text | None = Field(
        default=None,
        description="rtmp://, rtsp://, srt://, http(s)://…m3u8, udp:// (loopback), tcp:// "
        "(file:// when allowed); no option that makes the service listen (listen, "
        "mode=listener, …). Required to pull; an rtmp ingest takes none",
    )
    id: StreamId | None = Field(
        default=None, description=f"stream id: {STREAM_ID_RULE} (made up when absent)"
    )
    policy: Policy | None = Field(
        default=None, description="kyc: an alarm stands; monitoring: it clears (default: config)"
    )
    ingest: Literal["pull", "rtmp"] = Field(
        default="pull", description="pull the url, or listen for an RTMP push"
    )

    model_config = ConfigDict(
        json_schema_extra={
            # The rule `pull_needs_a_url` checks, in JSON Schema's words.
            "if": {"properties": {"ingest": {"const": "rtmp"}}, "required": ["ingest"]},
            "then": {"not": {"required": ["url"]}},
            "else": {"required": ["url"], "properties": {"url": {"type": "string"}}},
        }
    )

    @model_validator(mode="after")
    def pull_needs_a_url(self) -> NewStream:
        if self.ingest == "pull" and self.url is None:
            raise ValueError("'url' is required")
        if self.ingest == "rtmp" and "url" in self.model_fields_set:
            raise ValueError("an rtmp push stream takes no 'url': the answer says where to push")
        return self


class WebRtcOffer(BaseModel):
    """`POST /v1/webrtc/offer`: a browser's or SDK's offer (other fields are ignored)."""

    sdp: Text = Field(description="the offer's SDP, with a video section that sends")
    type: Literal["offer"]
    id: StreamId | None = Field(
        default=None, description=f"stream id: {STREAM_ID_RULE} (made up when absent)"
    )
    policy: Policy | None = None
    session: Text | None = Field(
        default=None,
        description="a KYC session's id (POST /v1/sessions): the connection runs that session "
        "(then no id or policy)",
    )


class WebRtcAnswer(AnswerModel):
    sdp: str
    type: Literal["answer"]
    stream: str = Field(description="the id of the stream this session analyses")
    session: str | None = Field(default=None, description="the KYC session it runs, if any")


CameraLabel = Annotated[str, Field(min_length=1, max_length=128)]


class NewSession(RequestModel):
    """`POST /v1/sessions`: how many challenges of which kinds, their time, and the camera
    labels the operator trusts."""

    count: int = Field(default=3, ge=1, le=10, description="challenges in the session")
    kinds: list[ChallengeKind] = Field(
        default_factory=lambda: list(ChallengeKind),
        min_length=1,
        description="kinds to draw from, at least two for more than one challenge",
    )
    window_s: float = Field(default=5.0, ge=1.0, le=30.0, description="seconds per challenge")
    turn_deg: float = Field(
        default=25.0, ge=5.0, le=80.0, description="degrees of yaw a turn must reach"
    )
    max_duration_s: float = Field(
        default=60.0,
        gt=0.0,
        le=600.0,
        description="from the first frame; challenges still open then are missed",
    )
    allowed_camera_labels: list[CameraLabel] = Field(
        default_factory=list,
        max_length=16,
        description="camera label fragments (case-insensitive) not counted as virtual cameras",
    )
    join_within_s: float = Field(
        default=600.0,
        ge=1.0,
        le=86_400.0,
        description="seconds from creation within which its connection must be offered; a "
        "restart of the service does not change it",
    )


class Offer(AnswerModel):
    url: str = Field(description="where to POST the WebRTC offer")
    session: str = Field(description="the `session` field the offer carries")


class SessionVerdictView(AnswerModel):
    verdict: Literal["pass", "fail", "retry"]
    reasons: list[
        Literal[
            "swap_suspected",
            "injection_suspected",
            "challenge_failed",
            "no_face",
            "quality",
            "interrupted",
        ]
    ]
    evidence: dict[str, Any] = Field(
        description="challenges, swap evidence by moment, injection readings, frames"
    )
    event: str | None = Field(description="the id of its session.completed event")


class Session(AnswerModel):
    id: str
    state: Literal["waiting", "running", "completed", "expired"] = Field(
        description="expired: waiting past `expires`, never joined"
    )
    created: str
    expires: str = Field(description="until when a waiting session can be joined")
    stream: str | None = Field(description="the stream of its connection, once connected")
    challenges: int = Field(description="how many (their kinds are told one by one)")
    offer: Offer
    verdict: SessionVerdictView | None


class NginxRtmpPublishDone(BaseModel):
    """The form nginx-rtmp posts to `on_publish_done` (it sends more fields, which are
    ignored)."""

    call: Literal["publish_done"] | None = None
    app: str | None = Field(default=None, description="the nginx-rtmp application, e.g. live")
    name: Text = Field(description="the stream key of the publish session that ended")
    addr: str | None = Field(default=None, description="the publisher's address")
    clientid: str | None = Field(default=None, description="nginx's id of the publisher")


class NginxRtmpPublish(BaseModel):
    """The form nginx-rtmp posts to `on_publish` (it sends more fields, which are ignored)."""

    call: Literal["publish"] | None = None
    app: Annotated[str, Field(pattern=APP_NAME.pattern)] = Field(
        description=f"the nginx-rtmp application, e.g. live: {STREAM_ID_RULE}"
    )
    name: StreamId = Field(description=f"stream key, which becomes the stream id: {STREAM_ID_RULE}")
    addr: str | None = Field(default=None, description="the publisher's address")
    clientid: str | None = Field(default=None, description="nginx's id of the publisher")


class Removed(AnswerModel):
    removed: bool = Field(description="whether a stream was removed")


class Video(AnswerModel):
    width: int
    height: int
    codec: str | None
    fps: float | None


class Track(AnswerModel):
    track_id: int
    score: float
    verdict: Literal["fake", "real", "unknown"]
    alarm: bool
    frames_scored: int
    skip_reason: str | None


class ClusterPlacement(AnswerModel):
    """Where a stream's worker runs on a Ray cluster (`swapwatch serve --cluster`)."""

    node_id: str | None = Field(description="the Ray node it runs on; null before it started")
    node_ip: str | None
    pid: int | None = Field(description="its worker's process on that node")
    restarts: int = Field(
        description="times its worker was made again from its checkpoint (process or node lost)"
    )
    moves: int = Field(description="of those, times it came back on another node")
    last_recovery_s: float | None = Field(
        description="seconds from losing its worker to starting it again, the last time"
    )
    lost: bool = Field(description="its worker does not answer now (being made again)")


class Stream(AnswerModel):
    """One stream's status; fps, latency and faces are those of the last 2 s of frames."""

    id: str
    kind: Literal["pull", "rtmp", "webrtc", "nginx-rtmp"]
    url: str = Field(description="what the stream reads, credentials and keys hidden")
    ingest_url: str | None = Field(
        description="where to push (rtmp ingest): rtmp://HOST:PORT/live/KEY in the answer that "
        "creates the stream, rtmp://HOST:PORT/live/*** afterwards. On a cluster HOST is the "
        "node the stream runs on: null while its worker is lost, and a new address after it "
        "moved (cluster.moves), where the publisher must reconnect"
    )
    policy: Policy
    state: StreamState
    run: str | None = Field(
        description="the current (or last) run: one per connection of the source, the `run` "
        "of its events; null before the first"
    )
    created: float = Field(description="when the stream was added (Unix time)")
    video: Video | None
    fps_in: float
    fps_analysed: float
    frames_in: int
    frames_analysed: int
    dropped: int
    faces: int
    latency_ms: float | None
    alarms_raised: int
    alarm: bool
    reconnects: int
    last_error: str | None
    tracks: list[Track]
    cluster: ClusterPlacement | None = Field(
        default=None, description="where it runs, on a cluster only"
    )


class NewStreamAnswer(Stream):
    """The stream, starting; for an RTMP ingest with its stream key, shown this once."""

    stream_key: str | None = Field(
        default=None,
        description="the key a publisher must push with (rtmp ingest); only in this answer",
    )


class StreamList(AnswerModel):
    streams: list[Stream]


class Health(AnswerModel):
    status: Literal["ok"]
    version: str


class Ready(AnswerModel):
    status: Literal["ready"]
    model: str = Field(description="the detector model's name")
    streams: int
    events: Literal["ok", "degraded"] = Field(
        description="degraded: the outbox is not working, events are not durable"
    )


class Outbox(AnswerModel):
    path: str
    ok: bool
    error: str | None
    recorded: int
    lost: int


class SinkStatus(AnswerModel):
    name: str
    running: bool
    delivered: int
    failed_attempts: int
    dead_lettered: int
    cursor: int
    backlog: int
    crashed: str | None
    last_error: str | None


class EventsStatus(AnswerModel):
    outbox: Outbox
    sinks: list[SinkStatus]


class ErrorDetail(AnswerModel):
    status: int
    kind: str
    message: str


class Error(AnswerModel):
    error: ErrorDetail


def _whole_number(value: object) -> object:
    """Digits only: no sign, space, '_' or other scripts' digits, which int() would take."""
    if isinstance(value, str) and not (value.isascii() and value.isdigit()):
        raise ValueError(f"'recent' must be a whole number from 0 to {MAX_RECENT}")
    return value


class EventFeedQuery(BaseModel):
    """The query of `GET /v1/events` (?token= is the auth middleware's)."""

    recent: Annotated[int, BeforeValidator(_whole_number)] = Field(
        default=0,
        ge=0,
        le=MAX_RECENT,
        description="first send the N latest recorded events (ignored when resuming with "
        "Last-Event-ID)",
    )


Model = TypeVar("Model", bound=BaseModel)


def parse(model: type[Model], data: Mapping[str, Any]) -> Model:
    """`data` as a `model`, or one ConfigError that names what is wrong."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(describe(model, exc.errors())) from None


def describe(model: type[BaseModel], errors: list[ErrorDetails]) -> str:
    """The message for a refused request: every unknown field, else its first error."""
    unknown = [_field(e) for e in errors if e["type"] == "extra_forbidden"]
    if unknown:
        return f"unknown field(s): {', '.join(sorted(unknown))}"
    error = errors[0]
    name = _field(error)
    kind = error["type"]
    if kind == "missing":
        return f"'{name}' is required"
    if kind in ("literal_error", "enum"):
        options = re.findall(r"'([^']*)'", str(error.get("ctx", {}).get("expected", "")))
        return f"'{name}' must be one of {', '.join(options)}"
    if kind in ("string_type", "string_too_short"):
        return f"'{name}' must be a non-empty string"
    if kind == "string_pattern_mismatch":
        field = model.model_fields.get(name)
        rule = field.description if field is not None else None
        return f"'{name}' is not valid: {rule}" if rule else f"'{name}' is not valid"
    if kind in ("greater_than_equal", "less_than_equal"):
        return f"'{name}' is out of range: {error['msg'].lower()}"
    if kind == "value_error":
        return str(error.get("ctx", {}).get("error", error["msg"]))
    return f"'{name}': {error['msg']}" if name else str(error["msg"])


def _field(error: ErrorDetails) -> str:
    return ".".join(str(part) for part in error["loc"])
