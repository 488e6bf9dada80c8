"""`watch`: a live terminal view of one stream (a file plays at media speed, as if live).

On a terminal the view redraws in place a few times a second (plain ANSI, no curses). Anywhere
else it prints one line per alert and a status line every few seconds, so it reads well in logs.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import sys
import time
from collections import deque
from typing import Any, TextIO

from swapwatch.cli.common import (
    analyzer_from_args,
    close_analyzer,
    engine_from_args,
    source_from_args,
)
from swapwatch.cli.interrupt import (
    Interrupted,
    StoppableSource,
    hard_stop_from_args,
    run_until_signalled,
    sigterm_as_interrupt,
)
from swapwatch.cli.scan_events import events_from_args, events_stream_id
from swapwatch.fusion import AlarmChange, Alert
from swapwatch.stream.frames import SourceCounters, VideoInfo
from swapwatch.stream.pipeline import FrameResult, StreamAnalyzer
from swapwatch.stream.sink import EventSink
from swapwatch.stream.source import classify, stream_name
from swapwatch.stream.tracks import TrackStatus, TrackTable
from swapwatch.stream.worker import StreamWorker, WorkerConfig

REFRESH_S = 0.25  # terminal redraw period (at most 4 per second)
STATUS_EVERY_S = 2.0  # status line period when not on a terminal
RATE_WINDOW_S = 2.0  # frame rates are measured over this much wall time
ALERTS_SHOWN = 5
BAR_WIDTH = 10
CLEAR, HOME, CLEAR_LINE, CLEAR_BELOW = "\x1b[2J", "\x1b[H", "\x1b[K", "\x1b[J"
HIDE_CURSOR, SHOW_CURSOR, RED, RESET = "\x1b[?25l", "\x1b[?25h", "\x1b[1;31m", "\x1b[0m"


class RateMeter:
    """Events per second over the last `window` seconds, from samples of a running total."""

    def __init__(self, window: float = RATE_WINDOW_S) -> None:
        self._window = window
        self._samples: deque[tuple[float, int]] = deque()

    def update(self, now: float, total: int) -> float:
        self._samples.append((now, total))
        while len(self._samples) > 2 and now - self._samples[1][0] >= self._window:
            self._samples.popleft()
        then, before = self._samples[0]
        return (total - before) / (now - then) if now > then else 0.0


def track_state(track: TrackStatus) -> str:
    if track.alarm:
        return "ALARM"
    return f"skipped: {track.skip_reason}" if track.skip_reason else "scoring"


def track_score(track: TrackStatus) -> float | None:
    """Its display probability, once a frame of it was scored."""
    return track.score if track.frames_scored else None


class WatchView:
    """Draws a worker's status: its track table, counters and the alerts it raised."""

    def __init__(self, out: TextIO, tty: bool, h: float, counters: SourceCounters) -> None:
        self.out, self.tty, self.h, self.counters = out, tty, h, counters
        self.info: VideoInfo | None = None
        self.rows = TrackTable()  # until `follow` gives it the worker's own
        self.alerts: list[Alert] = []
        self.media_time = 0.0
        self.faces = 0
        self.analysed = 0
        self.fps_in = self.fps_analysed = 0.0
        self._in, self._analysed = RateMeter(), RateMeter()
        self._started = time.monotonic()
        self._last_status = self._started

    def follow(self, tracks: TrackTable) -> None:
        """Show `tracks`, the table the worker keeps (and checkpoints) for its status."""
        self.rows = tracks

    def start(self, info: VideoInfo, paced: bool) -> None:
        self.info = info
        if self.tty:
            self.out.write(HIDE_CURSOR + CLEAR)
        else:
            how = "a file played at media speed" if paced else ("live" if info.live else "file")
            self._line(f"watching {info.url}: {self._format()} ({how})")

    def on_result(self, result: FrameResult) -> None:
        self.analysed += 1
        self.media_time = result.time
        self.faces = len(result.faces)
        self.alerts.extend(result.alerts)
        if not self.tty:
            for alert in result.alerts:
                self._line(self._alert(alert))

    def tick(self) -> None:
        now = time.monotonic()
        self.fps_in = self._in.update(now, self.counters.decoded)
        self.fps_analysed = self._analysed.update(now, self.analysed)
        if self.tty:
            self.draw()
        elif now - self._last_status >= STATUS_EVERY_S:
            self._last_status = now
            tracks = "".join(
                f" | face {r.track_id} {_score(track_score(r))} cusum {r.cusum / self.h:.2f}h "
                f"{track_state(r)}"
                for r in self.rows.sorted()
            )
            self._line(f"status {self.media_time:.2f}s: {self._rates()}{tracks}")

    def draw(self, final: bool = False) -> None:
        width = shutil.get_terminal_size().columns
        lines = [
            f"swapwatch watch  {self.info.url if self.info else ''}",
            f"{self._format()}  media {self.media_time:.1f} s",
            self._rates(),
            "",
            f"{'face':>5}  {'score':<{BAR_WIDTH + 5}}  {'CUSUM/h':>7}  state",
        ]
        for r in self.rows.sorted():
            score = track_score(r)
            bar = _bar(score) if score is not None else " " * BAR_WIDTH + "   - "
            lines.append(f"{r.track_id:>5}  {bar}  {r.cusum / self.h:>7.2f}  {track_state(r)}")
        if not self.rows.tracks:
            lines.append("   no faces")
        lines += ["", "latest alerts" if self.alerts else "no alerts"]
        lines += [f"  {self._alert(a)}" for a in self.alerts[-ALERTS_SHOWN:]]
        lines += [] if final else ["", "Ctrl-C to stop"]
        text = "".join(line[:width] + CLEAR_LINE + "\n" for line in lines)
        self.out.write(HOME + text.replace("ALARM", f"{RED}ALARM{RESET}") + CLEAR_BELOW)
        self.out.flush()

    def finish(self, interrupted: bool) -> None:
        """Leave the screen as a terminal expects it and print the summary line."""
        if self.tty:
            self.draw(final=True)
            self.out.write(SHOW_CURSOR)
        raised = [a for a in self.alerts if a.type is AlarmChange.RAISED]
        alarmed = sorted({a.track_id for a in raised})
        c = self.counters
        self._line(
            f"summary: {'interrupted' if interrupted else 'stream ended'} after "
            f"{self.media_time:.2f}s of media in {time.monotonic() - self._started:.1f}s; "
            f"{c.decoded} frames decoded, {self.analysed} analysed, {c.dropped} dropped; "
            f"alerts raised: {len(raised)}"
            + (f" (faces {', '.join(map(str, alarmed))})" if alarmed else "")
        )

    def _format(self) -> str:
        if self.info is None:
            return ""
        fps = f"{self.info.fps:.2f} fps" if self.info.fps else "fps unknown"
        return f"{self.info.width}x{self.info.height} {self.info.codec} {fps}"

    def _rates(self) -> str:
        return (
            f"in {self.fps_in:.1f} fps, analysed {self.fps_analysed:.1f} fps, "
            f"dropped {self.counters.dropped}, faces {self.faces}"
        )

    def _alert(self, a: Alert) -> str:
        return (
            f"{a.type.value} face {a.track_id} at {a.time:.2f}s "
            f"(score {a.score:.2f}, cusum {a.cusum / self.h:.2f}h)"
        )

    def _line(self, text: str) -> None:
        self.out.write(text + "\n")
        self.out.flush()


