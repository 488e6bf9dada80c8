"""The stream worker: its state table, checkpoints that resume with the same results and event
ids, and event ids that stay the same for a resumed run and differ for a new one."""

from __future__ import annotations

import asyncio
import functools
import json
from pathlib import Path
from typing import Any

import pytest
from media import Placement, write_linear_model, write_video

from swapwatch.cli.scan_events import NoEvents, ScanEvents
from swapwatch.engines import create_engine
from swapwatch.engines.base import Engine
from swapwatch.errors import EndOfStream, ModelError
from swapwatch.events.model import EventType
from swapwatch.events.outbox import EventLog
from swapwatch.events.run import RunEvents
from swapwatch.fusion import DecisionConfig
from swapwatch.server.config import ServiceConfig
from swapwatch.server.manager import StreamManager, StreamSettings
from swapwatch.server.metrics import ServiceMetrics
from swapwatch.stream.assembly import AnalysisSettings, build_analyzer
from swapwatch.stream.frames import Frame, VideoInfo
from swapwatch.stream.lifecycle import TRANSITIONS, IllegalTransition, Lifecycle, StreamState
from swapwatch.stream.pipeline import FrameResult, StreamAnalyzer
from swapwatch.stream.scan import ScanEventSettings, scan
from swapwatch.stream.sink import EventList, EventSink
from swapwatch.stream.source import AvSource, FrameSource
from swapwatch.stream.worker import StreamWorker, WorkerConfig

S = StreamState
LEGAL = [
    (S.STARTING, S.RUNNING),
    (S.STARTING, S.RECONNECTING),
    (S.STARTING, S.ENDED),
    (S.STARTING, S.FAILED),
    (S.STARTING, S.STOPPED),
    (S.RUNNING, S.RECONNECTING),
    (S.RUNNING, S.ENDED),
    (S.RUNNING, S.FAILED),
    (S.RUNNING, S.STOPPED),
    (S.RECONNECTING, S.RUNNING),
    (S.RECONNECTING, S.FAILED),
    (S.RECONNECTING, S.STOPPED),
]


@pytest.mark.parametrize(("start", "to"), [(a, b) for a in S for b in S])
def test_the_state_table_allows_only_its_moves(start: StreamState, to: StreamState) -> None:
    lifecycle = Lifecycle(start)
    if (start, to) in LEGAL:
        lifecycle.move(to)
        assert lifecycle.state is to
    else:
        with pytest.raises(IllegalTransition, match=f"from {start} to {to}"):
            lifecycle.move(to)
        assert lifecycle.state is start
    assert lifecycle.finished == (lifecycle.state in (S.ENDED, S.FAILED, S.STOPPED))
    assert set(LEGAL) == {(a, b) for a, moves in TRANSITIONS.items() for b in moves}


class Window(FrameSource):
    """A real source's frames `skip` onwards, up to frame `stop` (a worker that died there, or
    one that picks the stream up from there)."""

    def __init__(self, inner: FrameSource, skip: int = 0, stop: int | None = None) -> None:
        self.inner, self.skip, self.stop = inner, skip, stop
        self.counters = inner.counters
        self._read = 0

    async def start(self) -> VideoInfo:
        return await self.inner.start()

    async def recv(self) -> Frame:
        while True:
            if self.stop is not None and self._read >= self.stop:
                raise EndOfStream("window ends")
            frame = await self.inner.recv()
            self._read += 1
            if self._read > self.skip:
                return frame

    async def aclose(self) -> None:
        await self.inner.aclose()


def summary(result: FrameResult) -> tuple[Any, ...]:
    return (
        result.frame_index,
        result.time,
        tuple((f.track_id, f.box, f.skip_reason, f.logit, f.update) for f in result.faces),
        tuple(result.alerts),
    )


