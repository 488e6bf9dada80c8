"""Where the service configuration comes from: defaults < TOML file < SWAPWATCH_* < options.

The file has one table per section (`[http]`, `[ingest.rtmp]`, ...). A setting's variable is
`SWAPWATCH_` + its dotted key in capitals with `_` for dots: `http.port` is
`SWAPWATCH_HTTP_PORT`. A list is comma-separated, or a JSON array when its items hold commas:
`SWAPWATCH_EVENTS_SINKS='["kafka:b1:9092,b2:9092;topic=t"]'`. The flat keys of earlier releases
(`port = 9000`, `SWAPWATCH_PORT`) are still read, each with a warning naming its new key.
Unknown keys and bad values are one `ConfigError` naming the key, where it came from and the
closest known key. The `SWAPWATCH_` prefix is ours: an unknown variable under it is refused like
an unknown file key, except one a sink names as its secret (`secret=env:SWAPWATCH_HOOK_SECRET`).
"""

from __future__ import annotations

import difflib
import json
import logging
import os
import re
import tomllib
import types
import typing
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from swapwatch.errors import ConfigError
from swapwatch.server.config import Section, ServiceConfig

log = logging.getLogger(__name__)

ENV_PREFIX = "SWAPWATCH_"
# Settings whose values may carry credentials: never echoed in errors.
SECRET_KEYS = frozenset({"auth.token", "events.sinks"})
# The flat keys of the first releases, and where each now lives.
LEGACY_KEYS = {
    "host": "http.host",
    "port": "http.port",
    "cors_origins": "http.cors_origins",
    "max_body_bytes": "http.max_body_bytes",
    "token": "auth.token",
    "metrics_public": "auth.metrics_public",
    "allow_file_urls": "ingest.pull.allow_file_urls",
    "reconnect_initial_s": "ingest.reconnect_initial_s",
    "reconnect_max_s": "ingest.reconnect_max_s",
    "read_timeout_s": "ingest.read_timeout_s",
    "rtmp_host": "ingest.rtmp.host",
    "rtmp_public_host": "ingest.rtmp.public_host",
    "rtmp_ports": "ingest.rtmp.ports",
    "nginx_rtmp_url": "ingest.nginx_rtmp.url",
    "nginx_rtmp_keys": "ingest.nginx_rtmp.keys",
    "max_offer_bytes": "ingest.webrtc.max_offer_bytes",
    "model": "analysis.model",
    "rate": "analysis.rate",
    "policy": "analysis.policy",
    "cusum_h": "analysis.cusum_h",
    "signals": "analysis.signals",
    "min_face_px": "analysis.quality.min_face_px",
    "min_brightness": "analysis.quality.min_brightness",
    "min_sharpness": "analysis.quality.min_sharpness",
    "engine": "engine.type",
    "device": "engine.device",
    "threads": "engine.threads",
    "max_batch": "engine.max_batch",
    "max_batch_wait_ms": "engine.max_batch_wait_ms",
    "events_path": "events.path",
    "sinks": "events.sinks",
    "events_keep_days": "events.keep_days",
    "events_max_mb": "events.max_mb",
    "max_streams": "limits.max_streams",
    "max_width": "limits.max_width",
    "max_height": "limits.max_height",
    "drain_timeout_s": "limits.drain_timeout_s",
}
# Settings that changed meaning, not only place: refused with what replaced them, since a value
# copied across would be read in the new unit (a yaw ratio of 0.85 as 0.85 degrees would skip
# every face).
_MAX_YAW_GONE = (
    "{key} (the nose's offset between the cheeks, 0-1) was replaced by "
    "analysis.quality.max_turn, in degrees of head turn (SWAPWATCH_ANALYSIS_QUALITY_MAX_TURN): "
    "0.85 was a turn of about 30"
)
REPLACED_KEYS = {"analysis.quality.max_yaw": _MAX_YAW_GONE, "max_yaw": _MAX_YAW_GONE}
# `env:NAME` in a sink's options: a variable the sink reads, whatever its name.
_SINK_ENV_REFERENCE = re.compile(r"\benv:([A-Za-z_][A-Za-z0-9_]*)")
_NONE_TEXT = frozenset({"", "none", "null"})


def leaf_types(model: type[BaseModel] = ServiceConfig, prefix: str = "") -> dict[str, Any]:
    """Every setting by dotted key, with its type."""
    leaves: dict[str, Any] = {}
    for name, field in model.model_fields.items():
        kind = field.annotation
        if isinstance(kind, type) and issubclass(kind, Section):
            leaves.update(leaf_types(kind, f"{prefix}{name}."))
        else:
            leaves[prefix + name] = kind
    return leaves


