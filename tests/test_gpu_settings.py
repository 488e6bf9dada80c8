"""GPU settings as configuration (no GPU here): TensorRT's provider options built from the
`engine` section, the batch sizes warmed up, a TensorRT that is not installed, and `hwaccel`
reaching the service's decoders."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
from service import running_service

import swapwatch.engines
from swapwatch.cli.serve import build_engine
from swapwatch.engines import create_engine
from swapwatch.engines.base import Engine
from swapwatch.engines.batching import BatchingEngine
from swapwatch.engines.onnxruntime import choose_providers
from swapwatch.engines.tensorrt import (
    CPU,
    CUDA,
    TENSORRT,
    TensorRtOptions,
    session_providers,
    warmup_batch_sizes,
)
from swapwatch.errors import EngineError
from swapwatch.server.config import EngineConfig, ServiceConfig
from swapwatch.server.config_sources import load_config


def test_the_engine_section_becomes_tensorrts_provider_options(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "swapwatch.toml"
    path.write_text(
        "[engine]\ndevice = 'tensorrt'\nmax_batch = 8\n"
        f"[engine.tensorrt]\nfp16 = true\ncache_dir = '{tmp_path / 'trt'}'\nworkspace_mb = 1024\n"
    )
    # The service's own assembly (`build_engine`) up to the engine factory, which would need a
    # GPU to go further: what it is handed is what reaches ONNX Runtime.
    handed: dict[str, object] = {}

    def engine_factory(kind: str, model: Path, **options: object) -> object:
        handed.update(options, kind=kind, model=model)
        return object()

    monkeypatch.setattr(swapwatch.engines, "create_engine", engine_factory)
    build_engine(load_config(path, environ={}).engine, None)
    assert handed["device"] == "tensorrt" and handed["kind"] == "onnxruntime"
    options = handed["tensorrt"]
    assert isinstance(options, TensorRtOptions)
    # Names and formats as ONNX Runtime documents them: every value a string, the profile
    # shapes as NAME:NxCxHxW for the model's one input.
    assert options.provider_options("input", 224) == {
        "trt_fp16_enable": "True",
        "trt_max_workspace_size": str(1024 * 1024 * 1024),
        "trt_profile_min_shapes": "input:1x3x224x224",
        "trt_profile_opt_shapes": "input:8x3x224x224",
        "trt_profile_max_shapes": "input:8x3x224x224",
        "trt_engine_cache_enable": "True",
        "trt_engine_cache_path": str(tmp_path / "trt"),
        "trt_timing_cache_enable": "True",
        "trt_timing_cache_path": str(tmp_path / "trt"),
    }


def test_without_a_cache_directory_no_engine_is_cached_and_fp16_can_be_off() -> None:
    options = TensorRtOptions(max_batch=1, fp16=False).provider_options("x", 112)
    assert options["trt_fp16_enable"] == "False"
    assert options["trt_profile_max_shapes"] == "x:1x3x112x112"
    assert not any("cache" in name for name in options)


def test_only_tensorrt_is_given_options_the_other_providers_their_defaults() -> None:
    pairs = session_providers([TENSORRT, CUDA, CPU], TensorRtOptions(max_batch=4), "in", 224)
    assert [name for name, _ in pairs] == [TENSORRT, CUDA, CPU]
    assert pairs[0][1]["trt_profile_max_shapes"] == "in:4x3x224x224"
    assert pairs[1][1] == {} and pairs[2][1] == {}


@pytest.mark.parametrize(
    ("device", "available", "expected"),
    [
        ("auto", [TENSORRT, CUDA, CPU], [TENSORRT, CUDA, CPU]),
        ("auto", [CPU], [CPU]),  # the documented fallback: the CPU, without TensorRT
        ("tensorrt", [TENSORRT, CUDA, CPU], [TENSORRT, CUDA, CPU]),
        ("gpu", [CUDA, CPU], [CUDA, CPU]),
        ("cpu", [TENSORRT, CUDA, CPU], [CPU]),
        ("tensorrt", [CUDA, CPU], EngineError),
        ("tensorrt", [CPU], EngineError),
        ("gpu", [CPU], EngineError),
    ],
)
def test_the_device_picks_the_providers(
    device: str, available: list[str], expected: list[str] | type[Exception]
) -> None:
    if isinstance(expected, list):
        assert choose_providers(device, available) == expected
    else:
        with pytest.raises(expected):
            choose_providers(device, available)


@pytest.mark.skipif(
    TENSORRT in ort.get_available_providers(), reason="this onnxruntime has TensorRT"
)
def test_asking_for_tensorrt_where_it_is_missing_is_one_clear_error(fake_model: Path) -> None:
    with pytest.raises(EngineError) as raised:
        build_engine(EngineConfig(device="tensorrt"), fake_model)
    message = str(raised.value)
    assert "no TensorRT execution provider" in message and "\n" not in message
    assert CPU in message  # what this install does have


class ProvidersOf:
    """A real engine that reports the providers a GPU install would give, and records the batch
    sizes it is asked to run."""

    def __init__(self, engine: Engine, providers: list[str]) -> None:
        self.engine = engine
        self.info = engine.info
        self.providers = providers
        self.batches: list[int] = []

    def infer(self, crops: np.ndarray) -> np.ndarray:
        self.batches.append(len(crops))
        return self.engine.infer(crops)

    def warmup(self) -> None:
        self.engine.warmup()

    def close(self) -> None:
        self.engine.close()


@pytest.mark.parametrize(
    ("providers", "expected"),
    [([TENSORRT, CUDA, CPU], list(range(1, 7))), ([CUDA, CPU], list(range(1, 7))), ([CPU], [1])],
)
def test_the_warmup_runs_every_batch_size_the_batcher_makes_on_a_gpu(
    fake_model: Path, providers: list[str], expected: list[int]
) -> None:
    recorded = ProvidersOf(create_engine("onnxruntime", fake_model, device="cpu"), providers)
    shared = BatchingEngine(recorded, max_batch=6, max_wait=0.0)
    try:
        shared.warmup()
        assert recorded.batches == expected
        assert list(shared.warmed_sizes) == expected
        assert warmup_batch_sizes(providers, 6) == tuple(expected)
    finally:
        shared.close()


def test_hwaccel_in_the_config_reaches_the_decoder_which_falls_back_to_software(
    fake_model: Path, one_face_video: Path, caplog: pytest.LogCaptureFixture
) -> None:
    config = ServiceConfig(
        analysis={"model": fake_model},
        ingest={"pull": {"allow_file_urls": True}},
        decode={"hwaccel": "cuda"},
    )
    with caplog.at_level(logging.INFO), running_service(config) as service:
        reply = service.request(
            "POST", "/v1/streams", {"url": one_face_video.as_uri(), "id": "accel"}
        )
        assert reply.status == 201, reply.body
        status = service.wait_for(lambda s: s["state"] == "ended", "accel")
    assert status["frames_analysed"] > 0
    assert "hardware decoding (cuda) unavailable" in caplog.text
