"""`Detector`: score pictures, scan files and URLs, watch live streams, from Python."""

from __future__ import annotations

import asyncio
import logging
import math
import os
from collections.abc import Callable, Coroutine
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

import numpy as np

from swapwatch.api.callback import CallbackSink, EventCallback
from swapwatch.api.pool import AnalyzerPool
from swapwatch.api.results import PictureResult, WatchSummary
from swapwatch.engines import load_detector
from swapwatch.errors import ConfigError, SwapwatchError, UnsupportedSource
from swapwatch.faces.quality import QualityConfig
from swapwatch.fusion import DecisionConfig, Policy
from swapwatch.models import resolve_detector
from swapwatch.stream.assembly import AnalysisSettings, build_analyzer
from swapwatch.stream.pipeline import FrameResult, StreamAnalyzer
from swapwatch.stream.rate import LIVE_RATE_HZ
from swapwatch.stream.scan import ScanResult, scan
from swapwatch.stream.source import AvSource, FrameSource, SourceOptions, classify, stream_name
from swapwatch.stream.still import StillSource
from swapwatch.stream.verdict import DEFAULT_DECISION, model_description, verdict_settings
from swapwatch.stream.worker import StreamWorker, WorkerConfig

log = logging.getLogger(__name__)

DEVICES = ("cpu", "gpu", "auto", "tensorrt")
Crop = tuple[float, float, float, float]
PathLike = str | os.PathLike[str]
T = TypeVar("T")


# How much of a file check_picture reads before it can tell a recording from a picture.
PICTURE_PROBE_SECONDS = 0.5


