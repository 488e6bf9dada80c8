"""nginx-rtmp as the RTMP front door: its publish callbacks start and stop the analysis.

nginx (with the RTMP module) accepts the publishers; its `on_publish` callback posts form fields
(`call`, `app`, `name` = the stream key, `addr`, `clientid`, …) and lets the publish go on only
on a 2xx answer. On publish the service pulls the stream back from nginx
(`<nginx_rtmp_url>/<app>/<name>`) as a stream of kind `nginx-rtmp` named by its key; on
`on_publish_done` it removes that stream. nginx cannot send headers: with a token configured,
the callback URLs carry it as `?token=` (see deploy/nginx-rtmp/nginx.conf).
"""

from __future__ import annotations

import hmac
import logging
import re
from collections.abc import Mapping, Sequence

from swapwatch.errors import ConfigError
from swapwatch.server.config import NginxRtmpConfig
from swapwatch.server.manager import StreamManager
from swapwatch.server.state import SavedStream
from swapwatch.server.streams import ManagedStream, StreamState, check_stream_id

log = logging.getLogger(__name__)

KIND = "nginx-rtmp"
APP_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


class HooksDisabled(ConfigError):
    """The service is configured without an nginx-rtmp relay (`ingest.nginx_rtmp.url` unset)."""


class PublishRefused(ConfigError):
    """The stream key is not on the allow-list: nginx refuses the publish."""


class NginxRtmpHooks:
    """The `on_publish` / `on_publish_done` callbacks of nginx-rtmp."""

    def __init__(self, config: NginxRtmpConfig, manager: StreamManager) -> None:
        self.config = config
        self.manager = manager
        # stream id -> nginx client id of the publisher whose session started it
        self._publishers: dict[str, str] = {}
        # (stream id, client id) of each publish being handled -> whether its session ended
        # meanwhile: nginx sends publish_done for a publisher that leaves during on_publish.
        self._in_flight: dict[tuple[str, str], bool] = {}

    def check_enabled(self) -> None:
        """Raise HooksDisabled when the service runs without a relay."""
        self._base_url()

    def _base_url(self) -> str:
        if self.config.url is None:
            raise HooksDisabled("the nginx-rtmp hooks are off (set ingest.nginx_rtmp.url)")
        return self.config.url.rstrip("/")

    async def publish(self, form: Mapping[str, str]) -> ManagedStream:
        """Start pulling a stream nginx is about to accept; raise to refuse it."""
        base = self._base_url()
        _check_call(form, "publish")
        app = _field(form, "app")
        if not APP_NAME.match(app):
            raise ConfigError("'app' must be 1-64 letters, digits, '_', '.' or '-'")
        key = check_stream_id(_field(form, "name"))
        allowed = self.config.keys
        if allowed and not any(hmac.compare_digest(key.encode(), k.encode()) for k in allowed):
            log.warning("nginx-rtmp: refused %s: its stream key is not allowed", _client(form))
            raise PublishRefused("this stream key may not publish")
        client = form.get("clientid", "")
        session = (key, client)
        self._in_flight[session] = False
        try:
            existing = self.manager.workers.get(key)
            if (
                existing is not None
                and existing.spec.kind == KIND
                and existing.state is not StreamState.RUNNING
            ):
                # Left over from a session whose publish_done never came (nginx restarted): the
                # new publisher replaces it. A running one stays, and the newcomer gets a 409.
                await self.manager.remove(key)
            worker = await self.manager.add_pull(
                f"{base}/{app}/{key}", key, kind=KIND, publisher=client
            )
        finally:
            left = self._in_flight.pop(session)
        if left:  # no publish_done will come for it again: it would pull a stream that is gone
            await self.manager.remove(key)
            log.info("nginx-rtmp: %s left before its publish was accepted", _client(form))
            raise PublishRefused("the publisher left while its publish was being accepted")
        self._publishers[key] = client
        log.info("nginx-rtmp: %s publishes to app %s", _client(form), app)
        return worker

    def restore(self, saved: Sequence[SavedStream]) -> None:
        """After a restart: the resumed relay streams end with their publisher's session."""
        for stream in saved:
            worker = self.manager.workers.get(stream.stream_id)
            if stream.kind == KIND and worker is not None and worker.spec.kind == KIND:
                self._publishers[stream.stream_id] = stream.publisher or ""

    async def publish_done(self, form: Mapping[str, str]) -> bool:
        """Remove the stream a finished publish session started; False if there was none."""
        self._base_url()
        _check_call(form, "publish_done")
        key = _field(form, "name")
        session = (key, form.get("clientid", ""))
        if session in self._in_flight:  # its publish is still being handled: that ends it
            self._in_flight[session] = True
            return True
        worker = self.manager.workers.get(key)
        if worker is None or worker.spec.kind != KIND:
            self._publishers.pop(key, None)  # removed through the API meanwhile
            return False
        # Only the session that started the stream ends it, not a later refused duplicate.
        if self._publishers.get(key, "") != form.get("clientid", ""):
            return False
        self._publishers.pop(key, None)
        await self.manager.remove(key)
        log.info("nginx-rtmp: %s stopped publishing", _client(form))
        return True


def _field(form: Mapping[str, str], name: str) -> str:
    value = form.get(name)
    if not value:
        raise ConfigError(f"the nginx-rtmp callback has no '{name}'")
    return value


def _check_call(form: Mapping[str, str], expected: str) -> None:
    """A callback URL pointed at the wrong hook is a configuration mistake worth a 400."""
    call = form.get("call")
    if call is not None and call != expected:
        raise ConfigError(f"this hook takes call={expected}, not call={call}")


def _client(form: Mapping[str, str]) -> str:
    return f"client {form.get('clientid', '?')} from {form.get('addr', '?')}"
