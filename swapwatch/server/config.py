"""Service configuration: one pydantic model per component, nested under `ServiceConfig`.

Each component is given its own section (`HttpConfig` to the HTTP front, `EventsConfig` to the
outbox, ...), never the whole configuration. Unknown keys and bad values are refused by their
dotted name (`http.port`); how a file and SWAPWATCH_* variables become this model is
`server/config_sources.py`.
"""

from __future__ import annotations

import ipaddress
import logging
import re
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from swapwatch.faces.quality import QualityConfig, warn_if_turn_looks_like_a_ratio
from swapwatch.fusion import Policy
from swapwatch.stream.rate import LIVE_RATE_HZ

log = logging.getLogger(__name__)

_QUALITY = QualityConfig()
# A DNS name, an IPv4 address or an IPv6 address (bare or in brackets): no scheme, port or path.
_HOST_NAME = re.compile(
    r"[A-Za-z0-9][A-Za-z0-9.-]{0,252}|\[[0-9A-Fa-f:.]{2,45}\]|[0-9A-Fa-f:.]{2,45}"
)
Port = Annotated[int, Field(ge=1, le=65535)]
Count = Annotated[int, Field(ge=1)]


def _host_name(text: str) -> str:
    if not _HOST_NAME.fullmatch(text):
        raise ValueError(f"{text!r} is not a host name or IP address")
    return text


def _rtmp_url(text: str) -> str:
    if not text.startswith(("rtmp://", "rtmps://")):
        raise ValueError(f"{text!r} is not an rtmp:// URL")
    return text


HostName = Annotated[str, AfterValidator(_host_name)]
RtmpUrl = Annotated[str, AfterValidator(_rtmp_url)]


def _head_turn(value: float) -> float:
    QualityConfig(max_turn=value)  # its limits and its message, in one place
    warn_if_turn_looks_like_a_ratio(value, log)
    return value


HeadTurn = Annotated[float, AfterValidator(_head_turn)]


