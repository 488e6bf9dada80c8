"""`scan --report`: the HTML report, end to end through the CLI."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from media import Placement, write_linear_model, write_video

from swapwatch.cli.main import main


@pytest.fixture(scope="module")
def two_faces(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("media") / "two_faces.mp4"
    return write_video(
        path, [Placement(0.3, 0.5, 300), Placement(0.75, 0.5, 280)], seconds=2, size=(1280, 720)
    )


@pytest.fixture(scope="module")
def fake_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_linear_model(tmp_path_factory.mktemp("models") / "fake.onnx", bias=3.0)


def test_report_shows_verdict_timeline_and_thumbnails(
    two_faces: Path, fake_model: Path, tmp_path: Path
) -> None:
    report = tmp_path / "report.html"
    code = main(["scan", str(two_faces), "--model", str(fake_model), "--report", str(report)])
    assert code == 0
    html = report.read_text(encoding="utf-8")
    assert "FAKE" in html
    assert "not a trained detector" in html
    sections = re.findall(r"<section><h2>Face \d+.*?</section>", html, flags=re.S)
    assert len(sections) == 2  # both faces were tracked
    for section in sections:
        assert "<svg" in section
        assert "data:image/jpeg;base64," in section
    assert "alert.raised" in html
    assert "<script" not in html and "http://" not in html and "https://" not in html


def test_report_to_a_missing_directory_fails_with_one_line(
    two_faces: Path, fake_model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    report = tmp_path / "missing" / "report.html"
    code = main(
        [
            "scan",
            str(two_faces),
            "--model",
            str(fake_model),
            "--report",
            str(report),
            "--max-seconds",
            "0.5",
        ]
    )
    assert code != 0
    errors = [
        line for line in capsys.readouterr().err.splitlines() if line.startswith("swapwatch: error")
    ]
    assert len(errors) == 1
    assert "does not exist" in errors[0]
    assert not report.exists()
