"""A reconnect keeps the stream's media time going forward: the tracks of the first connection
are forgotten after the usual timeout, and their alarm no longer marks the stream alarmed."""

from __future__ import annotations

import time
from pathlib import Path

from publisher import finished, start_publisher
from service import free_port, running_service

from swapwatch.server.config import ServiceConfig
from swapwatch.stream.tracks import TRACK_TIMEOUT_S


def test_after_a_reconnect_the_old_tracks_go_and_their_alarm_with_them(fake_model: Path) -> None:
    port = free_port()
    url = f"tcp://127.0.0.1:{port}"
    camera = f"{url}?listen=1"
    config = ServiceConfig(
        # KYC: an alarm never clears by itself, only forgetting its track ends it
        analysis={"model": fake_model, "cusum_h": 4.0, "policy": "kyc"},
        ingest={"reconnect_initial_s": 0.3, "reconnect_max_s": 1.0, "read_timeout_s": 3.0},
    )
    with running_service(config) as service:
        # The second connection is shorter than the first plus the timeout: on a clock that
        # starts again at 0 it never gets past the old tracks' last sight.
        first = start_publisher(camera, 4.0, "mpegts")
        time.sleep(0.5)
        assert service.request("POST", "/v1/streams", {"url": url, "id": "cam"}).status == 201
        alarmed = service.wait_for(lambda s: s["alarm"] and s["tracks"], "cam", 30)
        old_tracks = {t["track_id"] for t in alarmed["tracks"]}
        finished(first)  # the camera goes away, and comes back showing no face
        service.wait_for(lambda s: s["reconnects"] >= 1, "cam")
        second = start_publisher(camera, TRACK_TIMEOUT_S + 2.0, "mpegts", face=0)
        status = service.wait_for(
            lambda s: s["state"] == "running" and not s["alarm"], "cam", TRACK_TIMEOUT_S + 15
        )
        assert not {t["track_id"] for t in status["tracks"]} & old_tracks
        assert status["alarms_raised"] >= 1
        finished(second)
