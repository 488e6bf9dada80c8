"""The shared, batched inference queue that many streams' analysis threads call."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest

from swapwatch.engines import create_engine
from swapwatch.engines.base import Engine
from swapwatch.engines.batching import BatchingEngine
from swapwatch.errors import EngineError, ModelError

SIZE = 32


@pytest.fixture
def engine(tmp_path: Path) -> Engine:
    from media import write_linear_model

    # logit = 8 * (mean red - mean blue) on normalised colour: distinct per crop colour
    path = write_linear_model(tmp_path / "m.onnx", weights=(8.0, 0.0, -8.0), size=SIZE)
    return create_engine("onnxruntime", path, device="cpu", threads=1)


def crops_of(reds: list[int]) -> np.ndarray:
    crops = np.zeros((len(reds), SIZE, SIZE, 3), np.uint8)
    for i, red in enumerate(reds):
        crops[i, :, :, 0] = red
    return crops


def test_every_caller_gets_its_own_rows_from_shared_batches(engine: Engine) -> None:
    batches: list[int] = []
    shared = BatchingEngine(
        engine, max_batch=8, max_wait=0.05, on_batch=lambda n, _: batches.append(n)
    )
    expected = {k: engine.infer(crops_of([k * 10, k * 10 + 5])) for k in range(12)}
    got: dict[int, np.ndarray] = {}
    start = threading.Barrier(12)

    def call(k: int) -> None:
        start.wait()
        got[k] = shared.infer(crops_of([k * 10, k * 10 + 5]))

    threads = [threading.Thread(target=call, args=(k,)) for k in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=10)
    shared.close()
    for k in range(12):
        np.testing.assert_allclose(got[k], expected[k], atol=1e-5)
    assert sum(batches) == 24
    assert max(batches) > 2  # callers were served together
    assert max(batches) <= 8  # never more than max_batch, and one caller's crops never split


def test_a_lone_caller_is_served_without_waiting_for_company(engine: Engine) -> None:
    shared = BatchingEngine(engine, max_batch=64, max_wait=0.001)
    try:
        out = shared.infer(crops_of([200]))
        assert out.shape == (1,)
        assert shared.infer(crops_of([])).shape == (0,)
    finally:
        shared.close()


def test_an_inference_error_reaches_the_callers_and_the_queue_keeps_serving(engine: Engine) -> None:
    shared = BatchingEngine(engine, max_batch=4, max_wait=0.0)
    wrong_size = np.zeros((1, SIZE // 2, SIZE // 2, 3), np.uint8)
    try:
        for _ in range(2):
            with pytest.raises(ModelError, match="do not fit"):
                shared.infer(wrong_size)
        assert shared.infer(crops_of([9])).shape == (1,)
    finally:
        shared.close()
    with pytest.raises(EngineError, match="closed"):
        shared.infer(crops_of([1]))
