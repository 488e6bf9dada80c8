"""What the service may pull: never a URL that makes FFmpeg listen for a peer."""

from __future__ import annotations

import pytest

from swapwatch.errors import ConfigError, UnsupportedSource
from swapwatch.server.pull_urls import ListeningPull, check_pull_url


@pytest.mark.parametrize(
    ("url", "named"),
    [
        ("tcp://0.0.0.0:9000?listen=1", "'listen'"),
        ("tcp://127.0.0.1:9000?listen", "'listen'"),
        ("tcp://127.0.0.1:9000?timeout=5&LISTEN=2", "'listen'"),
        ("tcp://127.0.0.1:9000?%6Cisten=1", "'listen'"),
        ("tcp://127.0.0.1:9000#x?listen=1", "'listen'"),  # FFmpeg reads past the '#'
        ("tcp://127.0.0.1:9000?listen_timeout=5000", "'listen_timeout'"),
        ("rtmp://0.0.0.0:1935/live/key?listen=1", "'listen'"),
        ("rtmp://0.0.0.0:1935/live/key?rtmp_listen=1", "'rtmp_listen'"),
        ("rtsp://0.0.0.0:8554/cam?rtsp_flags=listen", "'rtsp_flags'"),
        ("rtsp://0.0.0.0:8554/cam?rtsp_flags=filter_src+listen", "'rtsp_flags'"),
        ("http://0.0.0.0:8000/live.m3u8?listen=1", "'listen'"),
        ("srt://0.0.0.0:9000?mode=listener", "'mode=listener'"),
        ("srt://example.org:9000?mode=Rendezvous", "'mode=rendezvous'"),
        ("udp://0.0.0.0:5000", "loopback"),
        ("udp://@:5000", "loopback"),
        ("udp://:5000", "loopback"),
        ("udp://[::]:5000", "loopback"),
        ("udp://239.1.1.1:5000", "loopback"),
        ("udp://192.168.1.10:5000", "loopback"),
        ("udp://camera.example:5000", "loopback"),
        ("udp://127.0.0.1:5000?localaddr=0.0.0.0", "'localaddr'"),
    ],
)
def test_a_pull_that_would_listen_is_refused_naming_why(url: str, named: str) -> None:
    with pytest.raises(ListeningPull, match=named):
        check_pull_url(url, allow_file_urls=False)


@pytest.mark.parametrize(
    "url",
    [
        "rtsp://cam.example/stream?tcp",
        "rtmp://relay.example/live/key",
        "https://cdn.example/live.m3u8?token=abc&mode=listener",  # http reads no 'mode'
        "srt://relay.example:9000?mode=caller&latency=200",
        "tcp://127.0.0.1:9000?timeout=5000000",
        "udp://127.0.0.1:5000",
        "udp://[::1]:5000?fifo_size=100000",
        "udp://localhost:5000",
    ],
)
def test_ordinary_pulls_are_allowed(url: str) -> None:
    assert check_pull_url(url, allow_file_urls=False) == url.split("://")[0]


@pytest.mark.parametrize(
    ("url", "error"),
    [
        ("ftp://example.org/a.mp4", UnsupportedSource),
        ("unix:///tmp/socket", UnsupportedSource),
        ("pipe:0", UnsupportedSource),
        ("FILE:///etc/passwd", ConfigError),
    ],
)
def test_only_the_allowed_schemes_are_pulled(url: str, error: type[Exception]) -> None:
    with pytest.raises(error):
        check_pull_url(url, allow_file_urls=False)
