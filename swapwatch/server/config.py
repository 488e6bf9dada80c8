"""Service configuration: embedded defaults, then a TOML file, then SWAPWATCH_* variables.

Every key of `ServiceConfig` can be set in the file (top level) or as an environment variable
named `SWAPWATCH_` + the key in capitals, e.g. `SWAPWATCH_PORT=9000`,
`SWAPWATCH_CORS_ORIGINS=https://a.example,https://b.example`. A list whose items hold commas is
written as a JSON array: `SWAPWATCH_SINKS='["kafka:b1:9092,b2:9092;topic=t"]'`. Unknown keys and
bad values are errors that name the key, where it came from and the closest known key. The
`SWAPWATCH_` prefix is ours: an unknown variable under it is refused like an unknown file key,
except one a sink names as its secret (`secret=env:SWAPWATCH_HOOK_SECRET`).
"""

from __future__ import annotations

import dataclasses
import difflib
import ipaddress
import json
import math
import os
import re
import tomllib
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from swapwatch.errors import ConfigError
from swapwatch.faces.quality import QualityConfig
from swapwatch.fusion import Policy

_QUALITY = QualityConfig()

ENV_PREFIX = "SWAPWATCH_"
# Settings whose values may carry credentials (sink URLs, `secret=`): never echoed in errors;
# `public_view` hides the same two in its own way.
SECRET_KEYS = frozenset({"sinks", "token"})
# `env:NAME` in a sink's options: a variable the sink reads, whatever its name.
_SINK_ENV_REFERENCE = re.compile(r"\benv:([A-Za-z_][A-Za-z0-9_]*)")
# A DNS name, an IPv4 address or an IPv6 address (bare or in brackets): no scheme, port or path.
_HOST_NAME = re.compile(
    r"[A-Za-z0-9][A-Za-z0-9.-]{0,252}|\[[0-9A-Fa-f:.]{2,45}\]|[0-9A-Fa-f:.]{2,45}"
)


