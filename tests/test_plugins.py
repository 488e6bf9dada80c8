"""Plugins from entry points: the example plugin installed as a real package, missing plugins."""

from __future__ import annotations

import asyncio
import csv
import json
import math
import shutil
import subprocess
import sys
import uuid
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest

from swapwatch.engines import create_engine, engine_names
from swapwatch.events import Event, EventLog, EventType
from swapwatch.fusion import AlarmChange, DecisionConfig
from swapwatch.plugins import SIGNALS, SINKS, PluginNotFound, available
from swapwatch.plugins.signals import load_signals
from swapwatch.stream.frames import Frame
from swapwatch.stream.pipeline import ExtraSignal, FrameResult, StreamAnalyzer
from swapwatch.stream.source import AvSource, SourceOptions

EXAMPLE = Path(__file__).parent.parent / "plugins" / "swapwatch-example-sink"


@pytest.fixture(scope="module")
def installed_example(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The example plugin pip-installed into a folder of its own (the venv stays untouched)."""
    source = tmp_path_factory.mktemp("src") / EXAMPLE.name
    # A copy: setuptools writes build files next to the sources, which stay clean.
    shutil.copytree(EXAMPLE, source, ignore=shutil.ignore_patterns("build", "*.egg-info"))
    target = tmp_path_factory.mktemp("site")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-deps",
            "--no-build-isolation",
            "--target",
            str(target),
            str(source),
        ],
        check=True,
        capture_output=True,
        timeout=300,
    )
    return target


def test_installed_plugin_is_found_and_delivers(installed_example: Path, tmp_path: Path) -> None:
    db, out = tmp_path / "o.sqlite", tmp_path / "alerts.csv"
    with EventLog(db) as outbox:
        ids = [
            outbox.append(
                Event(str(uuid.uuid4()), EventType.ALERT_RAISED, datetime.now(UTC), "cam", "r")
            )
            for _ in range(3)
        ]
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "swapwatch",
            "events",
            "deliver",
            "--db",
            str(db),
            "--sink",
            f"csv:{out};header=true",
            "--until-idle",
        ],
        env={"PYTHONPATH": str(installed_example), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 0, run.stderr
    rows = list(csv.reader(out.read_text().splitlines()))
    assert rows[0] == ["seq", "id", "type", "stream"]
    assert [int(r[0]) for r in rows[1:]] == ids


def test_installed_signal_and_sink_are_listed(
    installed_example: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.syspath_prepend(str(installed_example))
    sink = available(SINKS)["csv"]
    assert sink.dist is not None and sink.dist.name == "swapwatch-example-sink"
    assert "brightness" in available(SIGNALS)
    [signal] = load_signals(["brightness"])
    crops = np.stack([np.full((8, 8, 3), v, np.uint8) for v in (0, 128, 255)])
    logits = signal.infer(crops)
    assert logits.shape == (3,) and logits[1] < 0 < logits[0]
    monkeypatch.delitem(sys.modules, "swapwatch_example_sink", raising=False)


def test_a_missing_plugin_names_what_is_installed() -> None:
    with pytest.raises(PluginNotFound, match=r"unknown signal 'nope' \(available: none\)"):
        load_signals(["nope"])
    with pytest.raises(PluginNotFound, match=r"unknown engine 'tensorrt' \(available: onnx"):
        create_engine("tensorrt", Path("x.onnx"))


def test_our_own_engine_comes_through_its_entry_point(fake_model: Path) -> None:
    assert "onnxruntime" in engine_names()
    engine = create_engine("onnxruntime", fake_model, device="cpu")
    try:
        assert engine.info.input_size == 224
    finally:
        engine.close()


class ConstantSignal:
    """A signal that finds every crop manipulated with log-likelihood ratio `logit`."""

    name = "constant"

    def __init__(self, logit: float) -> None:
        self.logit = logit
        self.crops_seen = 0
        self.closed = False

    def infer(self, crops: np.ndarray) -> np.ndarray:
        self.crops_seen += len(crops)
        return np.full(len(crops), self.logit, np.float32)

    def close(self) -> None:
        self.closed = True


async def frames_of(source: AvSource) -> list[Frame]:
    async with source:
        return [frame async for frame in source]


def analyse_video(video: Path, model: Path, signals: list[ExtraSignal]) -> list[FrameResult]:
    engine = create_engine("onnxruntime", model, device="cpu")
    analyzer = StreamAnalyzer(engine, DecisionConfig(h=4.0), signals=signals)
    try:
        frames = asyncio.run(frames_of(AvSource(str(video), SourceOptions(stride=2))))
        return [analyzer.analyse(frame) for frame in frames]
    finally:
        analyzer.close()
        engine.close()


def test_an_extra_signal_joins_the_detectors_evidence(
    one_face_video: Path, real_model: Path
) -> None:
    alone = analyse_video(one_face_video, real_model, [])
    assert not any(r.alerts for r in alone)  # the detector alone says real

    confident = ConstantSignal(8.0)
    joined = analyse_video(one_face_video, real_model, [ExtraSignal(confident, weight=1.0)])
    raised = [a for r in joined for a in r.alerts if a.type is AlarmChange.RAISED]
    assert raised, "a confident extra signal should outweigh the detector's -3/T"
    scored = [f for r in joined for f in r.faces if f.update is not None]
    assert scored and all(f.signals == (("constant", 8.0),) for f in scored)
    assert all(f.logit == pytest.approx(-3.0) for f in scored)  # the detector's own logit kept
    assert confident.crops_seen == len(scored) and confident.closed

    muted = analyse_video(one_face_video, real_model, [ExtraSignal(ConstantSignal(8.0), 0.0)])
    assert not any(r.alerts for r in muted)  # weight 0: measured, not counted
    broken = analyse_video(one_face_video, real_model, [ExtraSignal(ConstantSignal(math.nan))])
    assert not any(r.alerts for r in broken)  # a NaN is no evidence, not certainty


def test_scan_loads_an_installed_signal_and_names_a_missing_one(
    installed_example: Path, one_face_video: Path, real_model: Path
) -> None:
    def scan(*extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [
                sys.executable,
                "-m",
                "swapwatch",
                "scan",
                str(one_face_video),
                "--model",
                str(real_model),
                "--json",
                *extra,
            ],
            env={"PYTHONPATH": str(installed_example), "PATH": "/usr/bin:/bin"},
            capture_output=True,
            text=True,
            timeout=120,
        )

    ok = scan("--signal", "brightness:0.5")
    assert ok.returncode == 0, ok.stderr
    report = json.loads(ok.stdout)
    assert report["verdict"] == "real"
    (track,) = report["tracks"]
    # The example's logit is |mean - 0.5| * 4 - 1: negative for a mid-toned face crop.
    assert -1.0 <= track["signals"]["brightness"] < 0.0
    plain = scan()
    assert "signals" not in json.loads(plain.stdout)["tracks"][0]
    missing = scan("--signal", "nope")
    assert missing.returncode != 0
    assert "unknown signal 'nope'" in missing.stderr and "brightness" in missing.stderr
    assert "Traceback" not in missing.stderr
