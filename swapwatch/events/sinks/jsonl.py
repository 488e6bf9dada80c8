"""JSON lines sink: one event per line, appended to a file or written to stdout (`-`)."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path
from typing import TextIO

from pydantic import BaseModel, ConfigDict, Field

from swapwatch.events.errors import SinkConfigError, SinkError
from swapwatch.events.outbox import StoredEvent
from swapwatch.events.sinks.base import SinkSpec, sink_options


class JsonlOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    fsync: bool = Field(
        default=False, description="fsync the file after each line (slower, durable)"
    )


class JsonlSink:
    """Appends each event's JSON body and a newline; `-` writes to stdout."""

    def __init__(self, name: str, target: str, options: JsonlOptions) -> None:
        if not target:
            raise SinkConfigError(f"sink {name}: jsonl needs a file path or -")
        self.name = name
        self.path = None if target == "-" else Path(target)
        self._fsync = options.fsync
        self._file: TextIO | None = None

    async def start(self) -> None:
        if self._file is not None:
            return
        if self.path is None:
            self._file = sys.stdout
            return
        try:
            self._file = self.path.open("a", encoding="utf-8")
        except OSError as exc:
            raise SinkError(f"cannot open {self.path}: {exc}") from exc

    async def send(self, event: StoredEvent) -> None:
        await self.start()
        assert self._file is not None
        try:
            self._file.write(event.body + "\n")
            self._file.flush()
            if self._fsync:
                await asyncio.to_thread(os.fsync, self._file.fileno())
        except OSError as exc:
            raise SinkError(f"cannot write {self.path or 'stdout'}: {exc}") from exc

    async def aclose(self) -> None:
        if self._file is not None and self.path is not None:
            self._file.close()
        self._file = None


def create(spec: SinkSpec) -> JsonlSink:
    return JsonlSink(spec.name, spec.target, sink_options(JsonlOptions, spec))
