"""The live figures of a stream (frame rates, latency, faces) follow its frames: a feed that
freezes shows 0 fps and no latency within FPS_WINDOW_SECONDS, in the API and in /metrics."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families
from publisher import start_publisher
from service import free_port, running_service

from swapwatch.server.config import AnalysisConfig, ServiceConfig
from swapwatch.server.streams import FPS_WINDOW_SECONDS, RateMeter
from swapwatch.stream.rate import RateCap

pytestmark = pytest.mark.network


def gauges(metrics_text: str, stream: str) -> dict[str, float]:
    """The per-stream gauges of one stream, by metric name."""
    return {
        sample.name: sample.value
        for family in text_string_to_metric_families(metrics_text)
        for sample in family.samples
        if sample.labels.get("stream") == stream and family.type == "gauge"
    }


def test_a_frozen_feed_shows_no_rate_and_no_latency(fake_model: Path) -> None:
    camera = free_port()
    # 4 s of frames, then connected and silent (read_timeout_s keeps it "running" meanwhile)
    publisher = start_publisher(f"tcp://127.0.0.1:{camera}?listen=1", 4.0, "mpegts", hold=30.0)
    config = ServiceConfig(analysis={"model": fake_model}, ingest={"read_timeout_s": 30.0})
    try:
        with running_service(config) as service:
            added = service.request("POST", "/v1/streams", {"url": f"tcp://127.0.0.1:{camera}"})
            assert added.status == 201, added.body
            sid = added.body["id"]
            live = service.wait_for(lambda s: s["fps_in"] > 5 and s["latency_ms"], sid)
            assert live["state"] == "running" and live["faces"] == 1
            flowing = gauges(str(service.request("GET", "/metrics").body), sid)
            assert flowing["swapwatch_stream_fps_in"] > 5
            assert flowing["swapwatch_stream_latency_seconds"] > 0
            assert flowing["swapwatch_tracked_faces"] == 1

            frames = service.wait_for(lambda s: s["frames_in"] >= 58, sid)["frames_in"]
            last_frame = time.monotonic()
            deadline = last_frame + FPS_WINDOW_SECONDS + 2.0  # + the frames still in flight
            frozen = service.wait_for(lambda s: s["fps_in"] == 0, sid, timeout=20)
            assert time.monotonic() < deadline, f"fps_in fell to 0 only after {frozen}"
            assert frozen["state"] == "running" and frozen["frames_in"] >= frames  # no end seen
            assert frozen["fps_analysed"] == 0
            assert frozen["latency_ms"] is None and frozen["faces"] == 0
            stale = gauges(str(service.request("GET", "/metrics").body), sid)
            assert stale["swapwatch_stream_fps_in"] == 0
            assert stale["swapwatch_stream_fps_analysed"] == 0
            assert "swapwatch_stream_latency_seconds" not in stale
            assert stale["swapwatch_tracked_faces"] == 0
    finally:
        publisher.kill()
        publisher.communicate()


@pytest.mark.parametrize(
    ("marks", "now", "expected"),
    [
        ([], 10.0, 0.0),
        ([(10.0, 5)], 10.0, 0.0),  # one mark: no rate yet
        ([(9.0, 0), (10.0, 15)], 10.0, 15.0),  # 15 frames in the last second
        ([(9.0, 0), (10.0, 15)], 11.0, 7.5),  # nothing since: it falls ...
        ([(9.0, 0), (10.0, 15)], 10.0 + FPS_WINDOW_SECONDS, 0.0),  # ... to 0 within the window
    ],
)
def test_rate_meter_falls_when_updates_stop(
    marks: list[tuple[float, int]], now: float, expected: float
) -> None:
    meter = RateMeter()
    for when, total in marks:
        meter.update(total, when)
    assert meter.rate(now) == pytest.approx(expected)


def admitted_rate(cap_hz: float, fps: float, seconds: float = 60.0) -> float:
    cap = RateCap(cap_hz)
    return sum(cap.admit(i / fps) for i in range(int(seconds * fps))) / seconds


@pytest.mark.parametrize("fps", [24.0, 25.0, 30000 / 1001, 30.0, 50.0, 60.0])
def test_the_service_default_scores_each_face_at_10_hz_or_more(fps: float) -> None:
    # The budget: every face scored at least 10 times a second, at common camera rates.
    assert 10.0 <= admitted_rate(AnalysisConfig().rate, fps) <= 12.5
