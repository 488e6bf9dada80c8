"""Building sinks from their specs through the `swapwatch.sinks` entry points."""

from __future__ import annotations

from collections.abc import Iterable

from swapwatch.events.delivery import Route
from swapwatch.events.sinks.base import Sink, SinkFactory, SinkSpec
from swapwatch.plugins import SINKS, PluginLoadError, load


def create_sink(spec: SinkSpec) -> Sink:
    factory: SinkFactory = load(SINKS, spec.type)
    sink = factory(spec)
    if not isinstance(sink, Sink):
        raise PluginLoadError(f"sink type {spec.type!r} did not build a Sink (send/aclose)")
    if sink.name != spec.name:
        raise PluginLoadError(f"sink type {spec.type!r} ignored the configured name {spec.name!r}")
    return sink


def create_routes(specs: Iterable[SinkSpec]) -> list[Route]:
    """One Route per spec, each with its own retry policy."""
    return [Route(create_sink(spec), spec.retry, formerly=spec.formerly) for spec in specs]
