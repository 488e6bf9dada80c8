"""A KYC session in a real headless Chromium fed a real recording from ../shared/data: the live
swap half of a DeepFaceLive recording in which the person turns and looks up, converted to .y4m
in tmp_path at test time (never kept), its camera label allowed. benchmarks/kyc_sessions.py
replays the same recording through the session logic and predicts `fail` for
`swap_suspected` (pooled evidence +3.87 against the threshold -1.0), whatever the challenges:
the browser's encoder and the live path must not change that."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest
from receivers import Receiver
from service import running_service
from test_browser import CHROMEDRIVER, CHROMIUM, chromium, loopback_ice  # noqa: F401
from test_kyc_browser import ALLOWED, run_check, session_of

from swapwatch.server.config import ServiceConfig

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
RECORDING = DATA / "dfl" / "Sylvester_Stallone" / "Sylvester_Stallone_0.mp4"

pytestmark = [
    pytest.mark.browser,
    pytest.mark.data,
    pytest.mark.skipif(not RECORDING.is_file(), reason="../shared/data is not present"),
    pytest.mark.skipif(
        not (CHROMIUM.exists() and CHROMEDRIVER.exists()),
        reason="needs Debian's chromium and chromium-driver",
    ),
]


def swap_half_as_y4m(source: Path, target: Path) -> Path:
    """The right half of a side-by-side recording (the live swap) as raw .y4m, for Chromium's
    fake camera, at the recording's own rate."""
    with av.open(str(source)) as container, av.open(str(target), "w", "yuv4mpegpipe") as out:
        stream = container.streams.video[0]
        rate = stream.average_rate or 25
        sink = None
        for frame in container.decode(stream):
            image = frame.to_ndarray(format="rgb24")
            half = np.ascontiguousarray(image[:, image.shape[1] // 2 :])
            height, width = (half.shape[0] // 2) * 2, (half.shape[1] // 2) * 2
            half = np.ascontiguousarray(half[:height, :width])
            if sink is None:
                sink = out.add_stream("rawvideo", rate=rate)
                sink.width, sink.height, sink.pix_fmt = width, height, "yuv420p"
            for packet in sink.encode(av.VideoFrame.from_ndarray(half, format="rgb24")):
                out.mux(packet)
        assert sink is not None
        for packet in sink.encode():
            out.mux(packet)
    return target


@pytest.mark.usefixtures("loopback_ice")
def test_a_live_swap_recording_fails_for_its_swap_as_the_replay_predicts(
    receiver: Receiver,
    tmp_path: Path,
) -> None:
    camera = swap_half_as_y4m(RECORDING, tmp_path / ALLOWED)
    config = ServiceConfig(events={"sinks": (f"webhook:{receiver.url}",)})  # the bundled model
    query = f"count=1&kinds=look_up,turn_left&allow={ALLOWED}"
    with running_service(config) as service, chromium(camera, tmp_path / "profile") as browser:
        page = run_check(browser, service, query)
        session = session_of(service, page)
    verdict = session["verdict"]
    assert page["verdict"] == "fail", verdict
    assert "swap_suspected" in verdict["reasons"], verdict
    swap = verdict["evidence"]["swap"]
    assert swap["weighted_mean"] > swap["threshold"], swap
    readings = {r["name"]: r for r in verdict["evidence"]["injection"]["readings"]}
    assert readings["camera_label"]["contribution"] == "none"
