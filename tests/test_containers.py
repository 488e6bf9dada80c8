"""The images of deploy/ built and deploy/compose.yaml brought up with podman, as a user would:
a stream pushed into the nginx-rtmp container reaches the containerised service, and its alert
arrives at the MQTT broker; Prometheus scrapes the service with the token from the secret; the
token shows in no log; `podman stop` ends the service at once.

No image registry is reachable here, so the base images are made with debootstrap and tagged
under the names the Dockerfiles start FROM, and the broker and Prometheus are stand-ins built
from Debian's packages (tests/containers/) under the upstream names compose.yaml uses. Grafana is
not started: its provisioning is checked offline (test_deploy_manifests.py). `.ci/run` installs
podman and sets it up (../shared/docs/containers.md); here the test only skips without it."""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
import yaml
from paho.mqtt.enums import CallbackAPIVersion
from publisher import finished, start_publisher
from receivers import free_port

ROOT = Path(__file__).parents[1]
DEPLOY = ROOT / "deploy"
COMPOSE = DEPLOY / "compose.yaml"
SMOKE_OVERRIDE = Path(__file__).parent / "containers" / "compose.smoke.yaml"
STAND_INS = {"mosquitto": "mosquitto", "prometheus": "prometheus"}  # service -> tests/containers/
STARTED = ("swapwatch", "nginx-rtmp", "mosquitto", "prometheus")
TOKEN = "smoke-test-token-0123456789abcdef"  # URL-safe, as the README asks

pytestmark = [
    pytest.mark.container,
    pytest.mark.skipif(
        shutil.which("podman") is None or shutil.which("podman-compose") is None,
        reason="needs podman and podman-compose (.ci/run installs them; "
        "see ../shared/docs/containers.md)",
    ),
]


def run(*command: str, timeout: float = 600, env: dict[str, str] | None = None) -> str:
    done = subprocess.run(
        command, capture_output=True, text=True, timeout=timeout, env=env, cwd=ROOT, check=False
    )
    if done.returncode != 0:
        raise AssertionError(
            f"{' '.join(command)} failed ({done.returncode}):\n{done.stderr[-4000:]}"
        )
    return done.stdout


def qualified(image: str) -> str:
    """The name Docker would pull `image` under (podman finds a local image by it)."""
    first = image.split("/", 1)[0]
    if "/" in image and ("." in first or ":" in first or first == "localhost"):
        return image
    return "docker.io/" + (image if "/" in image else "library/" + image)


def image_exists(image: str) -> bool:
    return subprocess.run(["podman", "image", "exists", image], check=False).returncode == 0


def debian_mirror() -> str:
    """The machine's configured Debian mirror (deb822 or one-line sources)."""
    for path in [*sorted(Path("/etc/apt").glob("sources.list*/*")), Path("/etc/apt/sources.list")]:
        if path.is_file():
            found = re.search(r"(?:URIs:|^deb)\s+(https?://\S+/debian)\b", path.read_text(), re.M)
            if found:
                return found.group(1)
    return "http://deb.debian.org/debian"


def base_images() -> list[str]:
    """The FROM images of the Dockerfiles this test builds (their BASE_IMAGE defaults)."""
    dockerfiles = [DEPLOY / "Dockerfile", DEPLOY / "nginx-rtmp" / "Dockerfile"]
    dockerfiles += [
        Path(__file__).parent / "containers" / d / "Dockerfile" for d in STAND_INS.values()
    ]
    names = set()
    for dockerfile in dockerfiles:
        found = re.search(r"^ARG BASE_IMAGE=(\S+)", dockerfile.read_text(), re.M)
        assert found, f"{dockerfile} has no ARG BASE_IMAGE default"
        names.add(found.group(1))
    return sorted(names)


