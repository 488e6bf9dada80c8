"""Plugins that get stuck for good, installed into a site directory a child process imports:
what a stop must still end."""

from __future__ import annotations

from pathlib import Path


def stuck_signal_plugin(site: Path, marker: Path) -> None:
    """A signal plugin, installed in `site`, whose first call touches `marker` and never returns:
    a plugin (or an engine) stuck for good in the analysis thread."""
    (site / "stuck_signal.py").write_text(
        "import pathlib, threading\n"
        "class StuckSignal:\n"
        "    name = 'stuck'\n"
        "    def infer(self, crops):\n"
        f"        pathlib.Path({str(marker)!r}).touch()\n"
        "        threading.Event().wait()\n"
        "    def close(self):\n"
        "        pass\n"
    )
    _entry_point(site, "stuck_signal", "[swapwatch.signals]\nstuck = stuck_signal:StuckSignal\n")


def stuck_sink_plugin(site: Path, marker: Path) -> None:
    """A sink type `stuck`, installed in `site`, whose send touches `marker` and hands the event
    to a blocking client in a worker thread that never returns (a cancelled send leaves the
    thread, which Python's exit then waits for)."""
    (site / "stuck_sink.py").write_text(
        "import asyncio, pathlib, threading\n"
        "def publish_blocking(event):\n"
        "    threading.Event().wait()\n"
        "class StuckSink:\n"
        "    def __init__(self, name):\n"
        "        self.name = name\n"
        "    async def start(self):\n"
        "        pass\n"
        "    async def send(self, event):\n"
        f"        pathlib.Path({str(marker)!r}).touch()\n"
        "        await asyncio.to_thread(publish_blocking, event)\n"
        "    async def aclose(self):\n"
        "        pass\n"
        "def create(spec):\n"
        "    return StuckSink(spec.name)\n"
    )
    _entry_point(site, "stuck_sink", "[swapwatch.sinks]\nstuck = stuck_sink:create\n")


def _entry_point(site: Path, module: str, entry_points: str) -> None:
    info = site / f"{module}-1.0.dist-info"
    info.mkdir()
    name = module.replace("_", "-")
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(entry_points)
