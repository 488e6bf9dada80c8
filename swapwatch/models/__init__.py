"""Bundled model files and how to find the default detector.

Two files hold one detector: `swapwatch-detector.onnx`, int8 (static QDQ), the default, about
twice as fast on a CPU; and `swapwatch-detector-fp32.onnx`, the float model it was quantized
from, chosen when the detector runs on a GPU (TensorRT builds its FP16 engine from it). The
MediaPipe files that find and track faces come from the mediapipe 0.10.21 wheel.
"""

from __future__ import annotations

from pathlib import Path

from swapwatch.errors import ModelNotInstalled

MODELS_DIR = Path(__file__).resolve().parent
DEFAULT_DETECTOR = MODELS_DIR / "swapwatch-detector.onnx"
FLOAT_DETECTOR = MODELS_DIR / "swapwatch-detector-fp32.onnx"
MEDIAPIPE_DIR = MODELS_DIR / "mediapipe"
FACE_DETECTOR_MODEL = MEDIAPIPE_DIR / "face_detection_full_range_sparse.tflite"
CLOSE_FACE_DETECTOR_MODEL = MEDIAPIPE_DIR / "face_detection_short_range.tflite"
FACE_LANDMARK_MODEL = MEDIAPIPE_DIR / "face_landmark.tflite"


def bundled_model_files() -> tuple[Path, ...]:
    """Every model file the service loads from the package (an install without one of them
    cannot run with its defaults: the container build checks them)."""
    return (
        DEFAULT_DETECTOR,
        FLOAT_DETECTOR,
        FACE_DETECTOR_MODEL,
        CLOSE_FACE_DETECTOR_MODEL,
        FACE_LANDMARK_MODEL,
    )


def resolve_detector(path: Path | None, device: str = "cpu") -> Path:
    """The model to load: the one given, else the bundled default for `device`, else a clear
    error. `device` is the engine's: cpu, gpu, or auto (a GPU when ONNX Runtime has one)."""
    if path is not None:
        return path
    if device != "cpu" and gpu_provider_available() and FLOAT_DETECTOR.is_file():
        return FLOAT_DETECTOR
    if DEFAULT_DETECTOR.is_file():
        return DEFAULT_DETECTOR
    raise ModelNotInstalled(
        "no trained detector model is installed, so swapwatch cannot score faces yet; "
        "pass --model FILE.onnx (a model exported by `swapwatch export`)"
    )


def gpu_provider_available() -> bool:
    """ONNX Runtime has a GPU provider and an NVIDIA driver is loaded (a GPU build of
    onnxruntime on a machine without a GPU would otherwise run the float model on CPU)."""
    import onnxruntime as ort

    available = set(ort.get_available_providers())
    if not available & {"CUDAExecutionProvider", "TensorrtExecutionProvider"}:
        return False
    return Path("/proc/driver/nvidia").exists() or Path("/dev/nvidiactl").exists()
