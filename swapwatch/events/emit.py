"""From one stream's analysis to events in the outbox: lifecycle and alarm changes.

Appending never stops the analysis: when the outbox is full or broken, the error is logged and
counted (`lost`), and frames go on being analysed.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Mapping
from typing import Any

from swapwatch.events.errors import OutboxError
from swapwatch.events.model import Event, EventType, derived_id, utc_now
from swapwatch.events.outbox import EventLog
from swapwatch.fusion import DecisionConfig
from swapwatch.stream.pipeline import Alert, FrameResult

log = logging.getLogger(__name__)


class StreamEvents:
    """The events of one run of one stream.

    `run` identifies this run; pass the same run id when resuming from a checkpoint, so the
    repeated events keep their ids (and the outbox stores them once).
    """

    def __init__(
        self,
        outbox: EventLog,
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

    def started(self, detail: Mapping[str, Any] | None = None) -> None:
        self._append(EventType.STREAM_STARTED, detail=detail)

    def ended(self, detail: Mapping[str, Any] | None = None) -> None:
        self._append(EventType.STREAM_ENDED, detail=detail)

    def failed(self, error: BaseException) -> None:
        self._append(
            EventType.STREAM_ERROR, detail={"error": str(error), "kind": type(error).__name__}
        )

    def alert(self, alert: Alert) -> None:
        evidence: dict[str, Any] = {"cusum": round(alert.cusum, 4)}
        if self.decision is not None:
            evidence["threshold"] = self.decision.h
            evidence["policy"] = self.decision.policy.value
        self._append(
            EventType.from_alarm(alert.type),
            track=alert.track_id,
            media_time=alert.time,
            score=alert.score,
            evidence=evidence,
        )

    def on_result(self, result: FrameResult) -> None:
        """The pipeline's per-frame callback: one event per alarm change."""
        for alert in result.alerts:
            self.alert(alert)

    def _append(
        self,
        kind: EventType,
        track: int | None = None,
        media_time: float | None = None,
        score: float | None = None,
        evidence: Mapping[str, Any] | None = None,
        detail: Mapping[str, Any] | None = None,
    ) -> None:
        when = "" if media_time is None else f"{media_time:.6f}"
        event = Event(
            id=derived_id(self.stream, self.run, kind.value, track, when),
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
        try:
            self.outbox.append(event)
        except OutboxError as exc:
            self.lost += 1
            log.error("event %s of %s not recorded: %s", kind.value, self.stream, exc)
            return
        self.appended += 1