@pytest.fixture(scope="module")
def swaying_face(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("worker") / "sway.mp4"
    return write_video(path, [Placement(0.5, 0.5, 220, sway=12.0)], seconds=2.0, fps=15)


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> Engine:
    # Reacts to the colour of the crop it is given, so any drift of the tracking shows.
    model = write_linear_model(
        tmp_path_factory.mktemp("worker") / "red.onnx", weights=(8.0, 0.0, -8.0), bias=2.0
    )
    return create_engine("onnxruntime", model)


def worker_on(
    engine: Engine,
    video: Path,
    sink: EventList,
    results: list[FrameResult],
    skip: int = 0,
    stop: int | None = None,
    on_result: Any = None,
) -> StreamWorker:
    settings = AnalysisSettings(decision=DecisionConfig(h=4.0))

    def record(result: FrameResult) -> None:
        results.append(result)
        if on_result is not None:
            on_result(result)

    return StreamWorker(
        WorkerConfig("cam", epoch="one worker"),
        lambda: Window(AvSource(str(video)), skip, stop),
        lambda: build_analyzer(engine, settings),
        sink,
        on_result=record,
    )


@pytest.mark.parametrize("when", ["before any alarm", "while its alarm is up"])
def test_a_worker_restored_from_a_checkpoint_goes_on_as_if_never_stopped(
    engine: Engine, swaying_face: Path, when: str
) -> None:
    whole_events, whole = EventList(), []
    events_after: list[int] = []  # events emitted once each result was in

    uninterrupted = worker_on(
        engine,
        swaying_face,
        whole_events,
        whole,
        on_result=lambda _: events_after.append(len(whole_events.events)),
    )
    asyncio.run(uninterrupted.run())
    first_alarm = next(i for i, r in enumerate(whole) if r.alerts)
    # Mid-way between two detector runs before the alarm, or two frames after it.
    split = 7 if when == "before any alarm" else first_alarm + 2
    assert (split <= first_alarm) == (when == "before any alarm") and split < len(whole)

    first_events, first = EventList(), []
    saved: list[str] = []
    first_worker: StreamWorker

    def checkpoint(result: FrameResult) -> None:
        if len(first) == split:
            saved.append(json.dumps(first_worker.state_now()))  # shipped as JSON

    first_worker = worker_on(
        engine, swaying_face, first_events, first, stop=split, on_result=checkpoint
    )
    asyncio.run(first_worker.run())

    rest_events, rest = EventList(), []
    resumed = worker_on(engine, swaying_face, rest_events, rest, skip=split)
    resumed.restore(json.loads(saved[0]))
    asyncio.run(resumed.run())

    assert [summary(r) for r in first] == [summary(r) for r in whole[:split]]
    assert len(rest) == len(whole) - split > 0
    assert [summary(r) for r in rest] == [summary(r) for r in whole[split:]]
    later = whole_events.events[events_after[split - 1] :]
    raised_later = [e for e in later if e.type is EventType.ALERT_RAISED]
    # Before: the alarm comes after the restore, under the uninterrupted run's id. While it is
    # up: the restored worker knows it raised it and does not raise it again.
    assert bool(raised_later) == (when == "before any alarm")
    assert [(e.id, e.type, e.run, e.track, e.media_time) for e in rest_events.events] == [
        (e.id, e.type, e.run, e.track, e.media_time) for e in later
    ]
    for counter in ("frames_analysed", "alarms_raised"):  # its source decoded the first part too
        assert resumed.status.counters()[counter] == uninterrupted.status.counters()[counter]
    assert resumed.state is StreamState.ENDED


def test_event_ids_repeat_for_a_resumed_run_and_differ_for_a_new_worker() -> None:
    def events(runs: RunEvents) -> list[str]:
        return [
            runs.lifecycle(EventType.STREAM_STARTED, {"width": 640}).id,
            runs.alarm(EventType.ALERT_RAISED, 1, 2.5, 0.9, None).id,
        ]

    first = RunEvents("cam")
    first.begin_run()
    saved = json.loads(json.dumps(first.state()))
    made = events(first)
    again = RunEvents.restore(saved)
    assert events(again) == made and again.run == first.run
    other = RunEvents("cam")
    other.begin_run()
    assert other.run != first.run and not set(events(other)) & set(made)
    next_run = RunEvents.restore(saved)
    next_run.begin_run()
    assert next_run.run != first.run and not set(events(next_run)) & set(made)


def test_scan_watch_and_the_service_hand_events_to_one_sink_interface(
    engine: Engine, swaying_face: Path, fake_model: Path, tmp_path: Path
) -> None:
    outbox = EventLog(tmp_path / "events.sqlite")
    config = ServiceConfig(analysis={"model": fake_model})
    engine_of_service = create_engine("onnxruntime", fake_model)
    manager = StreamManager(StreamSettings.of(config), engine_of_service, ServiceMetrics())
    # scan/watch with and without --events; the service's streams (through the manager)
    for sink in (ScanEvents(outbox, None), NoEvents(), manager):
        assert isinstance(sink, EventSink)
    outbox.close()

    events = EventList()
    analyzer = build_analyzer(engine, AnalysisSettings(decision=DecisionConfig(h=4.0)))
    try:
        result = asyncio.run(
            scan(
                AvSource(str(swaying_face)),
                analyzer,
                events=ScanEventSettings(events, "clip", {"source": "clip.mp4"}),
            )
        )
    finally:
        analyzer.close()
    kinds = [e.type for e in events.events]
    assert kinds[0] is EventType.STREAM_STARTED and kinds[-1] is EventType.STREAM_ENDED
    assert EventType.ALERT_RAISED in kinds and len(result.alerts) == kinds.count(
        EventType.ALERT_RAISED
    )
    assert len({e.run for e in events.events}) == 1
    assert events.events[0].detail == {
        "source": "clip.mp4",
        "width": 640,
        "height": 360,
        "codec": "h264",
        "fps": 15.0,
    }


def test_a_worker_says_it_finished_by_itself_before_its_last_event_and_not_when_stopped(
    engine: Engine, swaying_face: Path
) -> None:
    # The service forgets a stream that ended by itself on hearing this: a client who sees
    # the stream.ended (or the state) must find it forgotten, not resumed after a restart.
    def run_worker(stop_early: bool) -> list[tuple[bool, int]]:
        events: EventList = EventList()
        heard: list[tuple[bool, int]] = []  # (finished, events published) when it was said
        worker = StreamWorker(
            WorkerConfig("cam"),
            lambda: AvSource(str(swaying_face)),
            lambda: build_analyzer(engine, AnalysisSettings(decision=DecisionConfig(h=4.0))),
            events,
            on_finished=lambda: heard.append((worker.finished, len(events.events))),
        )

        async def main() -> None:
            task = asyncio.create_task(worker.run())
            if stop_early:
                while not events.events:  # started
                    await asyncio.sleep(0.01)
                await worker.stop(task)
            else:
                await task
            assert worker.finished and worker.finished_by_source is not stop_early
            assert events.events[-1].type is EventType.STREAM_ENDED
            heard.append((True, len(events.events)))  # what the end looked like

        asyncio.run(main())
        return heard

    said, end = run_worker(stop_early=False)
    assert said == (True, end[1] - 1)  # once, its state final, before its stream.ended
    assert len(run_worker(stop_early=True)) == 1  # only the end: a stopped stream is resumed


def test_a_worker_whose_source_fails_for_good_says_so(engine: Engine, tmp_path: Path) -> None:
    # A URL that cannot be read is the stream's fault: the service forgets it, as a file that
    # was read to its end (above).
    events: EventList = EventList()
    heard: list[str] = []
    worker = StreamWorker(
        WorkerConfig("cam"),
        lambda: AvSource(str(tmp_path / "gone.mp4")),
        lambda: build_analyzer(engine, AnalysisSettings()),
        events,
        on_finished=functools.partial(heard.append, "finished"),
    )
    asyncio.run(worker.run())
    assert worker.state is StreamState.FAILED and worker.error is not None
    assert heard == ["finished"] and worker.finished_by_source
    assert events.events[-1].type is EventType.STREAM_ERROR


def test_a_worker_that_fails_on_its_own_side_does_not_say_its_source_finished(
    engine: Engine, swaying_face: Path
) -> None:
    # Its face models would not load, or its analysis hit a bug: the stream itself is fine, so
    # the service keeps it saved, to resume it once the fault is mended.
    def broken_models() -> StreamAnalyzer:
        raise ModelError("the face models could not be loaded")

    def buggy_analysis() -> StreamAnalyzer:
        analyzer = build_analyzer(engine, AnalysisSettings())

        def analyse(frame: Frame) -> FrameResult:
            raise RuntimeError("a bug")

        analyzer.analyse = analyse  # type: ignore[method-assign]
        return analyzer

    for factory, raised in ((broken_models, None), (buggy_analysis, RuntimeError)):
        events: EventList = EventList()
        heard: list[str] = []
        worker = StreamWorker(
            WorkerConfig("cam"),
            lambda: AvSource(str(swaying_face)),
            factory,
            events,
            on_finished=functools.partial(heard.append, "finished"),
        )
        if raised is None:
            asyncio.run(worker.run())
        else:
            with pytest.raises(raised):
                asyncio.run(worker.run())
        assert heard == []
        assert worker.state is StreamState.FAILED and not worker.finished_by_source
        last = events.events[-1]
        assert last.type is EventType.STREAM_ERROR and last.detail["final"] is True
