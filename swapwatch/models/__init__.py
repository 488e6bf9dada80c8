"""Bundled model files and how to find the default detector."""

from __future__ import annotations

from pathlib import Path

from swapwatch.errors import ModelNotInstalled

MODELS_DIR = Path(__file__).resolve().parent
DEFAULT_DETECTOR = MODELS_DIR / "swapwatch-detector.onnx"


def resolve_detector(path: Path | None) -> Path:
    """The model to load: the one given, else the bundled default, else a clear error."""
    if path is not None:
        return path
    if DEFAULT_DETECTOR.is_file():
        return DEFAULT_DETECTOR
    raise ModelNotInstalled(
        "no trained detector model is installed, so swapwatch cannot score faces yet; "
        "pass --model FILE.onnx (a model exported by `swapwatch export`)"
    )
