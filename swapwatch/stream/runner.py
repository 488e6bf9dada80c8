"""Drive one source through one analyzer: decode in its thread, analyse in another."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from swapwatch.errors import EndOfStream
from swapwatch.stream.pipeline import FrameResult, StreamAnalyzer
from swapwatch.stream.source import FrameSource

log = logging.getLogger(__name__)

ResultCallback = Callable[[FrameResult], None]


async def run_stream(
    source: FrameSource, analyzer: StreamAnalyzer, on_result: ResultCallback
) -> None:
    """Analyse every frame the (started) source delivers until it ends.

    The analyzer runs in one dedicated thread, so MediaPipe and LiteRT always see the same
    thread and the event loop stays free for I/O.
    """
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="analyse") as executor:
        loop = asyncio.get_running_loop()
        while True:
            try:
                frame = await source.recv()
            except EndOfStream:
                return
            result = await loop.run_in_executor(executor, analyzer.analyse, frame)
            on_result(result)
