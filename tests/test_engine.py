from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from media import write_linear_model

from swapwatch.engines import create_engine
from swapwatch.engines.base import ModelInfo, normalise
from swapwatch.errors import ConfigError, ModelError, ModelNotInstalled
from swapwatch.models import resolve_detector


def test_onnx_engine_returns_one_logit_per_crop_from_the_normalised_input(tmp_path: Path) -> None:
    path = write_linear_model(
        tmp_path / "m.onnx", weights=(1.0, 2.0, -1.0), bias=0.5, temperature=1.7
    )
    engine = create_engine("onnxruntime", path, device="cpu")
    assert engine.info.temperature == 1.7 and engine.info.input_size == 224
    crops = np.zeros((3, 224, 224, 3), np.uint8)
    crops[0] = (255, 0, 0)
    crops[1] = (0, 255, 255)
    crops[2] = 128
    logits = engine.infer(crops)
    # normalised colour = c / 255 * 2 - 1, then logit = 0.5 + w . colour
    colours = np.array([[1, -1, -1], [-1, 1, 1], [128 / 255 * 2 - 1] * 3])
    expected = 0.5 + colours @ np.array([1.0, 2.0, -1.0])
    np.testing.assert_allclose(logits, expected, atol=1e-4)
    assert engine.infer(np.zeros((0, 224, 224, 3), np.uint8)).shape == (0,)


def test_model_without_swapwatch_metadata_is_refused(tmp_path: Path) -> None:
    import onnx

    path = write_linear_model(tmp_path / "m.onnx")
    model = onnx.load(str(path))
    del model.metadata_props[:]
    onnx.save(model, str(path))
    with pytest.raises(ModelError, match="no swapwatch metadata"):
        create_engine("onnxruntime", path)


@pytest.mark.parametrize(
    ("content", "message"),
    [(b"not a model", "cannot load model"), (None, "not found")],
)
def test_bad_model_files_give_a_model_error(
    tmp_path: Path, content: bytes | None, message: str
) -> None:
    path = tmp_path / "bad.onnx"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(ModelError, match=message):
        create_engine("onnxruntime", path)


def test_unknown_engine_name_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="unknown engine"):
        create_engine("tensorflow", tmp_path / "m.onnx")


def test_crops_of_the_wrong_size_are_refused() -> None:
    info = ModelInfo("m", 224, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5))
    with pytest.raises(ModelError, match="do not fit"):
        normalise(np.zeros((1, 112, 112, 3), np.uint8), info)


@pytest.mark.parametrize(
    "change", [{"temperature": 0.0}, {"std": (0.5, 0.0, 0.5)}, {"input_size": 8}]
)
def test_invalid_metadata_is_rejected(change: dict[str, object]) -> None:
    fields: dict[str, object] = {
        "name": "m",
        "input_size": 224,
        "mean": (0.5,) * 3,
        "std": (0.5,) * 3,
    }
    fields.update(change)
    with pytest.raises(ModelError):
        ModelInfo(**fields)  # type: ignore[arg-type]


def test_metadata_round_trips_through_json() -> None:
    info = ModelInfo(
        "m",
        224,
        (0.485, 0.456, 0.406),
        (0.229, 0.224, 0.225),
        temperature=1.3,
        training={"frames": 1000},
    )
    assert ModelInfo.from_json(info.to_json()) == info


def test_an_explicit_model_path_wins_over_the_default(tmp_path: Path) -> None:
    given = tmp_path / "mine.onnx"
    assert resolve_detector(given) == given


def test_missing_default_model_says_so_plainly(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import swapwatch.models as models

    monkeypatch.setattr(models, "DEFAULT_DETECTOR", tmp_path / "absent.onnx")
    with pytest.raises(ModelNotInstalled, match="no trained detector model is installed"):
        models.resolve_detector(None)


def test_the_float_detector_is_chosen_only_where_a_gpu_runs_it(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import swapwatch.models as models

    int8, fp32 = tmp_path / "int8.onnx", tmp_path / "fp32.onnx"
    int8.touch()
    fp32.touch()
    monkeypatch.setattr(models, "DEFAULT_DETECTOR", int8)
    monkeypatch.setattr(models, "FLOAT_DETECTOR", fp32)
    monkeypatch.setattr(models, "gpu_provider_available", lambda: False)
    assert models.resolve_detector(None, "auto") == int8  # no GPU: int8 whatever was asked
    monkeypatch.setattr(models, "gpu_provider_available", lambda: True)
    assert models.resolve_detector(None, "auto") == fp32
    assert models.resolve_detector(None, "gpu") == fp32
    assert models.resolve_detector(None, "cpu") == int8