class Detector:
    """One detector model and the decision rule around it.

    Thread safety: a Detector may serve many threads and event loops at once. The model is
    shared (ONNX Runtime runs it from several threads); each call analyses with face models
    and per-face decisions of its own, so calls never mix their faces. Close it (or leave its
    `with` block) once no call is running.
    """

    def __init__(
        self,
        model: PathLike | None = None,
        *,
        device: str = "cpu",
        threads: int = 1,
        policy: str = "monitoring",
        cusum_h: float | None = None,
        video_threshold: float | None = None,
        min_frames: int = DEFAULT_DECISION.min_frames,
        quality: QualityConfig | None = None,
    ) -> None:
        """Load `model` (an ONNX file from `swapwatch export`; default: the bundled detector)
        on `device` (cpu, gpu, auto or tensorrt) with `threads` CPU threads. `policy` is
        monitoring (alarms clear) or kyc (alarms stand); `cusum_h` (alarm threshold) and
        `video_threshold` (score at which the verdict is fake, for recordings and pictures
        alike) default to the model's own operating point, which has a threshold for each;
        `quality` sets the face quality gate.

        Raises ConfigError for a bad setting, ModelNotInstalled, ModelError or EngineError
        when the model cannot be loaded.
        """
        if device not in DEVICES:
            raise ConfigError(f"unknown device {device!r} (one of {', '.join(DEVICES)})")
        if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
            raise ConfigError(f"threads must be a whole number of at least 1, not {threads!r}")
        try:
            chosen_policy = Policy(policy)
        except ValueError:
            raise ConfigError(f"unknown policy {policy!r} (monitoring or kyc)") from None
        path = resolve_detector(None if model is None else Path(model), device)
        self._engine = load_detector(path, device=device, threads=threads)
        try:
            self.verdict_settings = verdict_settings(self._engine.info, video_threshold, cusum_h)
            decision = DecisionConfig(
                h=self.verdict_settings.cusum_h, min_frames=min_frames, policy=chosen_policy
            )
            self._video = self.verdict_settings.video_config(min_frames)
        except (ValueError, TypeError) as exc:
            self._engine.close()
            raise ConfigError(str(exc)) from exc
        if not self._engine.info.trained:
            log.warning("%s is not a trained detector; its scores mean nothing", path.name)
        self._analysis = AnalysisSettings(decision=decision, quality=quality, warmup=True)
        self._description = model_description(self._engine, self.verdict_settings)
        self._pictures = AnalyzerPool(self._new_analyzer)
        self._closed = False

    # Lifetime -----------------------------------------------------------------------

    def close(self) -> None:
        """Release the face models and the detector model. Calling it again does nothing."""
        if self._closed:
            return
        self._closed = True
        self._pictures.close()
        self._engine.close()

    def __enter__(self) -> Detector:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # Pictures -----------------------------------------------------------------------

    def check_picture(self, picture: PathLike | np.ndarray) -> PictureResult:
        """The verdict on one picture: a file (JPEG, PNG, WebP...) or an H x W x 3 uint8 RGB
        array, which is analysed in memory. Each face gets its box and score.

        Raises SourceNotFound, UnsupportedSource (not a picture, or an array of another shape
        or type), SourceUnreadable (a corrupt file), EngineError. Not from inside a running
        event loop: there, run it in a thread (`asyncio.to_thread`).
        """
        self._check_open()
        source: FrameSource = (
            # A recording given by mistake is refused after its first frames, not analysed.
            AvSource(os.fspath(picture), SourceOptions(max_seconds=PICTURE_PROBE_SECONDS))
            if isinstance(picture, str | os.PathLike)
            else StillSource(picture)
        )
        return run_outside_a_loop(lambda: self._check_picture(source), "check_picture")

    async def _check_picture(self, source: FrameSource) -> PictureResult:
        frames: list[FrameResult] = []
        analyzer = self._pictures.take()
        try:
            result = await scan(
                source,
                analyzer,
                self._video,
                on_result=frames.append,
                model_description=self._description,
            )
        except SwapwatchError:
            self._pictures.give_back(analyzer)  # the scan ended normally: its worker let go
            raise
        # Anything else (an interrupt) may leave a frame in analysis: that analyzer is dropped.
        self._pictures.give_back(analyzer)
        if not result.video.still and result.counters.decoded > 1:
            raise UnsupportedSource(
                f"{result.source} is a recording, not a picture: use scan() for recordings"
            )
        return PictureResult.of(result, frames[0] if frames else None)

    # Files and URLs -----------------------------------------------------------------

    def scan(
        self,
        source: PathLike,
        *,
        rate: float = 15.0,
        max_seconds: float | None = None,
        crop: Crop | None = None,
        timeout: float = 15.0,
    ) -> ScanResult:
        """Analyse a file or URL to its end (or `max_seconds` of media) at `rate` frames per
        second, optionally only the `crop` (left, top, right, bottom fractions) of each
        frame, and give the verdict: the result `swapwatch scan --json` prints (`to_json()`).
        `timeout`: seconds to wait when opening or reading a network source.

        Raises ConfigError (a bad option), SourceNotFound, UnsupportedSource, NoVideoStream,
        SourceUnreadable, EngineError. Not from inside a running event loop: use `scan_async`.
        """
        return run_outside_a_loop(
            lambda: self.scan_async(
                source, rate=rate, max_seconds=max_seconds, crop=crop, timeout=timeout
            ),
            "scan",
        )

    async def scan_async(
        self,
        source: PathLike,
        *,
        rate: float = 15.0,
        max_seconds: float | None = None,
        crop: Crop | None = None,
        timeout: float = 15.0,
    ) -> ScanResult:
        """`scan` for callers with an event loop; decoding and analysis run in threads.
        Cancelling it stops the scan and releases what it used."""
        self._check_open()
        options = source_options(rate=rate, timeout=timeout, max_seconds=max_seconds, crop=crop)
        frames = AvSource(os.fspath(source), options)
        analyzer = await asyncio.to_thread(self._new_analyzer)
        return await scan(
            frames,
            analyzer,
            self._video,
            model_description=self._description,
            close_analyzer=True,
        )

    # Live streams -------------------------------------------------------------------

    async def watch(
        self,
        url: PathLike,
        on_event: EventCallback,
        *,
        stream_id: str | None = None,
        listen: bool = False,
        reconnect: bool = False,
        rate: float = LIVE_RATE_HZ,
        crop: Crop | None = None,
        timeout: float = 15.0,
    ) -> WatchSummary:
        """Run a live stream (RTMP, RTSP, SRT, HLS... URL; a file plays at its own speed, as if
        live) until it ends or this task is cancelled, calling `on_event` on the event loop
        with each event: stream.started, alert.raised, alert.cleared, stream.ended or
        stream.error (`Event`, named `stream_id`, default: the URL without credentials or
        stream key). `listen`: wait for a publisher to push to the URL (rtmp://, srt://,
        tcp://); `reconnect`: open the source again, with backoff, when it drops or ends.

        Returns the summary of a stream that ended. Cancelling the task stops the stream (a
        `stream.ended` with reason `cancelled` reaches `on_event`) and raises CancelledError.
        If `on_event` raises, the stream stops at once, `on_event` is not called again and
        `watch` raises that exception. Raises ConfigError (a bad option), SourceNotFound,
        UnsupportedSource, NoVideoStream or SourceUnreadable when the source cannot be opened
        or read (after a `stream.error`), EngineError.
        """
        self._check_open()
        location = os.fspath(url)
        _, is_file = classify(location)
        options = source_options(
            rate=rate,
            timeout=timeout,
            crop=crop,
            listen=listen,
            live=True if is_file else None,
            pace=is_file,
        )
        name = stream_name(location)
        sink = CallbackSink(on_event)
        worker = StreamWorker(
            WorkerConfig(stream_id or name, reconnect=reconnect, started_detail={"source": name}),
            lambda: AvSource(location, options),
            self._new_analyzer,  # in the worker's analysis thread, closed there after
            sink,
        )
        running = asyncio.create_task(worker.run())
        callback_failed = asyncio.create_task(sink.failed.wait())
        try:
            await asyncio.wait({running, callback_failed}, return_when=asyncio.FIRST_COMPLETED)
        except asyncio.CancelledError:
            await worker.stop(running, reason="cancelled")
            raise
        finally:
            callback_failed.cancel()
        if sink.error is not None:
            await worker.stop(running, reason="the event callback failed")
            raise sink.error
        running.result()  # a bug in the worker is raised here
        if worker.error is not None:
            raise worker.error
        return WatchSummary.of(worker.config.stream_id, worker.state, worker.status)

    # Inside -------------------------------------------------------------------------

    def _new_analyzer(self) -> StreamAnalyzer:
        self._check_open()
        return build_analyzer(self._engine, self._analysis)

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError("this Detector is closed")