def make_base_images(workdir: Path) -> None:
    """A Debian 12 image (Python 3.11, as python:3.11-slim) from debootstrap, tagged under every
    base name still missing; the machine's extra CA certificates go in, so that pip and apt
    reach their registries through this network's proxy."""
    missing = [qualified(name) for name in base_images() if not image_exists(qualified(name))]
    if not missing:
        return
    if shutil.which("debootstrap") is None:
        pytest.skip(f"no base image {missing} and no debootstrap to make one (apt debootstrap)")
    rootfs = workdir / "rootfs"
    run(
        "debootstrap",
        "--variant=minbase",
        "--include=python3,python3-pip,python3-venv,ca-certificates,curl",
        "bookworm",
        str(rootfs),
        debian_mirror(),
        timeout=900,
    )
    for certificate in Path("/usr/local/share/ca-certificates").glob("*.crt"):
        shutil.copy(certificate, rootfs / "usr/local/share/ca-certificates")
    run("chroot", str(rootfs), "update-ca-certificates")
    for package in (rootfs / "var/cache/apt/archives").glob("*.deb"):
        package.unlink()
    with subprocess.Popen(["tar", "-C", str(rootfs), "-c", "."], stdout=subprocess.PIPE) as tar:
        imported = subprocess.run(
            ["podman", "import", "-q", "-", missing[0]],
            stdin=tar.stdout,
            capture_output=True,
            check=False,
        )
    assert tar.returncode == 0 and imported.returncode == 0, imported.stderr.decode()
    for name in missing[1:]:
        run("podman", "tag", missing[0], name)
    shutil.rmtree(rootfs)


def build_images(compose: dict[str, Any]) -> None:
    for name in STARTED:
        service = compose["services"][name]
        if "build" in service:
            context = DEPLOY / service["build"]["context"]
            dockerfile = context / service["build"].get("dockerfile", "Dockerfile")
            tag = service["image"]
        else:
            context = Path(__file__).parent / "containers" / STAND_INS[name]
            dockerfile, tag = context / "Dockerfile", qualified(service["image"])
        # --format docker keeps HEALTHCHECK; layers are cached between runs.
        run(
            "podman",
            "build",
            "-q",
            "--format",
            "docker",
            "-f",
            str(dockerfile),
            "-t",
            tag,
            str(context),
            timeout=1200,
        )


@dataclass
class Stack:
    project: str
    env: dict[str, str]
    http: int
    rtmp: int
    mqtt: int
    prometheus: int

    def container(self, service: str) -> str:
        return f"{self.project}_{service}_1"  # podman-compose's naming

    def logs(self, service: str) -> str:
        done = subprocess.run(
            ["podman", "logs", self.container(service)], capture_output=True, text=True, check=False
        )
        return done.stdout + done.stderr

    def all_logs(self) -> str:
        return "\n".join(f"== {s}\n{self.logs(s)[-3000:]}" for s in STARTED)


def free_port_range(count: int) -> int:
    """The first of `count` consecutive ports that are free now."""
    for _ in range(50):
        first = free_port()
        if first + count < 65536 and all(port_is_free(first + i) for i in range(count)):
            return first
    raise RuntimeError(f"no {count} consecutive free ports")


def port_is_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("0.0.0.0", port))
        except OSError:
            return False
    return True


def get_json(url: str, token: str | None = None) -> Any:
    request = urllib.request.Request(url)
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    with urllib.request.urlopen(request, timeout=5) as reply:
        return json.loads(reply.read())


def wait_for(what: str, check: Any, stack: Stack, timeout: float) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            result = check()
        except (OSError, ValueError):
            result = None
        if result:
            return result
        time.sleep(0.5)
    raise AssertionError(f"{what} within {timeout:.0f} s\n{stack.all_logs()}")


@pytest.fixture(scope="module")
def stack(fake_model: Path) -> Iterator[Stack]:
    workdir = Path(tempfile.mkdtemp(prefix="swapwatch-containers-"))
    compose = yaml.safe_load(COMPOSE.read_text())
    make_base_images(workdir)
    build_images(compose)
    # Bind-mounted into containers that run as their own users: readable by them.
    models = workdir / "models"
    models.mkdir(mode=0o755)
    shutil.copy(fake_model, models / "always_fake.onnx")
    (models / "always_fake.onnx").chmod(0o644)
    token_file = workdir / "token"
    token_file.write_text(TOKEN + "\n")
    token_file.chmod(0o644)
    ports = {name: free_port() for name in ("http", "rtmp", "mqtt", "prometheus", "grafana")}
    ingest = free_port_range(10)  # not the defaults: other tests' push ingests may hold those
    env = {
        **os.environ,
        "PUBLISH_HTTP_PORT": str(ports["http"]),
        "PUBLISH_RTMP_PORT": str(ports["rtmp"]),
        "PUBLISH_MQTT_PORT": str(ports["mqtt"]),
        "PUBLISH_PROMETHEUS_PORT": str(ports["prometheus"]),
        "PUBLISH_GRAFANA_PORT": str(ports["grafana"]),
        "PUBLISH_RTMP_INGEST_PORTS": f"{ingest}-{ingest + 9}",
        "TOKEN_SECRET_FILE": str(token_file),
        "GRAFANA_PASSWORD_SECRET_FILE": str(token_file),
        "SMOKE_MODEL_DIR": str(models),
    }
    project = f"swapwatch-smoke-{os.getpid()}"
    files = ["-p", project, "-f", str(COMPOSE), "-f", str(SMOKE_OVERRIDE)]
    stack = Stack(project, env, ports["http"], ports["rtmp"], ports["mqtt"], ports["prometheus"])
    try:
        run("podman-compose", *files, "up", "-d", *STARTED, env=env, timeout=300)
        base = f"http://127.0.0.1:{stack.http}"
        wait_for(
            "the service was not ready",
            lambda: get_json(base + "/readyz")["status"] == "ready",
            stack,
            120,
        )
        yield stack
    finally:
        subprocess.run(
            ["podman-compose", *files, "down", "-v"],
            env=env,
            cwd=ROOT,
            capture_output=True,
            timeout=120,
            check=False,
        )
        shutil.rmtree(workdir, ignore_errors=True)


