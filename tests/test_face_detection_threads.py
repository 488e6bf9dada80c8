"""Face detectors made, used and closed in several threads at once, as streams and parallel
scans do: MediaPipe 1.x's Python bindings re-set the argument types of its shared native
functions on every task and every picture they make, so a use of them in one thread must never
overlap one in another (a scan once failed with "argument 2: TypeError: 'NoneType' object is not
callable" when two analysers were built at once)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
from media import Placement, render_frame

from swapwatch.faces.detection import FaceDetector


def test_no_two_threads_are_in_mediapipes_bindings_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    from mediapipe.tasks.python import vision
    from mediapipe.tasks.python.core import mediapipe_c_bindings

    inside: list[int] = []  # the threads in the bindings now
    overlaps: list[str] = []
    guard = threading.Lock()

    def probed(function: Callable[..., Any], name: str) -> Callable[..., Any]:
        def probe(*args: Any, **kwargs: Any) -> Any:
            me = threading.get_ident()
            with guard:
                if any(other != me for other in inside):
                    overlaps.append(name)
                inside.append(me)
            try:
                time.sleep(0.002)  # the window a race needs, made wide enough to be seen
                return function(*args, **kwargs)
            finally:
                with guard:
                    inside.remove(me)

        return probe

    # Where the argument types are set (each task and picture made) and where a call is made.
    raw = mediapipe_c_bindings.load_raw_library
    monkeypatch.setattr(mediapipe_c_bindings, "load_raw_library", probed(raw, "argtypes set"))
    monkeypatch.setattr(vision.FaceDetector, "detect", probed(vision.FaceDetector.detect, "detect"))
    close = vision.FaceDetector.close
    probed_close = probed(close, "close")
    monkeypatch.setattr(
        vision.FaceDetector,
        "close",
        # Its __del__ closes again, a no-op without its handle: only a real close counts.
        lambda task: probed_close(task) if task._handle else close(task),
    )

    frame = render_frame(640, 480, [Placement(0.5, 0.5, 200)], 0.0)
    found: list[int] = []
    errors: list[BaseException] = []

    def stream() -> None:
        try:
            for _ in range(4):
                detector = FaceDetector(quiet=True)
                try:
                    found.extend(len(detector.detect(frame)) for _ in range(3))
                finally:
                    detector.close()
        except BaseException as exc:  # reported below, not lost in the thread
            errors.append(exc)

    threads = [threading.Thread(target=stream, daemon=True) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not any(thread.is_alive() for thread in threads), "a detector thread is stuck"
    assert not errors, errors
    assert found == [1] * 48  # each detector still finds the one face
    assert overlaps == []