def env_name(key: str) -> str:
    """The variable of a dotted key: `ingest.rtmp.ports` is SWAPWATCH_INGEST_RTMP_PORTS."""
    return ENV_PREFIX + key.replace(".", "_").upper()


class _Layers:
    """Settings by dotted key as they are read, each with where it came from."""

    def __init__(self) -> None:
        self.values: dict[str, Any] = {}
        self.origins: dict[str, str] = {}

    def set(self, key: str, value: Any, origin: str) -> None:
        self.values[key] = value
        self.origins[key] = origin

    def nested(self) -> dict[str, Any]:
        tree: dict[str, Any] = {}
        for key, value in self.values.items():
            *sections, name = key.split(".")
            node = tree
            for section in sections:
                node = node.setdefault(section, {})
            node[name] = value
        return tree


def load_config(
    path: Path | None = None,
    environ: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> ServiceConfig:
    """Defaults < file < environment < overrides (command-line options, by dotted key)."""
    environ = os.environ if environ is None else environ
    kinds = leaf_types()
    layers = _Layers()
    if path is not None:
        _read_file(Path(path), kinds, layers)
    _read_environment(environ, kinds, layers)
    for key, value in (overrides or {}).items():
        if value is not None:
            layers.set(key, value, "command line")
    try:
        return ServiceConfig.model_validate(layers.nested())
    except ValidationError as exc:
        raise ConfigError(_describe_errors(exc, layers, kinds)) from None


def _read_file(path: Path, kinds: dict[str, Any], layers: _Layers) -> None:
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"cannot read config {path}: {exc.strerror or exc}") from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"config {path} is not UTF-8 text (byte {exc.start}); save it as UTF-8"
        ) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config {path} is not valid TOML: {exc}") from exc
    for name, value in raw.items():
        _refuse_replaced(name, str(path))
        # `engine` was the backend's name and is now a table: a string there is the old key.
        if name in LEGACY_KEYS and not (name in ServiceConfig.model_fields and _is_table(value)):
            new = LEGACY_KEYS[name]
            log.warning("%s: %r is deprecated: write %r instead", path, name, new)
            layers.set(new, _unset_or(value, kinds[new]), str(path))
        else:
            _read_table(name, value, kinds, layers, str(path))


def _is_table(value: Any) -> bool:
    return isinstance(value, dict)


def _refuse_replaced(key: str, origin: str) -> None:
    if key in REPLACED_KEYS:
        raise ConfigError(f"{origin}: " + REPLACED_KEYS[key].format(key=key))


def _read_table(key: str, value: Any, kinds: dict[str, Any], layers: _Layers, origin: str) -> None:
    _refuse_replaced(key, origin)
    if key in kinds:
        layers.set(key, _unset_or(value, kinds[key]), origin)
    elif any(known.startswith(key + ".") for known in kinds):
        if not _is_table(value):
            raise ConfigError(f"{origin}: {key} must be a table ([{key}]), not a value")
        for name, inner in value.items():
            _read_table(f"{key}.{name}", inner, kinds, layers, origin)
    else:
        raise ConfigError(f"{origin}: unknown setting {key!r}{_closest_key(key, kinds)}")


def _read_environment(environ: Mapping[str, str], kinds: dict[str, Any], layers: _Layers) -> None:
    by_name = {env_name(key): key for key in kinds}
    legacy = {ENV_PREFIX + old.upper(): new for old, new in LEGACY_KEYS.items()}
    unknown: list[str] = []
    for name, text in environ.items():
        if not name.startswith(ENV_PREFIX):
            continue
        for replaced in REPLACED_KEYS:
            if name == env_name(replaced):
                _refuse_replaced(replaced, f"environment {name}")
        key = by_name.get(name)
        if key is None and name in legacy:
            key = legacy[name]
            log.warning("environment %s is deprecated: set %s instead", name, env_name(key))
        if key is None:
            unknown.append(name)
            continue
        origin = f"environment {name}"
        layers.set(key, _from_text(key, text, kinds[key], origin), origin)
    referenced = {
        ref
        for text in layers.values.get("events.sinks", ())
        if isinstance(text, str)
        for ref in _SINK_ENV_REFERENCE.findall(text)
    }
    unknown = [name for name in unknown if name not in referenced]
    if unknown:
        raise ConfigError(
            "; ".join(
                f"unknown environment variable {name}"
                + _closest(
                    name.removeprefix(ENV_PREFIX),
                    [known.removeprefix(ENV_PREFIX) for known in by_name],
                    lambda known: ENV_PREFIX + known,
                )
                for name in sorted(unknown)
            )
        )