def _bar(score: float) -> str:
    filled = round(max(0.0, min(1.0, score)) * BAR_WIDTH)
    return "\u2588" * filled + "\u2591" * (BAR_WIDTH - filled) + f" {score:.2f}"


def _score(score: float | None) -> str:
    return "-" if score is None else f"{score:.2f}"


async def _tick(view: WatchView) -> None:
    while True:
        await asyncio.sleep(REFRESH_S)
        view.tick()


async def _watch(
    source: StoppableSource,
    analyzer: StreamAnalyzer,
    view: WatchView,
    paced: bool,
    sink: EventSink,
    config: WorkerConfig,
) -> None:
    """Run the stream through a worker beside the view's ticker, until either ends."""

    def end_detail() -> dict[str, Any]:
        return {"reason": "end of stream" if source.stopped_by is None else "interrupted"}

    worker = StreamWorker(
        config,
        lambda: source,
        lambda: analyzer,
        sink,
        on_result=view.on_result,
        end_detail=end_detail,
        on_open=lambda info: view.start(info, paced),
    )
    view.follow(worker.status.tracks)
    stream = asyncio.create_task(worker.run())
    ticker = asyncio.create_task(_tick(view))
    try:
        done, _ = await asyncio.wait({stream, ticker}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stream.cancel()
        ticker.cancel()
        await asyncio.wait({stream, ticker})
        worker.abandon("interrupted")  # only when it did not end by itself
    for task in done:
        task.result()  # a bug in the worker or the view
    if worker.error is not None:
        raise worker.error


def watch(args: argparse.Namespace) -> int:
    """Run the live view until the stream ends, Ctrl-C or SIGTERM; 0 in every case."""
    with sigterm_as_interrupt():  # SIGTERM stops the view as Ctrl-C does, never silently
        return _watch_until_stopped(args)


def _watch_until_stopped(args: argparse.Namespace) -> int:
    _, is_file = classify(args.source)
    if is_file:
        source = source_from_args(args.source, args, live=True, pace=True)
    else:
        source = source_from_args(args.source, args)
    engine = engine_from_args(args)
    analyzer = analyzer_from_args(args, engine)
    out = sys.stdout
    view = WatchView(out, out.isatty(), analyzer.decision_config.h, source.counters)
    events = events_from_args(args)
    stoppable = StoppableSource(source)
    config = WorkerConfig(
        events_stream_id(args),
        started_detail={"source": stream_name(args.source)},
        close_analyzer=False,
    )
    interrupted = False
    try:
        asyncio.run(
            run_until_signalled(
                stoppable,
                _watch(stoppable, analyzer, view, is_file, events, config),
                stop_began=hard_stop_from_args(args),
            )
        )
        interrupted = stoppable.stopped_by is not None
    except (Interrupted, KeyboardInterrupt):  # a second signal
        interrupted = True
    finally:
        events.close()
        close_analyzer(analyzer, args)
        if view.tty:
            out.write(SHOW_CURSOR)
    view.finish(interrupted)
    return 0
