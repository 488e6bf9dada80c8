"""swapwatch: real-time detection of face swaps and other face deepfakes in live video.

    from swapwatch import Detector

    with Detector() as detector:
        print(detector.scan("call.mp4").verdict)

The public API (`swapwatch.api`) loads on first use, so `import swapwatch` alone stays cheap:
no numpy, ONNX Runtime or MediaPipe until a name below is asked for.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from swapwatch.version import __version__

if TYPE_CHECKING:
    from swapwatch.api import (
        Detector,
        Event,
        EventType,
        NoVerdictReason,
        PictureFace,
        PictureResult,
        QualityConfig,
        ScanResult,
        Verdict,
        WatchSummary,
    )

__all__ = [
    "Detector",
    "Event",
    "EventType",
    "NoVerdictReason",
    "PictureFace",
    "PictureResult",
    "QualityConfig",
    "ScanResult",
    "Verdict",
    "WatchSummary",
    "__version__",
]
PUBLIC = frozenset(__all__) - {"__version__"}  # loaded from swapwatch.api on first use


def __getattr__(name: str) -> Any:
    if name in PUBLIC:
        from swapwatch import api

        return getattr(api, name)
    raise AttributeError(f"module 'swapwatch' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *PUBLIC])
