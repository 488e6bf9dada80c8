"""A real nginx-rtmp in front of the service, configured by deploy/nginx-rtmp/nginx.conf: its
publish callbacks start and stop the analysis of each stream, and refuse unknown keys."""

from __future__ import annotations

import socket
import subprocess
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from publisher import finished, start_publisher
from service import Reply, RunningService, free_port, running_service

from swapwatch.errors import ConfigError
from swapwatch.server.config import ServiceConfig
from swapwatch.server.config_sources import load_config
from swapwatch.server.state import SavedStream, StateStore

NGINX = Path("/usr/sbin/nginx")
RTMP_MODULE = Path("/usr/lib/nginx/modules/ngx_rtmp_module.so")
DEPLOYED_CONF = Path(__file__).parents[1] / "deploy" / "nginx-rtmp" / "nginx.conf"
TOKEN = "a-test-token-of-enough-length"

pytestmark = [
    pytest.mark.network,
    pytest.mark.skipif(
        not (NGINX.exists() and RTMP_MODULE.exists()),
        reason="needs Debian's nginx and libnginx-mod-rtmp (apt-get install nginx "
        "libnginx-mod-rtmp)",
    ),
]


@dataclass
class Nginx:
    port: int
    prefix: Path

    @property
    def error_log(self) -> str:
        return (self.prefix / "logs" / "error.log").read_text(errors="replace")


def deployed_conf(rtmp_port: int, service_base: str, token: str) -> str:
    """The repository's nginx.conf on test ports, with the token in the callback URLs."""
    text = DEPLOYED_CONF.read_text()
    for old, new in (
        ("listen 1935;", f"listen 127.0.0.1:{rtmp_port};"),
        ("http://127.0.0.1:8080/", f"{service_base}/"),
        ("/publish;", f"/publish?token={token};"),
        ("/publish_done;", f"/publish_done?token={token};"),
    ):
        assert old in text, f"{DEPLOYED_CONF} no longer has {old!r}"
        text = text.replace(old, new)
    return text


