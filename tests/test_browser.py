"""The /try page in a real headless Chromium: a fake camera plays a face video to the service over
WebRTC, and the page shows the verdict that comes back on the data channel."""

from __future__ import annotations

import functools
import json
import re
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import aioice.ice
import pytest
from media import Placement, write_video
from selenium import webdriver
from selenium.common.exceptions import WebDriverException
from selenium.webdriver.chrome.service import Service as DriverService
from selenium.webdriver.chrome.webdriver import WebDriver
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webelement import WebElement
from service import RunningService, running_service

from swapwatch.server.config import ServiceConfig

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
VERDICT_TIMEOUT = 45.0
EVENT_LINE = re.compile(r" ((?:stream|alert)\.[a-z]+) \{")

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(
        not (CHROMIUM.exists() and CHROMEDRIVER.exists()),
        reason="needs Debian's chromium and chromium-driver (apt-get install chromium "
        "chromium-driver)",
    ),
]


@pytest.fixture(scope="module")
def camera(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Chromium plays a .y4m file, in a loop, as its camera (raw frames: keep it short)."""
    return write_video(
        tmp_path_factory.mktemp("browser") / "camera.y4m",
        [Placement(0.5, 0.5, 220)],
        seconds=2.0,
        fps=15,
        size=(640, 360),
        codec="rawvideo",
        container_format="yuv4mpegpipe",
    )


@pytest.fixture
def loopback_ice(monkeypatch: pytest.MonkeyPatch) -> None:
    """aioice never offers 127.0.0.1 as a host candidate; add it, so browser and service pair
    on loopback even on a machine whose only interface is `lo` (Chromium offers loopback
    candidates with --allow-loopback-in-peer-connection)."""
    gather = aioice.ice.get_host_addresses

    def with_loopback(use_ipv4: bool, use_ipv6: bool) -> list[str]:
        found = gather(use_ipv4, use_ipv6)
        return ["127.0.0.1", *found] if use_ipv4 else found

    monkeypatch.setattr(aioice.ice, "get_host_addresses", with_loopback)


@contextmanager
def chromium(camera: Path, profile: Path) -> Iterator[WebDriver]:
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--disable-quic",
        f"--user-data-dir={profile}",
        "--use-fake-device-for-media-stream",
        "--use-fake-ui-for-media-stream",  # grants the camera without a prompt
        f"--use-file-for-fake-video-capture={camera}",
        "--allow-loopback-in-peer-connection",
    ):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    # The driver named explicitly: Selenium would otherwise look for (or download) one.
    driver = webdriver.Chrome(service=DriverService(str(CHROMEDRIVER)), options=options)
    try:
        driver.set_page_load_timeout(30)
        yield driver
    finally:
        driver.quit()


def page_state(browser: WebDriver) -> dict[str, str]:
    def text(element_id: str) -> str:
        return browser.find_element(By.ID, element_id).text

    verdict = browser.find_element(By.ID, "verdict")
    return {
        "verdict": verdict.get_attribute("data-verdict") or "",
        "label": verdict.text,
        "detail": text("detail"),
        "error": text("error"),
    }


def diagnosis(browser: WebDriver, service: RunningService, seen: list[str]) -> str:
    try:
        entries = browser.get_log("browser")  # type: ignore[no-untyped-call]
        console = [entry["message"] for entry in entries][-20:]
    except WebDriverException as exc:
        console = [f"(no console log: {exc.msg})"]
    streams = service.request("GET", "/v1/streams").body
    return (
        f"verdicts seen: {seen}; page: {page_state(browser)}; console: {console}; "
        f"streams: {streams}"
    )


def watch_verdict(
    browser: WebDriver, service: RunningService, until: str, timeout: float
) -> list[str]:
    """Poll the page until `#verdict` says `until`; return every verdict seen on the way."""
    seen: list[str] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state = page_state(browser)
        if not seen or seen[-1] != state["verdict"]:
            seen.append(state["verdict"])
        if state["verdict"] == until:
            return seen
        assert not state["error"], diagnosis(browser, service, seen)
        time.sleep(0.2)
    raise AssertionError(
        f"the page never showed {until!r} in {timeout:g}s: {diagnosis(browser, service, seen)}"
    )


@pytest.mark.parametrize(("model", "expected"), [("fake_model", "fake"), ("real_model", "real")])
@pytest.mark.usefixtures("loopback_ice")
def test_the_try_page_shows_the_live_verdict_of_the_camera(
    model: str, expected: str, camera: Path, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    config = ServiceConfig(analysis={"model": request.getfixturevalue(model), "cusum_h": 4.0})
    with running_service(config) as service, chromium(camera, tmp_path / "profile") as browser:
        browser.get(service.base + "/try?autostart=1")
        seen = watch_verdict(browser, service, expected, VERDICT_TIMEOUT)
        assert set(seen) <= {"none", "unknown", "real", "fake"}
        if expected == "real":
            # a real face keeps its verdict: no alarm while it stays in view
            time.sleep(2.0)
            assert page_state(browser)["verdict"] == "real", diagnosis(browser, service, seen)
        assert "1 face(s)" in page_state(browser)["detail"]
        # what the page shows is the service's verdict on the browser's camera
        (stream,) = service.request("GET", "/v1/streams").body["streams"]
        assert stream["kind"] == "webrtc" and stream["state"] == "running"
        assert stream["video"]["width"] == 640 and stream["video"]["height"] == 360
        assert [t["verdict"] for t in stream["tracks"]] == [expected]


@pytest.fixture(scope="module")
def hls_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """An HLS playlist of a face clip, served over HTTP on 127.0.0.1: its URL."""
    folder = tmp_path_factory.mktemp("hls")
    write_video(
        folder / "index.m3u8",
        [Placement(0.5, 0.5, 220)],
        seconds=8.0,
        fps=15,
        size=(640, 360),
        container_format="hls",
    )
    handler = functools.partial(QuietFiles, directory=str(folder))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/index.m3u8"
    finally:
        server.shutdown()
        server.server_close()


class QuietFiles(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


def test_a_new_user_adds_an_hls_stream_on_the_docs_page_and_sees_it_live(
    hls_server: str, camera: Path, fake_model: Path, tmp_path: Path
) -> None:
    """The walkthrough of the README: open the API docs page, send POST /v1/streams with an HLS
    URL, then watch the stream, its face and its alarm appear on the dashboard."""
    config = ServiceConfig(analysis={"model": fake_model, "cusum_h": 4.0})
    with running_service(config) as service, chromium(camera, tmp_path / "profile") as browser:
        browser.get(service.base + "/docs")
        add = wait_for_element(browser, 'form[data-method="post"][data-path="/v1/streams"]')
        body = add.find_element(By.TAG_NAME, "textarea")
        body.clear()
        body.send_keys(json.dumps({"url": hls_server, "id": "lobby"}))
        add.find_element(By.TAG_NAME, "button").click()
        answer = add.find_element(By.TAG_NAME, "pre")
        deadline = time.monotonic() + 10
        while not answer.text and time.monotonic() < deadline:
            time.sleep(0.1)
        assert answer.text.startswith("201"), answer.text

        browser.get(service.base + "/")
        row = 'tr[data-stream="lobby"]'
        deadline = time.monotonic() + VERDICT_TIMEOUT
        while time.monotonic() < deadline:
            rows = texts_of(browser, row)
            events = "\n".join(texts_of(browser, "#events"))
            if rows and "FAKE" in rows[0] and "alert.raised" in events:
                break
            time.sleep(0.3)
        else:
            raise AssertionError(
                f"the dashboard never showed the alarm: {rows} / {events!r}; "
                f"streams: {service.request('GET', '/v1/streams').body}"
            )
        assert "face 1" in rows[0] and "ALARM" in rows[0]
        (stream,) = service.request("GET", "/v1/streams").body["streams"]
        assert stream["url"].endswith("index.m3u8") and stream["video"]["width"] == 640


def texts_of(browser: WebDriver, selector: str) -> list[str]:
    """The shown text of every element matching `selector`, read in one step inside the page:
    the dashboard redraws its rows, so an element found first and read later can be gone."""
    script = "return [...document.querySelectorAll(arguments[0])].map(e => e.innerText);"
    return list(browser.execute_script(script, selector))


def wait_for_element(browser: WebDriver, selector: str, timeout: float = 10.0) -> WebElement:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = browser.find_elements(By.CSS_SELECTOR, selector)
        if found:
            return found[0]
        time.sleep(0.1)
    raise AssertionError(f"no {selector} on {browser.current_url}")


def test_the_dashboard_opened_after_an_alarm_shows_it(
    one_face_video: Path, camera: Path, fake_model: Path, tmp_path: Path
) -> None:
    """An operator who opens the dashboard after the alarm (the stream has even ended) sees the
    alarm in the events list, loaded from the outbox."""
    config = ServiceConfig(
        analysis={"model": fake_model, "cusum_h": 4.0}, ingest={"pull": {"allow_file_urls": True}}
    )
    with running_service(config) as service:
        added = service.request(
            "POST", "/v1/streams", {"url": one_face_video.as_uri(), "id": "gone"}
        )
        assert added.status == 201, added.body
        ended = service.wait_for(lambda s: s["state"] == "ended", "gone", timeout=60)
        assert ended["alarms_raised"] >= 1
        deadline = time.monotonic() + 10
        while service.request("GET", "/v1/events/status").body["outbox"]["recorded"] < 3:
            assert time.monotonic() < deadline, "the stream's events were never recorded"
            time.sleep(0.1)

        with chromium(camera, tmp_path / "profile") as browser:
            browser.get(service.base + "/")
            deadline = time.monotonic() + 15
            lines: list[str] = []
            while time.monotonic() < deadline:
                lines = "\n".join(texts_of(browser, "#events")).splitlines()
                if any(" stream.ended " in line for line in lines):
                    break
                time.sleep(0.2)
            kinds = [m.group(1) for line in lines if (m := EVENT_LINE.search(line))]
            assert "alert.raised" in kinds, lines
            # newest first, as live events are shown
            assert kinds[0] == "stream.ended" and kinds[-1] == "stream.started", lines
            assert all('"gone"' in line for line in lines), lines
