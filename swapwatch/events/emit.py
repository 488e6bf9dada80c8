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
from swapwatch.events.model import Event, EventType
from swapwatch.events.outbox import EventLog
from swapwatch.events.run import RunEvents, crashed_event
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
    """Records the events of one run of one stream in an outbox.

    `run` identifies this run; pass the same run id when resuming from a checkpoint, so the
    repeated events keep their ids (and the outbox stores them once). The events themselves are
    made by `RunEvents`, as the stream worker makes them.
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
        self._events = RunEvents.of_run(stream, self.run)

    def started(self, detail: Mapping[str, Any] | None = None) -> None:
        self.lifecycle(EventType.STREAM_STARTED, detail)

    def ended(self, detail: Mapping[str, Any] | None = None) -> None:
        self.lifecycle(EventType.STREAM_ENDED, detail)

    def failed(self, error: BaseException) -> None:
        self.lifecycle(EventType.STREAM_ERROR, {"error": str(error), "kind": type(error).__name__})

    def lifecycle(self, kind: EventType, detail: Mapping[str, Any] | None = None) -> Event:
        """Record a stream event (started, ended, error)."""
        return self._append(self._events.lifecycle(kind, detail))

    def crashed_event(self) -> Event:
        """The `stream.ended` (reason `crashed`) that closes this run; see `crashed_event`."""
        return crashed_event(self.stream, self.run)

    def alert(self, alert: Alert) -> None:
        """Record one alarm change."""
        kind = EventType.from_alarm(alert.type)
        evidence = alarm_evidence(alert, self.decision)
        self._append(self._events.alarm(kind, alert.track_id, alert.time, alert.score, evidence))

    def alerts(self, alerts: Iterable[Alert]) -> None:
        """One event per alarm change, in order (a frame's `alerts`)."""
        for alert in alerts:
            self.alert(alert)

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
