"""KYC sessions end to end in a real headless Chromium: the /try page's KYC check runs a session
through the embeddable client (/kyc.js), with Chromium's fake camera playing a test-made video;
the verdict comes back on the page and, as a session.completed event, at a webhook receiver."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import av
import pytest
from kyc_media import with_camera_noise
from media import Placement, render_frame
from receivers import Receiver
from selenium.webdriver.chrome.webdriver import WebDriver
from selenium.webdriver.common.by import By
from service import RunningService, running_service
from test_browser import CHROMEDRIVER, CHROMIUM, chromium, loopback_ice  # noqa: F401

from swapwatch.server.config import ServiceConfig

SESSION_TIMEOUT = 60.0
ALLOWED = "camera.y4m"  # Chromium labels its fake camera with the path of the file it plays

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(
        not (CHROMIUM.exists() and CHROMEDRIVER.exists()),
        reason="needs Debian's chromium and chromium-driver",
    ),
]


@pytest.fixture(scope="module")
def camera(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A face that looks straight at the camera and never turns, with camera-like noise, moving
    steadily from side to side; once
    in its 3 s loop it is gone for 0.6 s and comes back where it was (a hand across it, as far
    as the face tracker can tell)."""
    path = tmp_path_factory.mktemp("kyc-browser") / "camera.y4m"
    fps, seconds, width, height = 15, 2.0, 640, 360
    with av.open(str(path), mode="w", format="yuv4mpegpipe") as out:
        stream = out.add_stream("rawvideo", rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        for i in range(int(seconds * fps)):
            t = i / fps
            covered = 1.2 <= t < 1.7
            # Steady motion, left and right at 2 px a frame: a person is never quite still,
            # and a picture still for a few frames reads as repeated frames once the browser's
            # encoder has wiped its noise.
            cx = 0.5 + (abs((t % seconds) / seconds * 2 - 1) - 0.5) * 90 / width
            placements = [] if covered else [Placement(cx, 0.5, 220, sway=0.0)]
            image = render_frame(width, height, placements, t, 90)
            # Something behind the person moves all the time, so the picture is never still
            # while the face is gone (a still picture through the browser's encoder is a run
            # of repeated frames).
            x = 10 + (7 * i) % 90
            image[:, x : x + 60] = (200, 200, 210)
            image = with_camera_noise(image, seed=i)
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path


def run_check(browser: WebDriver, service: RunningService, query: str) -> dict[str, str]:
    """Open the /try page's KYC check with `query` and wait for its verdict."""
    browser.get(f"{service.base}/try?mode=kyc-check&autostart=1&{query}")
    deadline = time.monotonic() + SESSION_TIMEOUT
    while time.monotonic() < deadline:
        verdict = browser.find_element(By.ID, "verdict").get_attribute("data-verdict") or ""
        error = browser.find_element(By.ID, "error").text
        assert not error, error
        if verdict in ("pass", "fail", "retry"):
            detail = browser.find_element(By.ID, "detail")
            return {
                "verdict": verdict,
                "reasons": detail.get_attribute("data-reasons") or "",
                "detail": detail.text,
            }
        time.sleep(0.25)
    console = [e["message"] for e in browser.get_log("browser")][-10:]  # type: ignore[no-untyped-call]
    page = {i: browser.find_element(By.ID, i).text for i in ("prompt", "verdict", "detail")}
    streams = service.request("GET", "/v1/streams").body
    raise AssertionError(
        f"no verdict on the page within {SESSION_TIMEOUT:g}s; page {page}; console {console}; "
        f"streams {streams}"
    )


def session_of(service: RunningService, page: dict[str, str]) -> dict[str, Any]:
    session_id = page["detail"].split()[1]
    reply = service.request("GET", f"/v1/sessions/{session_id}")
    assert reply.status == 200, reply.body
    return dict(reply.body)


def delivered_verdicts(receiver: Receiver, timeout: float = 10.0) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        events = [json.loads(d.body) for d in list(receiver.deliveries)]
        verdicts = [e for e in events if e["type"] == "session.completed"]
        if verdicts:
            return verdicts
        time.sleep(0.1)
    return []


def reading(session: dict[str, Any], name: str) -> dict[str, Any]:
    readings = session["verdict"]["evidence"]["injection"]["readings"]
    return dict(next(r for r in readings if r["name"] == name))


@pytest.fixture
def config(real_model: Path, receiver: Receiver) -> ServiceConfig:
    return ServiceConfig(
        analysis={"model": real_model}, events={"sinks": (f"webhook:{receiver.url}",)}
    )


@pytest.mark.usefixtures("loopback_ice")
def test_a_face_that_never_turns_fails_its_turn_challenges(
    camera: Path, config: ServiceConfig, tmp_path: Path
) -> None:
    query = f"count=2&kinds=turn_left,turn_right&allow={ALLOWED}"
    with running_service(config) as service, chromium(camera, tmp_path / "profile") as browser:
        page = run_check(browser, service, query)
        session = session_of(service, page)
    evidence = session["verdict"]["evidence"]
    why = json.dumps({k: evidence.get(k) for k in ("challenges", "injection", "frames")})
    assert page["verdict"] == "fail", why
    assert page["reasons"] == "challenge_failed", why
    challenges = evidence["challenges"]
    assert [c["kind"] for c in challenges] in (
        ["turn_left", "turn_right"],
        ["turn_right", "turn_left"],
    )
    assert not any(c["met"] for c in challenges), why
    assert all(c["measured"] is not None and c["measured"] < 25 for c in challenges), why


@pytest.mark.usefixtures("loopback_ice")
def test_a_compliant_session_passes_with_its_camera_allowed_and_the_verdict_is_delivered(
    camera: Path, config: ServiceConfig, receiver: Receiver, tmp_path: Path
) -> None:
    query = f"count=1&kinds=hand_over_face&allow={ALLOWED}"
    with running_service(config) as service, chromium(camera, tmp_path / "profile") as browser:
        page = run_check(browser, service, query)
        session = session_of(service, page)
        delivered = delivered_verdicts(receiver)
    assert page["verdict"] == "pass", json.dumps(session["verdict"]["evidence"])
    assert session["state"] == "completed" and session["verdict"]["reasons"] == []
    (challenge,) = session["verdict"]["evidence"]["challenges"]
    assert challenge["kind"] == "hand_over_face" and challenge["met"]
    label = reading(session, "camera_label")
    assert label["value"].endswith(ALLOWED) and label["contribution"] == "none"
    # the verdict event reached the webhook, with the same verdict and evidence
    (event,) = delivered
    assert event["id"] == session["verdict"]["event"]
    assert event["detail"] == {"session": session["id"], "verdict": "pass", "reasons": []}
    assert event["evidence"] == session["verdict"]["evidence"]


@pytest.mark.usefixtures("loopback_ice")
def test_the_same_session_with_its_camera_not_allowed_is_a_retry_for_injection(
    camera: Path, config: ServiceConfig, receiver: Receiver, tmp_path: Path
) -> None:
    with running_service(config) as service, chromium(camera, tmp_path / "profile") as browser:
        page = run_check(browser, service, "count=1&kinds=hand_over_face")
        session = session_of(service, page)
        delivered = delivered_verdicts(receiver)
    assert page["verdict"] == "retry", session["verdict"]
    assert page["reasons"] == "injection_suspected", session["verdict"]
    label = reading(session, "camera_label")
    assert label["contribution"] == "strong" and "fake device" in label["explanation"]
    assert session["verdict"]["evidence"]["injection"]["contributing"][0] == "camera_label"
    (event,) = delivered
    assert event["detail"]["verdict"] == "retry"
    assert event["detail"]["reasons"] == ["injection_suspected"]
