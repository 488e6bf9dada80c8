"""From one stream's analysis to events in the outbox: lifecycle and alarm changes.

Appending never stops the analysis: when the outbox is full or broken, the error is logged and
counted (`lost`), and frames go on being analysed.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterable, Mapping
from typing import Any

from swapwatch.events.errors import OutboxError
from swapwatch.events.model import Event, EventType, derived_id, utc_now
from swapwatch.events.outbox import EventLog
from swapwatch.events.run import event_id
from swapwatch.fusion import Alert, DecisionConfig

log = logging.getLogger(__name__)


def alarm_evidence(alert: Alert, decision: DecisionConfig | None) -> dict[str, Any]:
    """What an alarm event says about why: the CUSUM value, and the threshold and policy."""
    evidence: dict[str, Any] = {"cusum": round(alert.cusum, 4)}
    if decision is not None:
        evidence["threshold"] = decision.h
        evidence["policy"] = decision.policy.value
    return evidence


class StreamEvents:
    """The events of one run of one stream.

    `run` identifies this run; pass the same run id when resuming from a checkpoint, so the
    repeated events keep their ids (and the outbox stores them once).
    """

    def __init__(
        self,
        outbox: EventLog | None,
        stream: str,
        run: str | None = None,
        decision: DecisionConfig | None = None,
    ) -> None:
        self.outbox = outbox
        self.stream = stream
        self.run = run or str(uuid.uuid4())
        self.decision = decision
        self.appended = 0
        self.lost = 0
        self.last_error: str | None = None
        self._lifecycle = 0  # numbers the run's stream events: a reconnect's are distinct
        self._alarms = 0  # numbers its alarm events: a media clock that jumps back repeats times

    def started(self, detail: Mapping[str, Any] | None = None) -> None:
        self.lifecycle(EventType.STREAM_STARTED, detail)

    def ended(self, detail: Mapping[str, Any] | None = None) -> None:
        self.lifecycle(EventType.STREAM_ENDED, detail)

    def failed(self, error: BaseException) -> None:
        self.lifecycle(EventType.STREAM_ERROR, {"error": str(error), "kind": type(error).__name__})

    def lifecycle(self, kind: EventType, detail: Mapping[str, Any] | None = None) -> Event:
        """Record a stream event (started, ended, error)."""
        return self._append(self.lifecycle_event(kind, detail))

    def lifecycle_event(self, kind: EventType, detail: Mapping[str, Any] | None = None) -> Event:
        """The next stream event of this run, not recorded; the n-th of a run keeps its id when
        the run is repeated."""
        self._lifecycle += 1
        return self._event(kind, detail=detail, ordinal=self._lifecycle)

    def crashed_event(self) -> Event:
        """The `stream.ended` (reason `crashed`) that closes this run after the process running
        it died; its id is fixed by the run, so closing it again after another crash repeats
        it, never adds a second one."""
        return Event(
            id=derived_id(self.stream, self.run, EventType.STREAM_ENDED.value, "crashed"),
            type=EventType.STREAM_ENDED,
            time=utc_now(),
            stream=self.stream,
            run=self.run,
            detail={"reason": "crashed"},
        )

    def alert(self, alert: Alert) -> None:
        self._append(
            self.alarm_event(
                EventType.from_alarm(alert.type),
                alert.track_id,
                alert.time,
                alert.score,
                alarm_evidence(alert, self.decision),
            )
        )

    def alarm_event(
        self,
        kind: EventType,
        track: int,
        media_time: float,
        score: float,
        evidence: Mapping[str, Any] | None,
    ) -> Event:
        """An alarm raised or cleared, not recorded; the n-th of a run keeps its id on a rerun."""
        self._alarms += 1
        return self._event(
            kind,
            track=track,
            media_time=media_time,
            score=score,
            evidence=evidence,
            ordinal=self._alarms,
        )

    def alerts(self, alerts: Iterable[Alert]) -> None:
        """One event per alarm change, in order (a frame's `alerts`)."""
        for alert in alerts:
            self.alert(alert)

    def _event(
        self,
        kind: EventType,
        track: int | None = None,
        media_time: float | None = None,
        score: float | None = None,
        evidence: Mapping[str, Any] | None = None,
        detail: Mapping[str, Any] | None = None,
        ordinal: int | None = None,
    ) -> Event:
        return Event(
            id=event_id(self.stream, self.run, kind, track, media_time, ordinal),
            type=kind,
            time=utc_now(),
            stream=self.stream,
            run=self.run,
            track=track,
            media_time=media_time,
            score=score,
            evidence=evidence,
            detail=detail,
        )

    def _append(self, event: Event) -> Event:
        """Append `event`; on failure it is counted in `lost`, not raised."""
        if self.outbox is None:
            self.lost += 1
            self.last_error = "no outbox"
            return event
        try:
            self.outbox.append(event)
        except OutboxError as exc:
            self.lost += 1
            self.last_error = str(exc)
            log.error("event %s of %s not recorded: %s", event.type.value, self.stream, exc)
            return event
        self.appended += 1
        return event
