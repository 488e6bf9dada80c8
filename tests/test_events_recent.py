"""`GET /v1/events?recent=N`: a live-feed client that just connected first gets the N latest
recorded events, so a dashboard opened after an alarm still shows it."""

from __future__ import annotations

import json
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from media import Placement, write_video
from service import RunningService, running_service

from swapwatch.server.config import ServiceConfig


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_video(
        tmp_path_factory.mktemp("recent") / "face.mp4",
        [Placement(0.5, 0.5, 300)],
        seconds=2.0,
        size=(640, 360),
    )


def sse_messages(
    service: RunningService, query: str, wanted: int, last_id: str = "", timeout: float = 10.0
) -> list[dict[str, Any]]:
    """The first `wanted` messages of /v1/events{query} as {id, event, data}; fewer when the
    feed stays silent for `timeout` s."""
    request = urllib.request.Request(service.base + "/v1/events" + query)
    if last_id:
        request.add_header("Last-Event-ID", last_id)
    messages: list[dict[str, Any]] = []
    current: dict[str, Any] = {}
    with urllib.request.urlopen(request, timeout=timeout) as response:
        try:
            while len(messages) < wanted:
                line = response.readline().decode().rstrip("\n")
                if not line and current:
                    messages.append(current)
                    current = {}
                elif line.startswith(("id: ", "event: ")):
                    key, _, value = line.partition(": ")
                    current[key] = value
                elif line.startswith("data: "):
                    current["data"] = json.loads(line[len("data: ") :])
        except TimeoutError:
            pass
    return messages


def test_a_client_that_connects_after_an_alarm_gets_it_first(clip: Path, fake_model: Path) -> None:
    config = ServiceConfig(
        analysis={"model": fake_model, "cusum_h": 4.0}, ingest={"pull": {"allow_file_urls": True}}
    )
    with running_service(config) as service:
        reply = service.request("POST", "/v1/streams", {"url": clip.as_uri(), "id": "earlier"})
        assert reply.status == 201, reply.body
        service.wait_for(lambda s: s["state"] == "ended", "earlier", timeout=60)
        deadline = time.monotonic() + 10
        while service.request("GET", "/v1/events/status").body["outbox"]["recorded"] < 3:
            assert time.monotonic() < deadline, "the stream's events were never recorded"
            time.sleep(0.1)

        everything = sse_messages(service, "?recent=100", wanted=100, timeout=2.0)
        kinds = [m["event"] for m in everything]
        assert kinds[0] == "stream.started" and kinds[-1] == "stream.ended", kinds
        assert "alert.raised" in kinds
        assert all(m["data"]["stream"] == "earlier" for m in everything)
        ids = [int(m["id"]) for m in everything]
        assert ids == sorted(ids)  # in outbox order

        latest = sse_messages(service, "?recent=2", wanted=2)
        assert latest == everything[-2:]  # the two newest, oldest first

        # A client resuming from the newest id has missed nothing: no replay of `recent`.
        resumed = sse_messages(service, "?recent=100", wanted=1, last_id=str(ids[-1]), timeout=2)
        assert resumed == []
        assert sse_messages(service, "", wanted=1, timeout=2) == []  # default: live only


def test_a_bad_recent_count_is_a_400(fake_model: Path) -> None:
    with running_service(ServiceConfig(analysis={"model": fake_model})) as service:
        for value in ("-1", "abc", "1001", "2.5", "\u0661"):  # the last: an Arabic-Indic 1
            reply = service.request("GET", "/v1/events?recent=" + urllib.request.quote(value))
            assert reply.status == 400, (value, reply.body)
            assert "recent" in reply.body["error"]["message"]
