"""Extension points, loaded from entry points: sinks, engines and extra detection signals.

This loader sits below the packages it serves: each builds its own extensions through it
(`swapwatch.engines.create_engine`, `swapwatch.events.create_routes`, `plugins.signals`).

A package adds one by declaring it in its own metadata, e.g. in its pyproject.toml:

    [project.entry-points."swapwatch.sinks"]
    teams = "swapwatch_teams:create"        # SinkFactory: (SinkSpec) -> Sink

Our own sinks and engines are declared the same way in swapwatch's pyproject.toml; the table
below only stands in for them when the installed metadata is older than the code.
Discovery happens when a plugin is asked for, never at import time.
"""

from __future__ import annotations

import logging
from importlib.metadata import EntryPoint, entry_points
from typing import Any

from swapwatch.errors import ConfigError

log = logging.getLogger(__name__)

SINKS = "swapwatch.sinks"
ENGINES = "swapwatch.engines"
SIGNALS = "swapwatch.signals"

BUILTIN: dict[str, dict[str, str]] = {
    SINKS: {
        "webhook": "swapwatch.events.sinks.webhook:create",
        "jsonl": "swapwatch.events.sinks.jsonl:create",
        "live": "swapwatch.events.sinks.live:create",
        "mqtt": "swapwatch.events.sinks.mqtt:create",
        "kafka": "swapwatch.events.sinks.kafka:create",
        "nats": "swapwatch.events.sinks.nats:create",
    },
    ENGINES: {"onnxruntime": "swapwatch.engines.onnxruntime:OnnxRuntimeEngine"},
    SIGNALS: {},
}
_KIND = {SINKS: "sink type", ENGINES: "engine", SIGNALS: "signal"}


class PluginNotFound(ConfigError):
    """No installed package provides the plugin a setting names."""


class PluginLoadError(ConfigError):
    """A plugin is installed but cannot be imported."""


def available(group: str) -> dict[str, EntryPoint]:
    """Every plugin of `group` by name: ours first, then those of installed packages."""
    found = {
        name: EntryPoint(name=name, value=value, group=group)
        for name, value in BUILTIN.get(group, {}).items()
    }
    for ep in entry_points(group=group):
        known = found.get(ep.name)
        if known is not None and known.value != ep.value:
            log.warning(
                "%s %r from %s is ignored: the name is taken by %s",
                _KIND.get(group, group),
                ep.name,
                _dist(ep),
                known.value,
            )
            continue
        found[ep.name] = ep
    return found


def load(group: str, name: str) -> Any:
    """The object the plugin `name` of `group` points to."""
    plugins = available(group)
    ep = plugins.get(name)
    if ep is None:
        names = ", ".join(sorted(plugins)) or "none"
        raise PluginNotFound(
            f"unknown {_KIND.get(group, group)} {name!r} (available: {names}); "
            f"install the package that provides it (entry point group {group})"
        )
    try:
        return ep.load()
    except (ImportError, AttributeError) as exc:
        raise PluginLoadError(
            f"{_KIND.get(group, group)} {name!r} from {_dist(ep)} failed to load: {exc}"
        ) from exc


def _dist(ep: EntryPoint) -> str:
    dist = ep.dist
    return "swapwatch" if dist is None else f"{dist.name} {dist.version}"