@dataclass(frozen=True, slots=True)
class ServiceConfig:
    host: str = "127.0.0.1"
    port: int = 8080
    # Bearer token for the API and the WebRTC offer; required unless bound to loopback.
    token: str | None = None
    # /metrics labels series with stream ids: with a token set, it needs the token too unless
    # this is true (a Prometheus that cannot send one, on a network only it reaches).
    metrics_public: bool = False
    cors_origins: tuple[str, ...] = ()
    max_streams: int = 16
    max_width: int = 1920  # frames larger than this (either side) stop the stream with an error
    max_height: int = 1920
    max_offer_bytes: int = 65536
    max_body_bytes: int = 65536
    allow_file_urls: bool = False  # file:// pulls read the server's disk: off unless asked for
    model: Path | None = None  # default: the bundled detector
    engine: str = "onnxruntime"
    device: str = "auto"
    threads: int = 1  # detector threads
    signals: tuple[str, ...] = ()  # extra detection signals from plugins, NAME[:WEIGHT]
    max_batch: int = 16  # crops per inference across all streams
    max_batch_wait_ms: float = 5.0
    rate: float = 15.0  # analysed frames per second per stream (a cap)
    policy: str = Policy.MONITORING.value
    cusum_h: float | None = None  # default: the model's operating point, else the rule's
    # The quality gate (faces failing one are not scored): see `faces.quality.QualityConfig`.
    min_face_px: float = _QUALITY.min_face_px
    max_yaw: float = _QUALITY.max_yaw
    min_brightness: float = _QUALITY.min_brightness
    min_sharpness: float = _QUALITY.min_sharpness
    reconnect_initial_s: float = 1.0
    reconnect_max_s: float = 30.0
    read_timeout_s: float = 10.0
    # Where RTMP push ingest listens; None: where the API listens (`host`), so that a service
    # kept on loopback does not take video from the network.
    rtmp_host: str | None = None
    # The host publishers are told to push to (in ingest_url); None: the address the ingest
    # listens on, or this machine's name when that is every address. Never the request's Host.
    rtmp_public_host: str | None = None
    rtmp_ports: tuple[int, int] = (19350, 19449)  # one port per pushed stream
    drain_timeout_s: float = 10.0  # graceful shutdown: how long streams get to finish
    # nginx-rtmp relay: on_publish makes the service pull <this>/<app>/<key>; None: hooks off.
    nginx_rtmp_url: str | None = "rtmp://127.0.0.1:1935"
    nginx_rtmp_keys: tuple[str, ...] = ()  # stream keys nginx may publish; empty: any key
    # Events: the durable outbox (default $XDG_STATE_HOME/swapwatch/events.sqlite) and where it
    # delivers, as TYPE:TARGET[;k=v...] (e.g. "webhook:https://host/hook;secret=env:SECRET").
    events_path: Path | None = None
    sinks: tuple[str, ...] = ()
    events_keep_days: float = 7.0  # settled events older than this are pruned
    events_max_mb: float = 256.0  # the outbox refuses appends past this size

    def __post_init__(self) -> None:
        problems = [
            f"{f.name} must be a finite number"
            for f in fields(self)
            if isinstance(getattr(self, f.name), float) and not math.isfinite(getattr(self, f.name))
        ]
        counts = (
            "max_streams",
            "max_width",
            "max_height",
            "max_offer_bytes",
            "max_body_bytes",
            "threads",
            "max_batch",
        )
        problems += [f"{name} must be at least 1" for name in counts if getattr(self, name) < 1]
        if not self.max_batch_wait_ms >= 0 or not self.drain_timeout_s >= 0:
            problems.append("max_batch_wait_ms and drain_timeout_s must not be negative")
        if not self.read_timeout_s > 0:
            problems.append("read_timeout_s must be positive")
        if self.cusum_h is not None and not self.cusum_h > 0:
            problems.append(f"cusum_h must be positive, got {self.cusum_h}")
        if not 0 < self.port < 65536:
            problems.append(f"port {self.port} is not 1-65535")
        if not self.rate > 0:
            problems.append("rate must be positive")
        if self.policy not in {p.value for p in Policy}:
            problems.append(f"policy must be one of {', '.join(p.value for p in Policy)}")
        if self.reconnect_initial_s <= 0 or self.reconnect_max_s < self.reconnect_initial_s:
            problems.append("reconnect_initial_s must be positive and <= reconnect_max_s")
        low, high = self.rtmp_ports
        if not 0 < low <= high < 65536:
            problems.append(f"rtmp_ports {self.rtmp_ports} is not a range within 1-65535")
        if self.rtmp_public_host is not None and not _HOST_NAME.fullmatch(self.rtmp_public_host):
            problems.append(
                f"rtmp_public_host {self.rtmp_public_host!r} is not a host name or IP address"
            )
        if self.nginx_rtmp_url is not None and not self.nginx_rtmp_url.startswith(
            ("rtmp://", "rtmps://")
        ):
            problems.append(f"nginx_rtmp_url {self.nginx_rtmp_url!r} is not an rtmp:// URL")
        if self.token is None and not is_loopback(self.host):
            problems.append(
                f"host {self.host} is reachable from other machines: set a token "
                "(SWAPWATCH_TOKEN or token = ... in the config file)"
            )
        if self.events_keep_days < 0:
            problems.append("events_keep_days must not be negative")
        if self.events_max_mb < 0.0625:
            problems.append("events_max_mb must be at least 0.0625 (64 KiB)")
        if self.token is not None and len(self.token) < 16:
            problems.append("token must be at least 16 characters")
        try:
            _ = self.quality  # its own checks
        except ValueError as exc:
            problems.append(str(exc))
        if problems:
            raise ConfigError("invalid configuration: " + "; ".join(problems))

    @property
    def auth_required(self) -> bool:
        return self.token is not None

    @property
    def rtmp_listen_host(self) -> str:
        return self.host if self.rtmp_host is None else self.rtmp_host

    @property
    def quality(self) -> QualityConfig:
        return QualityConfig(
            min_face_px=self.min_face_px,
            max_yaw=self.max_yaw,
            min_brightness=self.min_brightness,
            min_sharpness=self.min_sharpness,
        )


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _field_types() -> dict[str, Any]:
    return typing.get_type_hints(ServiceConfig)


def _convert(key: str, value: Any, kind: Any, origin: str) -> Any:
    """A file or environment value as the field's type."""
    args = typing.get_args(kind)
    if isinstance(kind, types.UnionType) or typing.get_origin(kind) is typing.Union:
        if value is None or (isinstance(value, str) and value.lower() in {"", "none", "null"}):
            return None
        inner = next(a for a in args if a is not type(None))
        return _convert(key, value, inner, origin)
    try:
        if kind is bool:
            if isinstance(value, str):
                if value.lower() not in {"1", "0", "true", "false", "yes", "no"}:
                    raise ValueError(value)
                return value.lower() in {"1", "true", "yes"}
            return bool(value)
        if kind in (int, float):
            if isinstance(value, bool):
                raise ValueError(value)
            number = kind(value)
            if not math.isfinite(number):
                raise ConfigError(f"{origin}: {key} = {value!r} is not a finite number")
            return number
        if kind is str:
            if not isinstance(value, str):
                raise ValueError(value)
            return value
        if kind is Path:
            return Path(value)
        if typing.get_origin(kind) is tuple:
            items = _list_items(value) if isinstance(value, str) else list(value)
            if args and args[-1] is not Ellipsis:
                if len(items) != len(args):
                    raise ValueError(value)
                return tuple(_convert(key, v, a, origin) for v, a in zip(items, args, strict=True))
            return tuple(_convert(key, v, args[0], origin) for v in items)
    except (TypeError, ValueError):
        shown = "<hidden>" if key in SECRET_KEYS else repr(value)
        raise ConfigError(f"{origin}: {key} = {shown} is not a valid {_describe(kind)}") from None
    raise ConfigError(f"{origin}: {key} has an unsupported type")  # pragma: no cover