class Subscriber:
    """Every message on swapwatch/# of the broker the compose file runs."""

    def __init__(self, port: int) -> None:
        self.messages: list[tuple[str, dict[str, Any]]] = []
        self.subscribed = threading.Event()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2)
        self.client.on_connect = lambda c, *_: c.subscribe("swapwatch/#", qos=1)
        self.client.on_subscribe = lambda *_: self.subscribed.set()
        self.client.on_message = lambda _c, _u, m: self.messages.append(
            (m.topic, json.loads(m.payload))
        )
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def test_a_stream_pushed_to_nginx_rtmp_raises_an_alert_that_reaches_the_broker(
    stack: Stack,
) -> None:
    subscriber = Subscriber(stack.mqtt)
    try:
        assert subscriber.subscribed.wait(30), stack.all_logs()
        publisher = start_publisher(f"rtmp://127.0.0.1:{stack.rtmp}/live/smoke", 10.0)
        alert = wait_for(
            "no alert.raised for the stream reached the broker",
            lambda: next((m for t, m in subscriber.messages if m["type"] == "alert.raised"), None),
            stack,
            90,
        )
        finished(publisher)
        ended = wait_for(
            "no stream.ended reached the broker",
            lambda: next((m for t, m in subscriber.messages if m["type"] == "stream.ended"), None),
            stack,
            30,
        )
    finally:
        subscriber.close()
    assert alert["stream"] == "smoke" and alert["score"] > 0.9
    topics = [t for t, _ in subscriber.messages]
    assert "swapwatch/smoke/stream.started" in topics
    assert "swapwatch/smoke/alert.raised" in topics
    assert ended["detail"]["reason"] == "removed"  # the relay's publish_done removed it


def test_prometheus_scrapes_the_service_with_the_token(stack: Stack) -> None:
    base = f"http://127.0.0.1:{stack.prometheus}/api/v1"

    def target_up() -> bool:
        targets = get_json(base + "/targets")["data"]["activeTargets"]
        return any(t["labels"]["job"] == "swapwatch" and t["health"] == "up" for t in targets)

    wait_for("Prometheus did not scrape swapwatch", target_up, stack, 60)
    result = get_json(base + "/query?query=swapwatch_active_streams")["data"]["result"]
    assert result, "no swapwatch series in Prometheus"


def test_the_token_is_in_no_log(stack: Stack) -> None:
    for service in STARTED:
        assert TOKEN not in stack.logs(service), service


def test_the_service_runs_unprivileged_on_a_read_only_root(stack: Stack) -> None:
    found = json.loads(run("podman", "inspect", stack.container("swapwatch")))[0]
    assert found["Config"]["User"] == "10001:10001"
    assert found["HostConfig"]["ReadonlyRootfs"] is True
    assert found["State"]["Running"] is True  # and it works so: the alert above came from it


def test_podman_stop_ends_the_service_at_once(stack: Stack) -> None:
    started = time.monotonic()
    run("podman", "stop", "-t", "20", stack.container("swapwatch"))
    stopped_in = time.monotonic() - started
    state = json.loads(run("podman", "inspect", stack.container("swapwatch")))[0]["State"]
    assert state["ExitCode"] == 0, stack.logs("swapwatch")[-3000:]
    assert stopped_in < 8, f"podman stop took {stopped_in:.1f} s"
