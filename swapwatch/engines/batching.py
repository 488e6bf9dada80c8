"""One engine shared by many streams: crops from every caller go through one batched queue.

Each stream's analysis thread calls `infer` as it would on a private engine and blocks until its
rows come back. A single inference thread takes whatever requests are waiting, up to
`max_batch` crops, waits at most `max_wait` seconds for more once the first one arrived, runs
the wrapped engine once and hands each caller its slice. Under load, batches fill up and the
per-crop cost falls; when idle, a lone crop waits no longer than `max_wait`.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass

import numpy as np

from swapwatch.engines.base import Engine, ModelInfo
from swapwatch.engines.tensorrt import warmup_batch_sizes
from swapwatch.errors import EngineError

log = logging.getLogger(__name__)

BatchObserver = Callable[[int, float], None]  # (crops in the batch, seconds of inference)


@dataclass(slots=True)
class _Request:
    crops: np.ndarray
    future: Future[np.ndarray]
    queued: float


class BatchingEngine:
    """An `Engine` that batches the calls of many threads onto one wrapped engine."""

    def __init__(
        self,
        engine: Engine,
        max_batch: int = 16,
        max_wait: float = 0.005,
        on_batch: BatchObserver | None = None,
    ) -> None:
        if max_batch < 1 or max_wait < 0:
            raise ValueError("max_batch must be >= 1 and max_wait >= 0")
        self.engine = engine
        self.info: ModelInfo = engine.info
        self.max_batch = max_batch
        self.max_wait = max_wait
        self._on_batch = on_batch
        self.warmed_sizes: tuple[int, ...] = ()
        self._requests: queue.Queue[_Request | None] = queue.Queue()
        self._closed = False
        self._thread = threading.Thread(target=self._serve, name="inference", daemon=True)
        self._thread.start()

    def infer(self, crops: np.ndarray) -> np.ndarray:
        if len(crops) == 0:
            return np.zeros(0, np.float32)
        if self._closed:
            raise EngineError("the shared engine is closed")
        future: Future[np.ndarray] = Future()
        self._requests.put(_Request(crops, future, time.monotonic()))
        return future.result()

    def warmup(self) -> None:
        """Warm the engine up, then run once each batch size this batcher will make where the
        engine prepares each shape on its first run (a GPU provider), so the first live frames
        do not pay for it (`warmed_sizes` says which ran)."""
        self.engine.warmup()
        # An engine that says nothing of its providers is taken to be ready after its warmup.
        providers: Sequence[str] = getattr(self.engine, "providers", ())
        sizes = warmup_batch_sizes(providers, self.max_batch)
        side = self.info.cut_size
        for size in sizes:
            self.engine.infer(np.zeros((size, side, side, 3), np.uint8))
        self.warmed_sizes = sizes

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._requests.put(None)
        self._thread.join()
        self.engine.close()

    def _serve(self) -> None:
        pending: _Request | None = None
        while True:
            first = pending or self._requests.get()
            pending = None
            if first is None:
                self._fail_waiting()
                return
            batch = [first]
            size = len(first.crops)
            deadline = first.queued + self.max_wait
            while size < self.max_batch:
                try:
                    nxt = self._requests.get(timeout=max(0.0, deadline - time.monotonic()))
                except queue.Empty:
                    break
                if nxt is None:
                    self._requests.put(None)  # finish this batch, then stop
                    break
                if size + len(nxt.crops) > self.max_batch:
                    pending = nxt  # starts the next batch; never split one caller's crops
                    break
                batch.append(nxt)
                size += len(nxt.crops)
            self._run(batch)

    def _run(self, batch: list[_Request]) -> None:
        started = time.perf_counter()
        try:
            logits = self.engine.infer(np.concatenate([r.crops for r in batch]))
        except Exception as exc:  # every caller gets the error, the server keeps serving
            log.exception("batched inference failed")
            for request in batch:
                request.future.set_exception(exc)
            return
        if self._on_batch is not None:
            self._on_batch(len(logits), time.perf_counter() - started)
        offset = 0
        for request in batch:
            n = len(request.crops)
            request.future.set_result(logits[offset : offset + n])
            offset += n

    def _fail_waiting(self) -> None:
        while True:
            try:
                request = self._requests.get_nowait()
            except queue.Empty:
                return
            if request is not None:
                request.future.set_exception(EngineError("the shared engine is closed"))
