"""A model carries the operating point measured for it, and every command judges by it unless
an option says otherwise."""

from __future__ import annotations

import json
import math
from pathlib import Path

import cv2
import pytest
from media import Placement, render_frame, write_linear_model

from swapwatch.cli.main import main
from swapwatch.engines import create_engine
from swapwatch.engines.base import ModelInfo, OperatingPoint
from swapwatch.errors import ModelError
from swapwatch.fusion import Policy
from swapwatch.models import DEFAULT_DETECTOR, FLOAT_DETECTOR
from swapwatch.server.config import ServiceConfig
from swapwatch.server.manager import StreamManager, StreamSettings
from swapwatch.server.metrics import ServiceMetrics
from swapwatch.training.stamp import file_sha256

RATE = 15.0
K = 0.5  # the CUSUM's allowance: a frame of logit 3 adds 2.5


def results_for(  # type: ignore[type-arg]
    model: Path,
    threshold: float,
    h: float | None,
    name: str | None = None,
    picture_threshold: float | None = None,
) -> dict:
    """What generalization.py writes after a validation run that measured `model`."""
    pictures = {
        "picture_threshold": picture_threshold,
        "pictures": {
            "real_pictures": 1500,
            "reals_called_fake": 70,
            "real_called_fake_rate": 0.0467,
            "real_called_fake_upper_95": 0.0568,
        },
    }
    return {
        "benchmark": "generalization",
        "detectors": {
            (name or model.stem): {
                "file": str(model),
                "sha256": file_sha256(model),
                "operating_point": {
                    "set_on": "validation part, 40 items",
                    "target": 0.05,
                    "threshold": threshold,
                    "h": h,
                    "real_recordings": 30,
                    "reals_called_fake": 1,
                    "real_called_fake_rate": 0.0333,
                    "real_called_fake_upper_95": 0.1503,
                    **(pictures if picture_threshold is not None else {}),
                },
            }
        },
    }


def set_point(
    tmp_path: Path,
    model: Path,
    threshold: float,
    h: float | None,
    picture_threshold: float | None = None,
) -> int:
    results = tmp_path / f"results-{model.stem}.json"
    results.write_text(
        json.dumps(results_for(model, threshold, h, picture_threshold=picture_threshold))
    )
    return main(["set-point", str(model), "--results", str(results)])


def scan(capsys: pytest.CaptureFixture[str], video: Path, model: Path, *options: str) -> dict:  # type: ignore[type-arg]
    assert main(["scan", "--json", str(video), "--model", str(model), *options]) == 0
    return json.loads(capsys.readouterr().out)  # type: ignore[no-any-return]


def test_scan_judges_by_the_models_operating_point_and_an_option_overrides_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], one_face_video: Path
) -> None:
    # Every face scores sigmoid(0.5) = 0.62: fake at the default threshold 0.5.
    model = write_linear_model(tmp_path / "mild.onnx", bias=0.5)
    before = scan(capsys, one_face_video, model)
    assert before["verdict"] == "fake"
    assert before["model"]["verdict_settings"]["from"] == {
        "video_threshold": "default",
        "cusum_h": "default",
        "picture_threshold": "default",
    }

    assert set_point(tmp_path, model, threshold=0.7, h=20.0) == 0
    capsys.readouterr()
    after = scan(capsys, one_face_video, model)
    assert after["verdict"] == "real"  # 0.62 is below the model's own threshold
    assert after["model"]["verdict_settings"] == {
        "video_threshold": 0.7,
        "cusum_h": 20.0,
        "picture_threshold": 0.7,  # a point without a picture threshold of its own
        "from": {"video_threshold": "model", "cusum_h": "model", "picture_threshold": "model"},
    }
    told = scan(capsys, one_face_video, model, "--video-threshold", "0.6")
    assert told["verdict"] == "fake"
    assert told["model"]["verdict_settings"]["from"]["video_threshold"] == "option"