def _list_items(text: str) -> list[Any]:
    """`a,b` or, for items that hold commas, a JSON array of strings and numbers; either way,
    strings are stripped and empty ones dropped."""
    if not text.lstrip().startswith("["):
        return [v.strip() for v in text.split(",") if v.strip()]
    try:
        items = json.loads(text)
    except json.JSONDecodeError:
        raise ValueError(text) from None
    if not isinstance(items, list) or not all(
        isinstance(v, (str, int, float)) and not isinstance(v, bool) for v in items
    ):
        raise ValueError(text)
    return [
        v.strip() if isinstance(v, str) else v for v in items if not isinstance(v, str) or v.strip()
    ]


def _closest(key: str, known: list[str], shown: Callable[[str], str] = repr) -> str:
    """The hint after an unknown key: the likeliest meant, else every known one."""
    close = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
    if close:
        return f" (did you mean {shown(close[0])}?)"
    return f" (known: {', '.join(shown(k) for k in known)})"


def _env_name(key: str) -> str:
    return ENV_PREFIX + key.upper()


def _describe(kind: Any) -> str:
    if typing.get_origin(kind) is tuple:
        return "list (comma-separated, or a JSON array)"
    return getattr(kind, "__name__", str(kind))


def load_config(
    path: Path | None = None,
    environ: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> ServiceConfig:
    """Defaults < file < environment < overrides (command-line options)."""
    environ = os.environ if environ is None else environ
    kinds = _field_types()
    values: dict[str, Any] = {}
    if path is not None:
        try:
            raw = tomllib.loads(Path(path).read_text(encoding="utf-8"))
        except OSError as exc:
            raise ConfigError(f"cannot read config {path}: {exc.strerror or exc}") from exc
        except UnicodeDecodeError as exc:
            raise ConfigError(
                f"config {path} is not UTF-8 text (byte {exc.start}); save it as UTF-8"
            ) from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"config {path} is not valid TOML: {exc}") from exc
        for key, value in raw.items():
            if key not in kinds:
                raise ConfigError(f"{path}: unknown setting {key!r}{_closest(key, list(kinds))}")
            values[key] = _convert(key, value, kinds[key], str(path))
    unknown: list[str] = []
    for name, value in environ.items():
        if not name.startswith(ENV_PREFIX):
            continue
        key = name[len(ENV_PREFIX) :].lower()
        if key not in kinds:
            unknown.append(name)
            continue
        values[key] = _convert(key, value, kinds[key], f"environment {name}")
    referenced = {
        ref for text in values.get("sinks", ()) for ref in _SINK_ENV_REFERENCE.findall(text)
    }
    unknown = [name for name in unknown if name not in referenced]
    if unknown:
        raise ConfigError(
            "; ".join(
                f"unknown environment variable {name}"
                + _closest(name[len(ENV_PREFIX) :].lower(), list(kinds), _env_name)
                for name in sorted(unknown)
            )
        )
    for key, value in (overrides or {}).items():
        if value is not None:
            values[key] = value
    try:
        return ServiceConfig(**values)
    except TypeError as exc:
        raise ConfigError(f"invalid configuration: {exc}") from exc


def public_view(config: ServiceConfig) -> dict[str, Any]:
    """The configuration as JSON, the token hidden."""
    data = {f.name: getattr(config, f.name) for f in dataclasses.fields(config)}
    data["token"] = "***" if config.token else None
    # Sink targets and options may carry credentials (user:pass@, secret=...): types only.
    data["sinks"] = tuple(text.split(":", 1)[0].split(";", 1)[0] + ":***" for text in config.sinks)
    return {
        k: (str(v) if isinstance(v, Path) else list(v) if isinstance(v, tuple) else v)
        for k, v in data.items()
    }