class Section(BaseModel):
    """A part of the configuration: frozen, unknown keys refused, numbers finite."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class HttpConfig(Section):
    host: str = Field(default="127.0.0.1", description="address the API listens on")
    port: Port = Field(default=8080, description="HTTP port")
    cors_origins: tuple[str, ...] = Field(default=(), description="origins allowed to call the API")
    max_body_bytes: Count = Field(default=65536, description="largest request body")


class AuthConfig(Section):
    token: str | None = Field(
        default=None,
        min_length=16,
        repr=False,
        description="bearer token for the API, the offer and the feed; required off loopback",
    )
    metrics_public: bool = Field(
        default=False,
        description="/metrics without the token (its series are labelled with stream ids), "
        "for a Prometheus on a network only it reaches",
    )

    @property
    def required(self) -> bool:
        return self.token is not None


class PullConfig(Section):
    allow_file_urls: bool = Field(
        default=False, description="file:// pulls read the server's disk: off unless asked for"
    )


class RtmpConfig(Section):
    host: str | None = Field(
        default=None,
        description="where RTMP push ingest listens; None: where the API listens, so that a "
        "service kept on loopback does not take video from the network",
    )
    public_host: HostName | None = Field(
        default=None,
        description="the host publishers are told to push to (in ingest_url); None: the "
        "listening address, or this machine's name when that is every address",
    )
    ports: tuple[Port, Port] = Field(
        default=(19350, 19449), description="one port per pushed stream"
    )

    @model_validator(mode="after")
    def _ports_are_a_range(self) -> RtmpConfig:
        if self.ports[0] > self.ports[1]:
            raise ValueError(f"ports {list(self.ports)} is not a range (low, high)")
        return self


class NginxRtmpConfig(Section):
    url: RtmpUrl | None = Field(
        default="rtmp://127.0.0.1:1935",
        description="on_publish makes the service pull <url>/<app>/<key>; None: hooks off",
    )
    keys: tuple[str, ...] = Field(
        default=(), description="stream keys nginx may publish; empty: any"
    )


class WebrtcConfig(Section):
    max_offer_bytes: Count = Field(default=65536, description="largest SDP offer")


class IngestConfig(Section):
    read_timeout_s: float = Field(
        default=10.0, gt=0, description="a live source silent this long fails"
    )
    reconnect_initial_s: float = Field(default=1.0, gt=0, description="first reconnect delay")
    reconnect_max_s: float = Field(default=30.0, gt=0, description="longest reconnect delay")
    pull: PullConfig = PullConfig()
    rtmp: RtmpConfig = RtmpConfig()
    nginx_rtmp: NginxRtmpConfig = NginxRtmpConfig()
    webrtc: WebrtcConfig = WebrtcConfig()

    @model_validator(mode="after")
    def _backoff_grows(self) -> IngestConfig:
        if self.reconnect_max_s < self.reconnect_initial_s:
            raise ValueError("reconnect_initial_s must be <= reconnect_max_s")
        return self


class QualitySection(Section):
    """The quality gate: faces failing one are not scored (`faces.quality.QualityConfig`)."""

    min_face_px: float = Field(default=_QUALITY.min_face_px, gt=0, description="shortest face side")
    max_turn: HeadTurn = Field(
        default=_QUALITY.max_turn,
        description="largest head turn scored, degrees (0 frontal, 90 profile)",
    )
    min_brightness: float = Field(
        default=_QUALITY.min_brightness, ge=0, le=255, description="mean luma of the face centre"
    )
    min_sharpness: float = Field(
        default=_QUALITY.min_sharpness, ge=0, description="variance of the Laplacian at 112 px"
    )

    @property
    def gate(self) -> QualityConfig:
        return QualityConfig(
            min_face_px=self.min_face_px,
            max_turn=self.max_turn,
            min_brightness=self.min_brightness,
            min_sharpness=self.min_sharpness,
        )


class AnalysisConfig(Section):
    model: Path | None = Field(
        default=None, description="detector ONNX file; None: the bundled one"
    )
    rate: float = Field(
        default=LIVE_RATE_HZ, gt=0, description="analysed frames per second per stream (a cap)"
    )
    policy: Policy = Field(default=Policy.MONITORING, description="kyc or monitoring")
    cusum_h: float | None = Field(
        default=None,
        gt=0,
        description="alarm threshold; None: the model's operating point, else the rule's",
    )
    signals: tuple[str, ...] = Field(
        default=(), description="extra detection signals from plugins, NAME[:WEIGHT]"
    )
    quality: QualitySection = QualitySection()


class TensorRtConfig(Section):
    """ONNX Runtime's TensorRT execution provider (used when `engine.device` picks it)."""

    fp16: bool = Field(default=True, description="build FP16 engines")
    cache_dir: Path | None = Field(
        default=None,
        description="where built engines and timing caches are kept across starts; None: "
        "every start builds them again (minutes)",
    )
    workspace_mb: Count = Field(default=2048, description="builder workspace limit")


class EngineConfig(Section):
    type: str = Field(default="onnxruntime", min_length=1, description="inference backend by name")
    device: Literal["auto", "cpu", "gpu", "tensorrt"] = Field(
        default="auto",
        description="auto: TensorRT, CUDA, CPU, the first installed; gpu: a GPU provider or an "
        "error; tensorrt: TensorRT or an error; cpu",
    )
    threads: Count = Field(default=1, description="detector threads")
    max_batch: Count = Field(
        default=16, le=1024, description="crops per inference across all streams"
    )
    max_batch_wait_ms: float = Field(
        default=5.0, ge=0, description="how long a batch waits to fill"
    )
    tensorrt: TensorRtConfig = TensorRtConfig()


class DecodeConfig(Section):
    hwaccel: str | None = Field(
        default=None,
        min_length=1,
        description="hardware decoder (e.g. cuda); falls back to software with a log line",
    )


