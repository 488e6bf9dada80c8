"""The public Python API: `Detector` and the types its methods take and return.

    from swapwatch import Detector

    with Detector() as detector:
        result = detector.scan("call.mp4")
        print(result.verdict, result.score)

Errors are the `swapwatch.errors` tree (SwapwatchError at its root), named in each method's
docstring.
"""

from swapwatch.api.detector import Detector
from swapwatch.api.results import PictureFace, PictureResult, WatchSummary
from swapwatch.events.model import Event, EventType
from swapwatch.faces.quality import QualityConfig
from swapwatch.fusion import Verdict
from swapwatch.stream.scan import NoVerdictReason, ScanResult

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
]
