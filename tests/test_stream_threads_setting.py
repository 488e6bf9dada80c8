"""A service runs many streams side by side, so each keeps OpenCV's work on its own thread."""

from __future__ import annotations

from pathlib import Path

import cv2

from swapwatch.server.config import ServiceConfig
from tests.service import running_service


def test_the_service_keeps_opencv_on_each_streams_own_thread(fake_model: Path) -> None:
    before = cv2.getNumThreads()
    cv2.setNumThreads(2)
    try:
        with running_service(ServiceConfig(analysis={"model": fake_model})):
            assert cv2.getNumThreads() == 1
    finally:
        cv2.setNumThreads(before)
