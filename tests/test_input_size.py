"""A detector whose input is smaller than the face crop: crops are cut at the crop size and
shrunk to the input by area averaging, at inference as in training."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from media import write_linear_model

from swapwatch.cli.main import main
from swapwatch.engines import create_engine
from swapwatch.engines.base import ModelInfo, normalise, shrunk
from swapwatch.errors import ModelError

SMALL = ModelInfo("small", input_size=128, mean=(0.5,) * 3, std=(0.5,) * 3, crop_size=224)


def test_crops_cut_at_the_crop_size_are_shrunk_by_area_to_the_input() -> None:
    crops = np.random.default_rng(0).integers(0, 256, (3, 224, 224, 3), np.uint8)
    plain = ModelInfo("plain", input_size=128, mean=(0.5,) * 3, std=(0.5,) * 3)
    np.testing.assert_array_equal(normalise(crops, SMALL), normalise(shrunk(crops, 128), plain))
    assert normalise(crops, SMALL).shape == (3, 3, 128, 128)
    with pytest.raises(ModelError, match="do not fit model input 224x224"):
        normalise(shrunk(crops, 128), SMALL)  # the analyzer cuts at 224 for this model
    with pytest.raises(ModelError, match="crop_size"):
        ModelInfo("bad", input_size=128, mean=(0.5,) * 3, std=(0.5,) * 3, crop_size=96)


def test_a_scan_with_a_small_input_model_cuts_faces_at_its_crop_size(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], one_face_video: Path
) -> None:
    model = write_linear_model(tmp_path / "small.onnx", bias=3.0, size=128, crop_size=224)
    engine = create_engine("onnxruntime", model)
    try:
        assert (engine.info.input_size, engine.info.cut_size) == (128, 224)
        engine.warmup()
    finally:
        engine.close()
    assert main(["scan", "--json", str(one_face_video), "--model", str(model)]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["verdict"] == "fake" and result["score"] > 0.9
