"""Which URLs the service may pull: an allow-list of schemes, and nothing that makes FFmpeg listen.

Nothing the service opens listens beyond loopback without a key, yet FFmpeg reads options from a
URL's query: `tcp://0.0.0.0:N?listen=1` opens a listening port that anyone on the network can
push video into. A `udp://` pull receives at the URL's own address, so only a loopback one is
allowed. (The CLI's `scan`/`watch` take such URLs, and `--listen`: there the user asks for it.)
"""

from __future__ import annotations

import ipaddress
from urllib.parse import unquote, urlsplit

from swapwatch.errors import ConfigError, UnsupportedSource
from swapwatch.stream.source import redact_url

PULL_SCHEMES = ("rtmp", "rtmps", "rtsp", "rtsps", "srt", "http", "https", "udp", "tcp", "file")
# Options that make FFmpeg wait for a peer instead of connecting to one, in any protocol.
LISTEN_OPTIONS = ("listen", "listen_timeout", "rtmp_listen")
SRT_WAITING_MODES = ("listener", "rendezvous")
PUSH_INSTEAD = 'a publisher pushes through an {"ingest": "rtmp"} stream'


class ListeningPull(UnsupportedSource):
    """A pull URL that would make the service listen for a peer."""


def check_pull_url(url: str, allow_file_urls: bool) -> str:
    """The URL's scheme, if the service may pull it; else one clear error naming why."""
    scheme = url.split("://", 1)[0].lower() if "://" in url else ""
    if scheme not in PULL_SCHEMES:
        schemes = ", ".join(s + "://" for s in PULL_SCHEMES)
        raise UnsupportedSource(f"cannot pull {redact_url(url)!r}: use one of {schemes}")
    if scheme == "file" and not allow_file_urls:
        raise ConfigError("file:// URLs are disabled (set allow_file_urls in the config)")
    for name, value in ffmpeg_query(url):
        if name in LISTEN_OPTIONS or (name == "rtsp_flags" and "listen" in value):
            raise ListeningPull(f"the option '{name}' makes the service listen: {PUSH_INSTEAD}")
        if scheme == "srt" and name == "mode" and value in SRT_WAITING_MODES:
            raise ListeningPull(f"the option 'mode={value}' makes the service wait for a peer")
        if scheme == "udp" and name == "localaddr":
            raise ListeningPull(
                "the option 'localaddr' is not allowed: a udp:// pull receives "
                "at the URL's own loopback address"
            )
    if scheme == "udp" and not is_loopback(urlsplit(url).hostname):
        raise ListeningPull(
            "a udp:// pull receives at the URL's address, which must be loopback "
            f"(127.0.0.1, [::1], localhost), not the network: {PUSH_INSTEAD}"
        )
    return scheme


def ffmpeg_query(url: str) -> list[tuple[str, str]]:
    """The (name, value) options FFmpeg's protocols read from a URL, names and values lower
    case: all after the first '?', even past a '#' (FFmpeg knows no fragments there)."""
    _, mark, query = url.partition("?")
    if not mark:
        return []
    options = []
    for item in query.split("&"):
        name, _, value = item.partition("=")
        options.append((unquote(name).strip().lower(), unquote(value).strip().lower()))
    return options


def is_loopback(host: str | None) -> bool:
    if not host:
        return False
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # a DNS name: it could name any address of this machine
        return False
