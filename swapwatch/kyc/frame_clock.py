"""Signal (c), first half: how regular the frame clock is.

A real camera's frames are stamped when its sensor delivers them: the intervals jitter by tenths
of a millisecond or more (exposure changes, USB scheduling) and frames go missing. A virtual
camera, a file or a renderer paces its frames by a timer: every interval the same, to the tick.
In WebRTC the sender stamps each frame's capture time as its RTP timestamp (90 kHz), so the
regularity of those stamps describes the source; arrival times add the network's own jitter
and are reported beside them. On a plain stream (RTMP, a file) the media timestamps are the
encoder's, always regular: there the clock signal does not apply and is not fed.

O(1) memory: running mean and variance (Welford) of the intervals.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from swapwatch.kyc.readings import Contribution, SignalReading

RTP_VIDEO_CLOCK_HZ = 90_000
# Intervals this regular (standard deviation, ms) come from a timer, not a sensor: one 90 kHz
# tick is 0.011 ms, so a timer-paced 30 fps source reads ~0.005 ms from rounding alone.
REGULAR_BELOW_MS = 0.1
MIN_INTERVALS = 30
# An interval longer than this is a pause or a lost frame, not the clock's jitter.
GAP_FACTOR = 1.5


@dataclass(slots=True)
class _RunningStats:
    count: int = 0
    mean: float = 0.0
    squares: float = 0.0

    def add(self, value: float) -> None:
        self.count += 1
        delta = value - self.mean
        self.mean += delta / self.count
        self.squares += delta * (value - self.mean)

    @property
    def std(self) -> float:
        return math.sqrt(self.squares / (self.count - 1)) if self.count > 1 else 0.0


class FrameClock:
    """Fed each frame's capture timestamp (RTP ticks) and arrival time (seconds)."""

    def __init__(self, clock_hz: int = RTP_VIDEO_CLOCK_HZ) -> None:
        self._clock_hz = clock_hz
        self._last_stamp: int | None = None
        self._last_arrival: float | None = None
        self._stamped = _RunningStats()
        self._arrived = _RunningStats()
        self.gaps = 0

    def update(self, stamp: int | None, arrival_s: float | None = None) -> None:
        """One frame: its capture timestamp in clock ticks (None if unknown) and its arrival
        time in seconds (None if unknown). Timestamps wrap at 2**32 as RTP's do."""
        if stamp is not None:
            if self._last_stamp is not None:
                ticks = (stamp - self._last_stamp) % (1 << 32)
                interval_ms = 1000.0 * ticks / self._clock_hz
                typical = self._stamped.mean
                if ticks == 0:
                    pass  # the same capture sent twice (a retransmission): no interval
                elif self._stamped.count >= 5 and interval_ms > GAP_FACTOR * typical:
                    self.gaps += 1
                else:
                    self._stamped.add(interval_ms)
            self._last_stamp = stamp
        if arrival_s is not None:
            if self._last_arrival is not None:
                self._arrived.add(1000.0 * (arrival_s - self._last_arrival))
            self._last_arrival = arrival_s

    @property
    def capture_jitter_ms(self) -> float | None:
        """Standard deviation of the capture intervals (gaps left out), ms."""
        return self._stamped.std if self._stamped.count >= 2 else None

    @property
    def arrival_jitter_ms(self) -> float | None:
        return self._arrived.std if self._arrived.count >= 2 else None

    @property
    def frame_rate(self) -> float | None:
        """The capture clock's frame rate (from the mean interval), or the arrivals'."""
        stats = self._stamped if self._stamped.count else self._arrived
        return 1000.0 / stats.mean if stats.count and stats.mean > 0 else None

    def reading(self) -> SignalReading:
        name, unit, threshold = "frame_clock", "ms (std of capture intervals)", REGULAR_BELOW_MS
        jitter = self.capture_jitter_ms
        if jitter is None or self._stamped.count < MIN_INTERVALS:
            return SignalReading(
                name,
                None if jitter is None else round(jitter, 4),
                unit,
                threshold,
                Contribution.NONE,
                f"{self._stamped.count} capture intervals, {MIN_INTERVALS} needed",
            )
        arrival = self.arrival_jitter_ms
        beside = "" if arrival is None else f"; arrivals jitter {arrival:.2f} ms"
        if jitter < REGULAR_BELOW_MS:
            return SignalReading(
                name,
                round(jitter, 4),
                unit,
                threshold,
                Contribution.WEAK,
                f"frames paced by a timer, not a sensor ({self._stamped.count} intervals{beside})",
            )
        return SignalReading(
            name,
            round(jitter, 4),
            unit,
            threshold,
            Contribution.NONE,
            f"capture intervals jitter as a sensor's do ({self._stamped.count} intervals{beside})",
        )