def run_outside_a_loop(work: Callable[[], Coroutine[Any, Any, T]], name: str) -> T:
    """Run `work()` in an event loop of its own; a caller already inside a loop is told what to
    use instead (before the coroutine exists, so none is left unawaited)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(work())
    raise RuntimeError(
        f"Detector.{name}() blocks: inside a running event loop, await scan_async() or run "
        f"{name}() in a thread (asyncio.to_thread)"
    )


def source_options(
    *,
    rate: float,
    timeout: float,
    max_seconds: float | None = None,
    crop: Crop | None = None,
    listen: bool = False,
    live: bool | None = None,
    pace: bool = False,
) -> SourceOptions:
    """The source options of a call, each checked: ConfigError names the one that is wrong."""
    _positive("rate", rate)
    _positive("timeout", timeout)
    if max_seconds is not None:
        _positive("max_seconds", max_seconds)
    try:
        return SourceOptions(
            live=live,
            max_rate=rate,
            listen=listen,
            open_timeout=timeout,
            read_timeout=timeout,
            max_seconds=max_seconds,
            pace=pace,
            crop=None if crop is None else _crop(crop),
        )
    except ValueError as exc:
        raise ConfigError(f"crop {crop!r}: {exc}") from exc


def _positive(name: str, value: Any) -> None:
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not math.isfinite(value)
        or value <= 0
    ):
        raise ConfigError(f"{name} must be a positive number, not {value!r}")


def _crop(crop: Any) -> Crop:
    try:
        left, top, right, bottom = (float(v) for v in crop)
    except (TypeError, ValueError):
        raise ConfigError(
            f"crop must be four fractions (left, top, right, bottom): {crop!r}"
        ) from None
    return left, top, right, bottom