def test_a_picture_is_judged_by_the_models_picture_threshold(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], one_face_video: Path
) -> None:
    picture = tmp_path / "face.jpg"
    cv2.imwrite(str(picture), render_frame(1280, 720, [Placement(0.5, 0.5, 400, sway=0.0)], 0.0))
    # Every face scores sigmoid(0.5) = 0.62: above the picture threshold, below the video one.
    model = write_linear_model(tmp_path / "mild.onnx", bias=0.5)
    assert set_point(tmp_path, model, threshold=0.7, h=20.0, picture_threshold=0.6) == 0
    point = create_engine("onnxruntime", model).info.operating_point
    assert point is not None and point.picture_threshold == 0.6 and point.real_pictures == 1500
    capsys.readouterr()
    report = tmp_path / "report.html"
    as_picture = scan(capsys, picture, model, "--report", str(report))
    assert "picture threshold 0.6" in report.read_text()
    assert as_picture["verdict"] == "fake" and as_picture["score"] == pytest.approx(0.62, abs=0.01)
    assert as_picture["model"]["verdict_settings"]["picture_threshold"] == 0.6
    assert scan(capsys, one_face_video, model)["verdict"] == "real"
    # A threshold given as an option is every medium's.
    told = scan(capsys, picture, model, "--video-threshold", "0.65")
    assert told["verdict"] == "real"
    assert told["model"]["verdict_settings"]["from"]["picture_threshold"] == "option"
    # eval judges a listed picture the same way and says at which threshold.
    listing = tmp_path / "pictures.csv"
    listing.write_text(f"file,label\n{picture.name},real\n")
    assert main(["eval", str(listing), "--model", str(model), "--json", "--bootstrap", "0"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["analysis"]["picture_threshold"] == 0.6
    assert report["items"][0]["verdict"] == "fake"
    # The Python API judges a picture the same way.
    from swapwatch import Detector

    with Detector(model=model) as detector:
        assert detector.check_picture(picture).verdict.value == "fake"


def test_the_models_cusum_h_sets_when_a_face_alarms(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], one_face_video: Path
) -> None:
    model = write_linear_model(tmp_path / "sure.onnx", bias=3.0)
    # Past the 10 frames a face needs before it may alarm, so h alone sets the time.
    assert set_point(tmp_path, model, threshold=0.9, h=30.0) == 0
    capsys.readouterr()
    result = scan(capsys, one_face_video, model)
    frames_to_alarm = math.ceil(30.0 / (3.0 - K))
    assert result["alerts"][0]["time"] == pytest.approx((frames_to_alarm - 1) / RATE, abs=1e-4)
    later = scan(capsys, one_face_video, model, "--cusum-h", "40")
    assert later["alerts"][0]["time"] == pytest.approx((math.ceil(40 / 2.5) - 1) / RATE, abs=1e-4)


def test_the_service_alarms_at_the_models_h_unless_configured(tmp_path: Path) -> None:
    model = write_linear_model(tmp_path / "served.onnx", bias=3.0)
    assert set_point(tmp_path, model, threshold=0.9, h=12.0) == 0
    engine = create_engine("onnxruntime", model)
    try:
        own = StreamManager(
            StreamSettings.of(ServiceConfig(analysis={"model": model})), engine, ServiceMetrics()
        )
        assert own.decision(Policy.KYC).h == 12.0
        configured = StreamManager(
            StreamSettings.of(ServiceConfig(analysis={"model": model, "cusum_h": 30.0})),
            engine,
            ServiceMetrics(),
        )
        assert configured.decision(Policy.KYC).h == 30.0
    finally:
        engine.close()


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ("other-file", "measured another file"),
        ("no-h", "raises no live alarm"),
        ("not-validation", "chose no operating point"),
        ("no-detector", "has no detector"),
        ("no-picture-point", "no picture threshold"),
    ],
)
def test_set_point_refuses_a_point_not_measured_on_this_model(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], change: str, message: str
) -> None:
    model = write_linear_model(tmp_path / "m.onnx", bias=0.5)
    other = write_linear_model(tmp_path / "other.onnx", bias=0.25)
    results = results_for(other if change == "other-file" else model, 0.7, 20.0, name="m")
    entry = results["detectors"]["m"]
    if change == "no-h":
        entry["operating_point"]["h"] = None
    elif change == "not-validation":
        entry["operating_point"] = {**entry["operating_point"], "from": "x.json"}
        del entry["operating_point"]["set_on"]
    elif change == "no-detector":
        results["detectors"] = {"someone-else": entry}
    elif change == "no-picture-point":  # real pictures, but no threshold kept them within 5 %
        entry["operating_point"]["pictures"] = {"real_pictures": 100, "reals_called_fake": 0}
        entry["operating_point"]["picture_threshold"] = None
    path = tmp_path / "results.json"
    path.write_text(json.dumps(results))
    untouched = model.read_bytes()
    assert main(["set-point", str(model), "--results", str(path)]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and "Traceback" not in err
    assert model.read_bytes() == untouched


def test_set_point_again_on_the_same_weights_is_allowed(tmp_path: Path) -> None:
    model = write_linear_model(tmp_path / "m.onnx", bias=0.5)
    results = tmp_path / "results.json"
    results.write_text(json.dumps(results_for(model, 0.7, 20.0)))
    assert main(["set-point", str(model), "--results", str(results)]) == 0
    # The file changed (its metadata), its weights did not: the same results stamp it again.
    assert main(["set-point", str(model), "--results", str(results)]) == 0
    engine = create_engine("onnxruntime", model)
    try:
        point = engine.info.operating_point
    finally:
        engine.close()
    assert point is not None and (point.video_threshold, point.cusum_h) == (0.7, 20.0)
    assert point.reals_called_fake == 1 and point.real_recordings == 30


def test_metadata_of_version_1_is_still_read_and_an_unknown_version_refused() -> None:
    old = {
        "version": 1,
        "name": "old",
        "input_size": 224,
        "mean": [0.5, 0.5, 0.5],
        "std": [0.5, 0.5, 0.5],
        "temperature": 1.5,
        "trained": True,
        "description": "",
        "training": {},
    }
    assert ModelInfo.from_json(json.dumps(old)).operating_point is None
    with pytest.raises(ModelError, match="version 9"):
        ModelInfo.from_json(json.dumps(old | {"version": 9}))
    with pytest.raises(ModelError, match="threshold"):
        OperatingPoint(1.5, 20.0, "x", 10, 0, 0.2)


@pytest.mark.parametrize("path", [DEFAULT_DETECTOR, FLOAT_DETECTOR], ids=["int8", "fp32"])
def test_the_bundled_detector_carries_a_point_set_for_at_most_5_percent_of_reals(
    path: Path,
) -> None:
    engine = create_engine("onnxruntime", path)
    try:
        point = engine.info.operating_point
    finally:
        engine.close()
    assert point is not None, f"{path.name} carries no operating point: see `swapwatch set-point`"
    # Recordings and pictures each within 5 % of their own real items.
    assert point.reals_called_fake <= 0.05 * point.real_recordings
    assert point.picture_threshold is not None and point.real_pictures >= 1000
    assert point.pictures_called_fake <= 0.05 * point.real_pictures
    assert "validation" in point.set_on
    assert point.model_sha256  # which file was measured
