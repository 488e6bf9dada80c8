"""An example swapwatch plugin, in its own package: a CSV sink and a brightness signal.

Sink factory (entry point group `swapwatch.sinks`): takes a SinkSpec, returns an object with
`name`, `async start()`, `async send(event)`, `async aclose()`. `send` raises SinkError for a
failure worth retrying, SinkRejected for one that is not.

Signal (group `swapwatch.signals`): a no-argument factory whose object has `name`,
`infer(crops) -> logits` and `close()`.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import TextIO

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from swapwatch.events import SinkError, SinkSpec, StoredEvent
from swapwatch.events.sinks.base import sink_options

FIELDS = ("seq", "id", "type", "stream")


class CsvOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    header: bool = Field(default=True, description="write a header row into a new file")


class CsvSink:
    """Appends one row per event: sequence number, id, type, stream."""

    def __init__(self, name: str, path: Path, options: CsvOptions) -> None:
        self.name = name
        self.path = path
        self.options = options
        self._file: TextIO | None = None

    async def start(self) -> None:
        if self._file is None:
            new = not self.path.exists()
            try:
                self._file = self.path.open("a", newline="", encoding="utf-8")
            except OSError as exc:
                raise SinkError(f"cannot open {self.path}: {exc}") from exc
            if new and self.options.header:
                csv.writer(self._file).writerow(FIELDS)

    async def send(self, event: StoredEvent) -> None:
        await self.start()
        assert self._file is not None
        try:
            csv.writer(self._file).writerow([event.seq, event.id, event.type, event.stream])
            self._file.flush()
        except OSError as exc:
            raise SinkError(f"cannot write {self.path}: {exc}") from exc

    async def aclose(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


def create_sink(spec: SinkSpec) -> CsvSink:
    return CsvSink(spec.name, Path(spec.target), sink_options(CsvOptions, spec))


class BrightnessSignal:
    """A toy signal: very bright or very dark crops get a positive logit. Shows the shape only."""

    name = "brightness"

    def infer(self, crops: np.ndarray) -> np.ndarray:
        mean = crops.reshape(len(crops), -1).mean(axis=1) / 255.0
        logits: np.ndarray = (np.abs(mean - 0.5) * 4.0 - 1.0).astype(np.float32)
        return logits

    def close(self) -> None:
        pass