class EventsConfig(Section):
    path: Path | None = Field(
        default=None, description="the outbox; None: $XDG_STATE_HOME/swapwatch/events.sqlite"
    )
    sinks: tuple[str, ...] = Field(
        default=(), repr=False, description="where events go, TYPE:TARGET[;k=v...]"
    )
    keep_days: float = Field(
        default=7.0, ge=0, description="settled events older than this are pruned"
    )
    max_mb: float = Field(
        default=256.0, ge=0.0625, description="the outbox refuses appends past this"
    )


class LimitsConfig(Section):
    max_streams: Count = Field(default=16, description="streams at once")
    max_width: Count = Field(
        default=1920, description="a larger frame stops its stream with an error"
    )
    max_height: Count = Field(
        default=1920, description="a larger frame stops its stream with an error"
    )
    drain_timeout_s: float = Field(
        default=10.0, ge=0, description="SIGTERM: the time to finish, in all"
    )


class ClusterConfig(Section):
    address: str | None = Field(
        default=None,
        min_length=1,
        description="Ray cluster to run the streams on (host:port, 'auto' or ray://...); "
        "unset: every stream runs in this process",
    )
    namespace: str = Field(
        default="swapwatch", min_length=1, max_length=64, description="Ray namespace"
    )
    stream_cpus: float = Field(default=1.0, ge=0, le=64, description="CPUs each stream holds")
    stream_resource: str | None = Field(
        default="stream_slots",
        min_length=1,
        description="custom Ray resource each stream takes one of (the nodes that declare it "
        "run streams); unset: CPUs alone place them",
    )
    detector_cpus: float = Field(default=1.0, ge=0, le=64, description="CPUs of the detector")
    detector_gpus: float = Field(default=0.0, ge=0, le=8, description="GPUs of the detector")
    detector_resource: str | None = Field(
        default=None,
        min_length=1,
        description="custom Ray resource the detector takes one of (to pin it to such nodes)",
    )
    checkpoint_s: float = Field(
        default=2.0, gt=0, le=60, description="seconds between a stream's checkpoints"
    )
    join_timeout_s: float = Field(
        default=120.0,
        gt=0,
        le=3600,
        description="seconds the front keeps trying to join the cluster before it gives up",
    )


class ServiceConfig(Section):
    """Everything `swapwatch serve` is told, by component."""

    http: HttpConfig = HttpConfig()
    auth: AuthConfig = AuthConfig()
    ingest: IngestConfig = IngestConfig()
    analysis: AnalysisConfig = AnalysisConfig()
    engine: EngineConfig = EngineConfig()
    decode: DecodeConfig = DecodeConfig()
    events: EventsConfig = EventsConfig()
    limits: LimitsConfig = LimitsConfig()
    cluster: ClusterConfig = ClusterConfig()

    @model_validator(mode="after")
    def _token_off_loopback(self) -> ServiceConfig:
        if self.auth.token is None and not is_loopback(self.http.host):
            raise ValueError(
                f"http.host {self.http.host} is reachable from other machines: set auth.token "
                "(SWAPWATCH_AUTH_TOKEN, or token = ... under [auth] in the config file)"
            )
        return self

    @property
    def rtmp_listen_host(self) -> str:
        rtmp = self.ingest.rtmp
        return self.http.host if rtmp.host is None else rtmp.host


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class PublicAuthConfig(AuthConfig):
    token: Literal["***"] | None = Field(
        default=None, description="'***' when a bearer token is set: it is never shown"
    )


class PublicServiceConfig(ServiceConfig):
    """What `public_view` answers (`GET /v1/config`), as documented in `/openapi.json`: the
    configuration with the token hidden and each sink shown as `TYPE:***`."""

    auth: PublicAuthConfig = PublicAuthConfig()


def public_view(config: ServiceConfig) -> dict[str, Any]:
    """The configuration as JSON, the token hidden and sinks shown by type only (their targets
    and options may carry credentials: user:pass@, secret=...)."""
    data = config.model_dump(mode="json")
    data["auth"]["token"] = "***" if config.auth.token else None
    data["events"]["sinks"] = [
        text.split(":", 1)[0].split(";", 1)[0] + ":***" for text in config.events.sinks
    ]
    return data