def wait_for_port(port: int, process: subprocess.Popen[bytes], timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and process.poll() is None:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return True
        time.sleep(0.1)
    return False


@contextmanager
def running_nginx(prefix: Path, conf: str, port: int) -> Iterator[Nginx]:
    (prefix / "conf").mkdir(parents=True)
    (prefix / "logs").mkdir()
    (prefix / "conf" / "nginx.conf").write_text(conf)
    command = [str(NGINX), "-p", str(prefix), "-e", "logs/error.log", "-c", "conf/nginx.conf"]
    process = subprocess.Popen(
        [*command, "-g", "daemon off;"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    nginx = Nginx(port, prefix)
    try:
        if not wait_for_port(port, process):
            process.kill()
            _, err = process.communicate(timeout=10)
            raise RuntimeError(f"nginx did not start: {err.decode()} {nginx.error_log}")
        yield nginx
    finally:
        if process.poll() is None:
            process.terminate()  # SIGTERM: nginx's fast shutdown
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(10)
        if process.stderr is not None:
            process.stderr.close()


@pytest.fixture(scope="module")
def relay(
    fake_model: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[RunningService, Nginx]]:
    port = free_port()
    config = ServiceConfig(
        analysis={"model": fake_model},
        auth={"token": TOKEN},
        ingest={
            "nginx_rtmp": {"url": f"rtmp://127.0.0.1:{port}", "keys": ("studio",)},
            "read_timeout_s": 3.0,
            "reconnect_initial_s": 0.3,
            "reconnect_max_s": 1.0,
        },
    )
    with running_service(config) as service:
        conf = deployed_conf(port, service.base, TOKEN)
        with running_nginx(tmp_path_factory.mktemp("nginx"), conf, port) as nginx:
            yield service, nginx


def wait_gone(service: RunningService, stream: str, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if service.request("GET", f"/v1/streams/{stream}", token=TOKEN).status == 404:
            return
        time.sleep(0.2)
    raise AssertionError(f"stream {stream} was not removed after its publisher left")


def test_a_stream_published_to_nginx_is_analysed_until_the_publisher_leaves(
    relay: tuple[RunningService, Nginx],
) -> None:
    service, nginx = relay
    pusher = start_publisher(f"rtmp://127.0.0.1:{nginx.port}/live/studio", 4.0)
    status = service.wait_for(
        lambda s: s["state"] == "running" and s["frames_analysed"] > 10 and s["faces"] == 1,
        "studio",
        token=TOKEN,
    )
    assert status["kind"] == "nginx-rtmp"
    assert status["url"] == f"rtmp://127.0.0.1:{nginx.port}/live/***"  # the key stays hidden
    assert status["tracks"][0]["frames_scored"] > 0
    assert int(finished(pusher)) == 60
    wait_gone(service, "studio")  # on_publish_done
    # the same key may publish again, and is analysed again
    again = start_publisher(f"rtmp://127.0.0.1:{nginx.port}/live/studio", 3.0)
    service.wait_for(lambda s: s["frames_analysed"] > 5, "studio", token=TOKEN)
    finished(again)
    wait_gone(service, "studio")
    # The callback URLs carry the token, and nginx-rtmp logs each call's URL at level info.
    assert TOKEN not in nginx.error_log


def test_nginx_refuses_a_key_the_service_refuses(
    relay: tuple[RunningService, Nginx], caplog: pytest.LogCaptureFixture
) -> None:
    service, nginx = relay
    pusher = start_publisher(f"rtmp://127.0.0.1:{nginx.port}/live/intruder", 2.0)
    _, err = pusher.communicate(timeout=30)
    assert pusher.returncode != 0, f"the publish of a refused key went through: {err[-500:]}"
    # nginx hung up on it because the service said 403 to on_publish (logged in this process)
    assert any("stream key is not allowed" in r.getMessage() for r in caplog.records)
    assert service.request("GET", "/v1/streams/intruder", token=TOKEN).status == 404


@pytest.mark.parametrize(
    ("form", "token", "status"),
    [
        ({"call": "publish", "app": "live", "name": "intruder"}, TOKEN, 403),
        ({"call": "publish", "app": "live", "name": "studio"}, None, 401),
        ({"call": "publish", "app": "live", "name": "bad key"}, TOKEN, 400),
        ({"call": "publish", "app": "../x", "name": "studio"}, TOKEN, 400),
        ({"call": "publish_done", "app": "live", "name": "studio"}, TOKEN, 400),
        ({"call": "publish", "app": "live"}, TOKEN, 400),
    ],
)
def test_the_publish_hook_refuses(
    relay: tuple[RunningService, Nginx], form: dict[str, str], token: str | None, status: int
) -> None:
    service, _ = relay
    reply = service.request(
        "POST",
        "/v1/hooks/nginx-rtmp/publish",
        token=token,
        raw="&".join(f"{k}={v}" for k, v in form.items()).encode(),
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert reply.status == status, reply.body
    assert reply.body["error"]["status"] == status


def test_publish_done_of_an_unknown_stream_is_a_no_op(relay: tuple[RunningService, Nginx]) -> None:
    service, _ = relay
    reply = service.request(
        "POST",
        "/v1/hooks/nginx-rtmp/publish_done",
        token=TOKEN,
        raw=b"call=publish_done&app=live&name=nobody&clientid=7",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert reply.status == 200 and reply.body == {"removed": False}


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({}, ("rtmp://127.0.0.1:1935", ())),
        (
            {
                "SWAPWATCH_INGEST_NGINX_RTMP_URL": "rtmp://relay:1935",
                "SWAPWATCH_INGEST_NGINX_RTMP_KEYS": "a,b",
            },
            ("rtmp://relay:1935", ("a", "b")),
        ),
        ({"SWAPWATCH_INGEST_NGINX_RTMP_URL": "none"}, (None, ())),
        ({"SWAPWATCH_INGEST_NGINX_RTMP_URL": "http://relay/"}, ConfigError),
    ],
)
def test_the_relay_settings(
    environ: dict[str, str], expected: tuple[str | None, tuple[str, ...]] | type[Exception]
) -> None:
    if isinstance(expected, type):
        with pytest.raises(expected, match=r"ingest\.nginx_rtmp\.url"):
            load_config(environ=environ)
        return
    config = load_config(environ=environ)
    assert (config.ingest.nginx_rtmp.url, config.ingest.nginx_rtmp.keys) == expected


def test_the_hooks_are_off_without_a_relay_url(fake_model: Path) -> None:
    with running_service(
        ServiceConfig(analysis={"model": fake_model}, ingest={"nginx_rtmp": {"url": None}})
    ) as service:
        reply = service.request(
            "POST",
            "/v1/hooks/nginx-rtmp/publish",
            raw=b"call=publish&app=live&name=studio",
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )
        assert reply.status == 404 and "hooks are off" in reply.body["error"]["message"]


def test_a_publisher_that_leaves_while_its_publish_is_handled_leaves_no_stream(
    fake_model: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # nginx-rtmp sends publish_done for a session that ends while its on_publish is pending
    # (a publisher that drops at once). Handled before the publish, it found nothing; the
    # publish then started a stream that pulled a relay stream gone for good, for ever.
    save = StateStore.save_stream

    def slowly(self: StateStore, stream: SavedStream) -> None:
        time.sleep(1.0)  # a slow disk: the publish is still being handled
        save(self, stream)

    monkeypatch.setattr(StateStore, "save_stream", slowly)
    config = ServiceConfig(
        analysis={"model": fake_model},
        auth={"token": TOKEN},
        ingest={"nginx_rtmp": {"url": f"rtmp://127.0.0.1:{free_port()}", "keys": ("studio",)}},
    )
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    with running_service(config) as service:

        def hook(call: str) -> Reply:
            raw = f"call={call}&app=live&name=studio&clientid=7".encode()
            return service.request(
                "POST", f"/v1/hooks/nginx-rtmp/{call}", token=TOKEN, raw=raw, headers=form
            )

        with ThreadPoolExecutor(1) as pool:
            publish = pool.submit(hook, "publish")
            time.sleep(0.3)
            done = hook("publish_done")
            refused = publish.result(timeout=30)
        assert done.status == 200
        assert refused.status == 403, refused.body
        assert service.request("GET", "/v1/streams/studio", token=TOKEN).status == 404
        assert service.request("GET", "/v1/streams", token=TOKEN).body["streams"] == []
