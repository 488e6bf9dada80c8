"""What a sink is, and how one is described: `TYPE:TARGET;option=value;...` or a TOML table."""

from __future__ import annotations

import hashlib
import math
import os
import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, TypeVar, runtime_checkable

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from swapwatch.events.errors import SinkConfigError
from swapwatch.events.outbox import StoredEvent

OptionValue = str | int | float | bool


@runtime_checkable
class Sink(Protocol):
    """Somewhere events go. Built by a factory from a SinkSpec (entry point `swapwatch.sinks`).

    `send` delivers one event or raises SinkError (retried with backoff) or SinkRejected
    (dead-lettered at once); it may be called again with the same event after a failure or a
    restart, so receivers must use the event id to drop repeats. Other exceptions are bugs: they
    stop this sink (counted and logged) and never the others.
    """

    name: str

    async def start(self) -> None:
        """Open connections; may raise SinkError (the dispatcher tries again later)."""
        ...

    async def send(self, event: StoredEvent) -> None: ...

    async def aclose(self) -> None: ...


class RetryPolicy(BaseModel):
    """When to try an event again, and when to give up and dead-letter it (per sink)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_attempts: int = Field(
        default=20, ge=1, le=10_000, description="tries before dead-lettering"
    )
    backoff: float = Field(default=0.5, gt=0, le=3600, description="first retry delay, seconds")
    max_backoff: float = Field(
        default=60.0, gt=0, le=86_400, description="longest retry delay, seconds"
    )
    multiplier: float = Field(
        default=2.0, ge=1, le=10, description="growth of the delay per attempt"
    )
    max_age: float = Field(
        default=86_400.0, gt=0, description="seconds after its append an event is given up"
    )
    send_timeout: float = Field(
        default=30.0, gt=0, le=3600, description="longest one send may take"
    )

    def delay(self, attempt: int, rng: random.Random | None = None) -> float:
        """Delay before try `attempt + 1`: exponential, capped, with full jitter (so that many
        workers retrying one receiver do not hit it in lockstep)."""
        # In logs: `multiplier ** (attempt - 1)` overflows a float after about a thousand tries,
        # which a sink down for half a day reaches (its unavailable tries are not capped).
        growth = min(
            (attempt - 1) * math.log(self.multiplier), math.log(self.max_backoff / self.backoff)
        )
        ceiling = min(self.max_backoff, self.backoff * math.exp(growth))
        return (rng or random).uniform(ceiling / 2, ceiling)


RETRY_OPTIONS = frozenset(RetryPolicy.model_fields)


@dataclass(frozen=True, slots=True)
class SinkSpec:
    """A configured sink: its plugin type, target, unique name, own options and retry policy."""

    type: str
    target: str
    name: str
    options: Mapping[str, OptionValue] = field(default_factory=dict)
    retry: RetryPolicy = field(default_factory=lambda: RetryPolicy())
    # The default name earlier releases gave it, when it differs: its cursor is taken over.
    formerly: str | None = None


SinkFactory = Callable[[SinkSpec], Sink]


def _coerce(text: str) -> OptionValue:
    lowered = text.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def spec_from_mapping(raw: Mapping[str, Any], where: str = "sink") -> SinkSpec:
    """A spec from a TOML table: `type`, `target`, optional `name`, retry and sink options."""
    options = dict(raw)
    kind = options.pop("type", None)
    if not isinstance(kind, str) or not kind:
        raise SinkConfigError(f"{where}: missing `type`")
    target = str(options.pop("target", ""))
    given = str(options.pop("name", ""))
    name = given or default_name(kind, target)
    former = _former_default_name(kind, target)
    formerly = former if not given and former != name else None
    retry_raw = {k: options.pop(k) for k in list(options) if k in RETRY_OPTIONS}
    try:
        retry = RetryPolicy(**retry_raw)
    except ValidationError as exc:
        raise SinkConfigError(f"{where} {name}: {_first_error(exc)}") from None
    for key, value in options.items():
        if not isinstance(value, OptionValue):
            raise SinkConfigError(f"{where} {name}: option {key} must be a string or a number")
    return SinkSpec(kind, target, name, options, retry, formerly)


def parse_sink(text: str) -> SinkSpec:
    """`TYPE[:TARGET][;key=value]...`, e.g. `webhook:https://host/hook;secret=env:HOOK_SECRET`."""
    head, *pairs = text.split(";")
    kind, _, target = head.partition(":")
    raw: dict[str, Any] = {"type": kind.strip(), "target": target.strip()}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise SinkConfigError(f"sink {text!r}: expected key=value, got {pair!r}")
        raw[key.strip()] = _coerce(value.strip())
    return spec_from_mapping(raw, where=f"sink {head!r}")


def default_name(kind: str, target: str) -> str:
    """A stable name (it keys the sink's cursor, and is shown in logs, `/metrics` and the
    status) without credentials, query string or an HTTP path, which is often the secret of
    a webhook (`https://hooks.zapier.com/hooks/catch/1/abc/`): that is shown as a digest."""
    former = _former_default_name(kind, target)
    scheme, sep, rest = former.partition(":")[2].partition("://")
    host, _, path = rest.partition("/")
    if sep and scheme in ("http", "https") and path:
        digest = hashlib.sha256(former.encode()).hexdigest()[:10]
        return f"{kind}:{scheme}://{host}/#{digest}"
    return former


def _former_default_name(kind: str, target: str) -> str:
    """The default name before the path was hidden: kept to take over its cursor."""
    clean = target.split("?", 1)[0]
    if "@" in clean:
        scheme, _, rest = clean.partition("://")
        clean = f"{scheme}://{rest.split('@', 1)[1]}" if rest else clean
    return f"{kind}:{clean}" if clean else kind


def resolve_secret(value: str) -> str:
    """`env:NAME` reads an environment variable, `file:PATH` a file; anything else is literal."""
    if value.startswith("env:"):
        name = value[4:]
        found = os.environ.get(name)
        if found is None:
            raise SinkConfigError(f"environment variable {name} (a sink secret) is not set")
        return found
    if value.startswith("file:"):
        try:
            return Path(value[5:]).read_text("utf-8").strip()
        except OSError as exc:
            raise SinkConfigError(f"cannot read sink secret file: {exc}") from None
    return value


Model = TypeVar("Model", bound=BaseModel)


def check_template(template: str, *fields: str) -> str:
    """A topic or subject whose `{field}`s are all among `fields`: a typo fails at start, not
    at the first event (where it would stop the sink)."""
    try:
        template.format(**{name: name for name in fields})
    except (KeyError, IndexError, ValueError) as exc:
        named = ", ".join(f"{{{name}}}" for name in fields)
        raise ValueError(f"{template!r} does not expand ({exc!r}); it may use {named}") from None
    return template


def sink_options(model: type[Model], spec: SinkSpec) -> Model:
    """Validate a spec's options against a sink's pydantic model (unknown keys are refused)."""
    try:
        return model(**spec.options)
    except ValidationError as exc:
        raise SinkConfigError(f"sink {spec.name}: {_first_error(exc)}") from None


def _first_error(exc: ValidationError) -> str:
    error = exc.errors()[0]
    where = ".".join(str(p) for p in error["loc"]) or "value"
    return f"{where}: {error['msg']}"
