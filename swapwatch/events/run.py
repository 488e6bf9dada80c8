"""The events of one worker's runs, with ids that depend only on what they describe.

A run is one connection of a stream's source. Its id is derived from the stream, the worker's
`epoch` (fixed when the worker is first made, kept through checkpoints) and the run's number, and
each event's id from the run, its type and its place among the run's events of its kind (plus
track and media time for alarms). A worker restored from a checkpoint therefore gives a repeated
event the id it had, and receivers drop the repeat; a fresh worker (new epoch) never collides
with an earlier process's runs.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any

from swapwatch.events.model import Event, EventType, derived_id, utc_now


def new_epoch() -> str:
    return uuid.uuid4().hex


class RunEvents:
    """Builds (never records) the events of one stream's runs; `state()` / `restore()` carry
    the counters between processes."""

    def __init__(self, stream: str, epoch: str | None = None) -> None:
        self.stream = stream
        self.epoch = epoch or new_epoch()
        self.number = 0  # runs begun by this worker
        self.run: str | None = None
        self.lifecycle_count = 0  # numbers the run's stream events
        self.alarm_count = 0  # numbers its alarm events: a repeated media time keeps them apart

    @classmethod
    def of_run(cls, stream: str, run: str) -> RunEvents:
        """The events of one run whose id the caller chose (the outbox API, `StreamEvents`)."""
        events = cls(stream)
        events.run = run
        return events

    def begin_run(self) -> str:
        """A new run (a new connection of the source); its id."""
        self.number += 1
        self.run = derived_id(self.stream, self.epoch, "run", self.number)
        self.lifecycle_count = 0
        self.alarm_count = 0
        return self.run

    def lifecycle(self, kind: EventType, detail: Mapping[str, Any] | None = None) -> Event:
        """The next stream event (started, ended, error) of the current run; a stream event
        before any run begins one."""
        if self.run is None:
            self.begin_run()
        assert self.run is not None
        self.lifecycle_count += 1
        return self._event(kind, self.run, detail=detail, ordinal=self.lifecycle_count)

    def alarm(
        self,
        kind: EventType,
        track: int,
        media_time: float,
        score: float,
        evidence: Mapping[str, Any] | None,
    ) -> Event:
        """The next alarm event (raised, cleared) of the current run."""
        if self.run is None:
            self.begin_run()
        assert self.run is not None
        self.alarm_count += 1
        return self._event(
            kind,
            self.run,
            track=track,
            media_time=media_time,
            score=score,
            evidence=evidence,
            ordinal=self.alarm_count,
        )

    def _event(
        self,
        kind: EventType,
        run: str,
        *,
        track: int | None = None,
        media_time: float | None = None,
        score: float | None = None,
        evidence: Mapping[str, Any] | None = None,
        detail: Mapping[str, Any] | None = None,
        ordinal: int,
    ) -> Event:
        return Event(
            id=event_id(self.stream, run, kind, track, media_time, ordinal),
            type=kind,
            time=utc_now(),
            stream=self.stream,
            run=run,
            track=track,
            media_time=media_time,
            score=score,
            evidence=evidence,
            detail=detail,
        )

    def state(self) -> dict[str, Any]:
        return {
            "stream": self.stream,
            "epoch": self.epoch,
            "number": self.number,
            "run": self.run,
            "lifecycle_count": self.lifecycle_count,
            "alarm_count": self.alarm_count,
        }

    @classmethod
    def restore(cls, state: Mapping[str, Any]) -> RunEvents:
        events = cls(str(state["stream"]), str(state["epoch"]))
        events.number = int(state["number"])
        events.run = state["run"]
        events.lifecycle_count = int(state["lifecycle_count"])
        events.alarm_count = int(state["alarm_count"])
        return events


def crashed_event(stream: str, run: str) -> Event:
    """The `stream.ended` (reason `crashed`) that closes a run after the process running it
    died; its id is fixed by the run, so closing it again after another crash repeats it, never
    adds a second one."""
    return Event(
        id=derived_id(stream, run, EventType.STREAM_ENDED.value, "crashed"),
        type=EventType.STREAM_ENDED,
        time=utc_now(),
        stream=stream,
        run=run,
        detail={"reason": "crashed"},
    )


def event_id(
    stream: str,
    run: str,
    kind: EventType,
    track: int | None,
    media_time: float | None,
    ordinal: int | None,
) -> str:
    """The id of an event: from stream, run, type, track, media time and its ordinal."""
    when = "" if media_time is None else f"{media_time:.6f}"
    parts: tuple[object, ...] = (stream, run, kind.value, track, when)
    return derived_id(*parts) if ordinal is None else derived_id(*parts, ordinal)