def _optional(kind: Any) -> bool:
    union = isinstance(kind, types.UnionType) or typing.get_origin(kind) is typing.Union
    return union and type(None) in typing.get_args(kind)


def _unset_or(value: Any, kind: Any) -> Any:
    """A file's `"none"` (TOML has no null) for a setting that may be unset: unset."""
    if _optional(kind) and isinstance(value, str) and value.strip().lower() in _NONE_TEXT:
        return None
    return value


def _from_text(key: str, text: str, kind: Any, origin: str) -> Any:
    """A variable's text as the setting's shape (lists, None); pydantic converts the rest."""
    if _optional(kind):
        if text.strip().lower() in _NONE_TEXT:
            return None
        kind = next(a for a in typing.get_args(kind) if a is not type(None))
    if typing.get_origin(kind) is tuple:
        try:
            return _list_items(text)
        except ValueError:
            shown = "<hidden>" if key in SECRET_KEYS else repr(text)
            raise ConfigError(
                f"{origin}: {key} = {shown} is not a valid list (comma-separated, or a JSON array)"
            ) from None
    return text


def _list_items(text: str) -> list[Any]:
    """`a,b` or, for items that hold commas, a JSON array of strings and numbers; either way,
    strings are stripped and empty ones dropped."""
    if not text.lstrip().startswith("["):
        return [v.strip() for v in text.split(",") if v.strip()]
    try:
        items = json.loads(text)
    except (json.JSONDecodeError, RecursionError):
        raise ValueError(text) from None
    if not isinstance(items, list) or not all(
        isinstance(v, (str, int, float)) and not isinstance(v, bool) for v in items
    ):
        raise ValueError(text)
    return [
        v.strip() if isinstance(v, str) else v for v in items if not isinstance(v, str) or v.strip()
    ]


def _describe_errors(exc: ValidationError, layers: _Layers, kinds: dict[str, Any]) -> str:
    problems = []
    for error in exc.errors(include_url=False):
        key = ".".join(str(part) for part in error["loc"])
        message = error["msg"].removeprefix("Value error, ")
        if error["type"] == "extra_forbidden":  # from the command line or a caller's dict
            if key in REPLACED_KEYS:
                problems.append(REPLACED_KEYS[key].format(key=key))
            else:
                problems.append(f"unknown setting {key!r}{_closest_key(key, kinds)}")
            continue
        leaf = _leaf_of(key, kinds)
        if leaf is None:  # a rule across settings of a section
            problems.append(f"{key}: {message}" if key else message)
            continue
        origin = layers.origins.get(leaf, "default")
        if leaf in SECRET_KEYS:
            shown = "<hidden>"
        elif leaf in layers.values:
            shown = repr(_plain(layers.values[leaf]))
        else:
            shown = "(default)"
        problems.append(f"{origin}: {leaf} = {shown}: {message}")
    return "invalid configuration: " + "; ".join(problems)


def _leaf_of(key: str, kinds: dict[str, Any]) -> str | None:
    """The setting an error's location points into (`ingest.rtmp.ports.0` is a ports item)."""
    while key:
        if key in kinds:
            return key
        key = key.rpartition(".")[0]
    return None


def _plain(value: Any) -> Any:
    return str(value) if isinstance(value, Path) else value


def _closest_key(key: str, kinds: dict[str, Any]) -> str:
    """The hint after an unknown file key, matched against the dotted keys, the old flat keys
    and the bare names of settings (`sink` means `events.sinks`)."""
    names: dict[str, str] = {}
    for dotted in kinds:
        names.setdefault(dotted.rpartition(".")[2], dotted)
    names.update(LEGACY_KEYS)
    names.update({dotted: dotted for dotted in kinds})
    names.update({section: section for dotted in kinds for section in _sections_of(dotted)})
    for candidate in (key, key.rpartition(".")[2]):
        close = difflib.get_close_matches(candidate, list(names), n=1, cutoff=0.6)
        if close:
            return f" (did you mean {names[close[0]]!r}?)"
    return f" (known: {', '.join(repr(k) for k in kinds)})"


def _sections_of(dotted: str) -> list[str]:
    parts = dotted.split(".")[:-1]
    return [".".join(parts[: i + 1]) for i in range(len(parts))]


def _closest(key: str, known: list[str], shown: Callable[[str], str] = repr) -> str:
    """The hint after an unknown key: the likeliest meant, else every known one."""
    close = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
    if close:
        return f" (did you mean {shown(close[0])}?)"
    return f" (known: {', '.join(shown(k) for k in known)})"
