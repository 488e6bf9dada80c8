"""The HTTP service: the /v1 API, WebRTC signalling, live events, pages, health and metrics."""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
from collections.abc import Awaitable, Callable
from importlib import resources
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from swapwatch.engines.base import Engine
from swapwatch.errors import ConfigError, SourceError, SwapwatchError
from swapwatch.server.api_models import (
    AnswerModel,
    EventFeedQuery,
    EventsStatus,
    Health,
    NewSession,
    NewStream,
    NewStreamAnswer,
    NginxRtmpPublish,
    NginxRtmpPublishDone,
    Ready,
    Removed,
    Session,
    Stream,
    StreamList,
    WebRtcAnswer,
    WebRtcOffer,
    parse,
)
from swapwatch.server.apidoc import FORM, Handler, Reply, Route, openapi_document
from swapwatch.server.config import (
    AuthConfig,
    HttpConfig,
    PublicServiceConfig,
    ServiceConfig,
    public_view,
)
from swapwatch.server.events import ServiceEvents, events_path
from swapwatch.server.expect import add_catch_all, answer_expect
from swapwatch.server.loop_lag import LoopLagMonitor
from swapwatch.server.manager import (
    StreamExists,
    StreamManager,
    StreamNotFound,
    StreamSettings,
    TooManyStreams,
)
from swapwatch.server.metrics import ServiceMetrics
from swapwatch.server.nginx_rtmp import HooksDisabled, NginxRtmpHooks, PublishRefused
from swapwatch.server.session_api import new_session_policy
from swapwatch.server.sessions import SessionBusy, SessionNotFound, SessionRegistry
from swapwatch.server.state import StateStore, state_path
from swapwatch.server.streams import StreamPlacer
from swapwatch.server.webrtc import WebRtcSessions
from swapwatch.version import __version__

log = logging.getLogger(__name__)

PlacerFactory = Callable[[Callable[[], Awaitable[None]]], StreamPlacer]


class Service:
    """Everything one `swapwatch serve` process holds."""

    def __init__(
        self,
        config: ServiceConfig,
        engine: Engine,
        metrics: ServiceMetrics,
        placer: PlacerFactory | None = None,
    ) -> None:
        """With `placer`, streams run where the placer it makes puts them (given how to wait
        for the outbox to commit what was published)."""
        self.config = config
        self.engine = engine
        self.metrics = metrics
        self.state = StateStore(state_path(events_path(config.events)))
        self.events = ServiceEvents(config.events, metrics, self.state)
        self.manager = StreamManager(
            StreamSettings.of(config),
            engine,
            metrics,
            self.state,
            placer(self.events.flushed) if placer is not None else None,
        )
        outbox = events_path(config.events)
        self.sessions = SessionRegistry(
            outbox.with_name(f"{outbox.stem}-sessions.sqlite"),
            outbox.with_name(f"{outbox.stem}-fingerprints.sqlite"),
            self.events.record,
            self._run_of,
            config.limits.drain_timeout_s,
        )
        self.webrtc = WebRtcSessions(self.manager, self.sessions)
        self.nginx_rtmp = NginxRtmpHooks(config.ingest.nginx_rtmp, self.manager)
        self.loop_lag = LoopLagMonitor(metrics.loop_lag.observe)
        self.ready = False
        self.manager.subscribe(self.events.publish)

    def _run_of(self, stream_id: str) -> str | None:
        worker = self.manager.workers.get(stream_id)
        run = None if worker is None else worker.to_json().get("run")
        return run if isinstance(run, str) else None

    async def start(self) -> None:
        """Open the state file and the outbox; close the runs a crash left open, then resume
        the saved streams (their new runs' events follow the closing ones)."""
        await asyncio.to_thread(self.state.open)
        await self.events.start()
        self.loop_lag.start()
        self.events.close_crashed_runs(await asyncio.to_thread(self.state.open_runs))
        await self.sessions.start()
        saved = await asyncio.to_thread(self.state.streams)
        await self.manager.resume(saved)
        self.nginx_rtmp.restore(saved)

    async def close(self) -> None:
        """Within `drain_timeout_s` in all: stop the streams (their last events are recorded),
        then give the sinks what is left of it. Events a sink has not taken by then stay in
        the outbox and go out at the next start."""
        self.ready = False
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.config.limits.drain_timeout_s
        await self.sessions.interrupt_running()
        await self.webrtc.close()
        await self.manager.close()
        await self.events.close(max(0.0, deadline - loop.time()))
        await self.loop_lag.stop()
        await self.sessions.close()
        await asyncio.to_thread(self.state.close)


SERVICE: web.AppKey[Service] = web.AppKey("service", Service)


def error_response(status: int, message: str, kind: str) -> web.Response:
    return web.json_response(
        {"error": {"status": status, "kind": kind, "message": message}}, status=status
    )


@web.middleware
async def errors_as_json(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.content_type == "application/json" or exc.status < 400:
            raise
        return error_response(exc.status, exc.reason, "http")
    except (StreamNotFound, HooksDisabled, SessionNotFound) as exc:
        return error_response(404, str(exc), "not_found")
    except PublishRefused as exc:
        return error_response(403, str(exc), "forbidden")
    except (StreamExists, SessionBusy) as exc:
        return error_response(409, str(exc), "conflict")
    except TooManyStreams as exc:
        return error_response(429, str(exc), "limit")
    except (ConfigError, SourceError) as exc:
        return error_response(400, str(exc), "invalid")
    except SwapwatchError as exc:
        return error_response(500, str(exc), "internal")
    except Exception:  # a bug: logged in full here, the client gets JSON without the details
        log.exception("%s %s failed", request.method, request.path)
        return error_response(500, "internal error (see the service log)", "internal")


def needs_token(config: AuthConfig, path: str) -> bool:
    """Whether a request to `path` must present the bearer token."""
    # /metrics names every stream: behind the token unless metrics_public says otherwise.
    return config.token is not None and (
        path.startswith("/v1/") or (path == "/metrics" and not config.metrics_public)
    )


def auth_middleware(config: AuthConfig) -> Any:
    token = config.token

    @web.middleware
    async def check_token(request: web.Request, handler: Handler) -> web.StreamResponse:
        if token is None or not needs_token(config, request.path) or request.method == "OPTIONS":
            return await handler(request)
        presented = bearer_token(request.headers.get("Authorization", ""))
        if presented is None:
            presented = request.query.get("token", "")
        if not hmac.compare_digest(presented.encode(), token.encode()):
            response = error_response(401, "a valid bearer token is required", "unauthorized")
            response.headers["WWW-Authenticate"] = 'Bearer realm="swapwatch"'
            return response
        return await handler(request)

    return check_token


def bearer_token(header: str) -> str | None:
    """The credentials of an `Authorization: Bearer ...` header; the scheme is case-insensitive
    (RFC 7235) and may be followed by several spaces."""
    scheme, _, credentials = header.strip().partition(" ")
    return credentials.strip() if scheme.lower() == "bearer" else None


def cors_middleware(config: HttpConfig) -> Any:
    allowed = set(config.cors_origins)

    @web.middleware
    async def cors(request: web.Request, handler: Handler) -> web.StreamResponse:
        origin = request.headers.get("Origin")
        permitted = origin is not None and (origin in allowed or "*" in allowed)
        if request.method == "OPTIONS" and request.headers.get("Access-Control-Request-Method"):
            if not permitted:
                return error_response(403, f"origin {origin} is not allowed", "cors")
            response: web.StreamResponse = web.Response(status=204)
            response.headers["Access-Control-Allow-Methods"] = "GET, POST, DELETE, OPTIONS"
            response.headers["Access-Control-Allow-Headers"] = "Authorization, Content-Type"
            response.headers["Access-Control-Max-Age"] = "600"
        else:
            response = await handler(request)
        if permitted and origin is not None:
            response.headers["Access-Control-Allow-Origin"] = origin
            response.headers["Vary"] = "Origin"
        return response

    return cors


async def read_json(request: web.Request, limit: int) -> dict[str, Any]:
    if request.content_length is not None and request.content_length > limit:
        raise web.HTTPRequestEntityTooLarge(max_size=limit, actual_size=request.content_length)
    # read(n) returns what has arrived so far: a body sent in pieces needs the whole stream.
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.content.iter_chunked(64 * 1024):
        size += len(chunk)
        if size > limit:
            raise web.HTTPRequestEntityTooLarge(max_size=limit, actual_size=size)
        chunks.append(chunk)
    body = b"".join(chunks)
    try:
        data = json.loads(body or b"{}")
    except (ValueError, UnicodeDecodeError):
        raise ConfigError("the body is not valid JSON") from None
    except RecursionError:  # the parser recurses per nesting level; a small body can go deep
        raise ConfigError("the body is nested too deeply") from None
    if not isinstance(data, dict):
        raise ConfigError("the body must be a JSON object")
    return data


def answer(body: AnswerModel, status: int = 200) -> web.Response:
    """An answer built from its documented model (fields left unset stay out)."""
    return web.json_response(body.model_dump(mode="json", exclude_unset=True), status=status)


async def add_stream(request: web.Request) -> web.Response:
    service = request.app[SERVICE]
    new = parse(NewStream, await read_json(request, service.config.http.max_body_bytes))
    if new.ingest == "rtmp":
        push = await service.manager.add_rtmp_push(new.id, new.policy)
        # The key is shown here only: later reads give the ingest URL without it.
        body = push.worker.to_json()
        body.update(ingest_url=push.publish_url, stream_key=push.stream_key)
    else:
        assert new.url is not None  # NewStream requires it to pull
        body = (await service.manager.add_pull(new.url, new.id, new.policy)).to_json()
    created = answer(NewStreamAnswer.model_validate(body), status=201)
    created.headers["Location"] = f"/v1/streams/{body['id']}"
    return created


async def list_streams(request: web.Request) -> web.Response:
    return answer(StreamList.model_validate({"streams": request.app[SERVICE].manager.list_json()}))


async def get_stream(request: web.Request) -> web.Response:
    worker = request.app[SERVICE].manager.get(request.match_info["stream_id"])
    return answer(Stream.model_validate(worker.to_json()))


async def delete_stream(request: web.Request) -> web.Response:
    service = request.app[SERVICE]
    stream_id = request.match_info["stream_id"]
    await service.manager.remove(stream_id)
    # The 204 says the stream is gone: its `stream.ended` is committed first, or a crash right
    # after the answer would close its run as `crashed` at the next start. A stuck outbox (a
    # locked file) delays the answer by the drain time at most: the stream is removed anyway.
    if service.events.durable:
        wait = service.config.limits.drain_timeout_s
        if not await service.events.flushed_within(wait):
            log.warning(
                "stream %s removed; its end was not committed to the outbox within %gs",
                stream_id,
                wait,
            )
    return web.Response(status=204)


async def webrtc_offer(request: web.Request) -> web.Response:
    service = request.app[SERVICE]
    offer = parse(
        WebRtcOffer, await read_json(request, service.config.ingest.webrtc.max_offer_bytes)
    )
    reply = await service.webrtc.answer(
        offer.sdp, offer.type, offer.id, offer.policy, offer.session
    )
    return answer(WebRtcAnswer.model_validate(reply))


async def create_session(request: web.Request) -> web.Response:
    """A KYC session: its policy in, its id and offer endpoint out."""
    service = request.app[SERVICE]
    service.manager.check_webrtc_here()
    body = parse(NewSession, await read_json(request, service.config.http.max_body_bytes))
    session = await service.sessions.create(new_session_policy(body), body.join_within_s)
    created = answer(Session.model_validate(session.to_json()), status=201)
    created.headers["Location"] = f"/v1/sessions/{session.id}"
    return created


async def get_session(request: web.Request) -> web.Response:
    session = await request.app[SERVICE].sessions.get(request.match_info["session_id"])
    return answer(Session.model_validate(session.to_json()))


async def read_form(request: web.Request) -> dict[str, str]:
    """A url-encoded form (what nginx-rtmp posts), its text fields only."""
    try:
        form = await request.post()
    except ValueError as exc:  # aiohttp's parsers: a multipart body without its boundary, ...
        raise ConfigError(f"the body is not a readable form: {exc}") from None
    return {key: value for key, value in form.items() if isinstance(value, str)}


async def nginx_rtmp_publish(request: web.Request) -> web.Response:
    """nginx-rtmp `on_publish`: 2xx lets the publish go on, anything else refuses it."""
    hooks = request.app[SERVICE].nginx_rtmp
    form = await read_form(request)
    hooks.check_enabled()  # off: a 404 whatever the form says
    parse(NginxRtmpPublish, form)
    worker = await hooks.publish(form)
    return answer(Stream.model_validate(worker.to_json()))


async def nginx_rtmp_publish_done(request: web.Request) -> web.Response:
    """nginx-rtmp `on_publish_done`: the publisher left; its stream is removed."""
    hooks = request.app[SERVICE].nginx_rtmp
    form = await read_form(request)
    hooks.check_enabled()
    parse(NginxRtmpPublishDone, form)
    return answer(Removed(removed=await hooks.publish_done(form)))


async def events_feed(request: web.Request) -> web.StreamResponse:
    """Server-sent events: every stream and alert event as it is recorded; a client that
    reconnects with Last-Event-ID first gets what it missed."""
    query = parse(EventFeedQuery, request.query)
    return await request.app[SERVICE].events.sse(request, recent=query.recent)


async def events_status(request: web.Request) -> web.Response:
    """The outbox's health and each sink's delivery counters."""
    return answer(EventsStatus.model_validate(request.app[SERVICE].events.status()))


async def healthz(request: web.Request) -> web.Response:
    return answer(Health(status="ok", version=__version__))


async def readyz(request: web.Request) -> web.Response:
    service = request.app[SERVICE]
    if not service.ready:
        return error_response(
            503, "not ready: the model is loading or the service is stopping", "not_ready"
        )
    return answer(
        Ready(
            status="ready",
            model=service.engine.info.name,
            streams=len(service.manager.workers),
            # Analysis goes on without a working outbox; this says that events are not durable.
            events="ok" if service.events.error is None else "degraded",
        )
    )


async def metrics(request: web.Request) -> web.Response:
    body = generate_latest(request.app[SERVICE].metrics.registry)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


async def openapi(request: web.Request) -> web.Response:
    auth = request.app[SERVICE].config.auth
    return web.json_response(openapi_document(ROUTES, lambda path: needs_token(auth, path)))


async def config_view(request: web.Request) -> web.Response:
    return web.json_response(public_view(request.app[SERVICE].config))


def page(name: str) -> Handler:
    text = resources.files("swapwatch.server").joinpath(f"pages/{name}").read_text("utf-8")

    async def serve_page(request: web.Request) -> web.Response:
        return web.Response(text=text, content_type="text/html", charset="utf-8")

    serve_page.__name__ = serve_page.__qualname__ = f"{name.removesuffix('.html')}_page"
    return serve_page


def script(name: str) -> Handler:
    text = resources.files("swapwatch.server").joinpath(f"pages/{name}").read_text("utf-8")

    async def serve_script(request: web.Request) -> web.Response:
        response = web.Response(text=text, content_type="text/javascript", charset="utf-8")
        response.headers["Access-Control-Allow-Origin"] = "*"  # vendors' pages include it
        return response

    serve_script.__name__ = serve_script.__qualname__ = "kyc_client_script"
    return serve_script


def _html(summary: str, name: str) -> Route:
    path = "/" if name == "dashboard.html" else f"/{name.removesuffix('.html')}"
    reply = Reply("The page", media_type="text/html", schema={"type": "string"})
    return Route("GET", path, page(name), summary, "pages", {200: reply})


FEED = {
    "type": "string",
    "description": "server-sent events; the data of each is one event as JSON, its id: the "
    "event's position in the outbox",
    "contentMediaType": "application/json",
    "contentSchema": {"$ref": "#/components/schemas/Event"},
}

NEW_STREAM_EXAMPLES = {
    "pull": {"url": "rtsp://camera.local/stream", "id": "desk-1", "policy": "kyc"},
    "hls": {"url": "https://example.com/live/index.m3u8"},
    "rtmp push": {"ingest": "rtmp", "id": "studio"},
}

# Every route the service serves, and its documentation: build_app registers these and
# /openapi.json describes them.
ROUTES: tuple[Route, ...] = (
    _html("The dashboard: streams and alerts", "dashboard.html"),
    _html("Try it: send this browser's camera over WebRTC", "try.html"),
    _html("The API, with a form for each operation", "docs.html"),
    Route(
        "GET",
        "/kyc.js",
        script("kyc.js"),
        "The KYC session client a vendor's page includes (SwapwatchKyc.run)",
        "pages",
        {200: Reply("The script", media_type="text/javascript", schema={"type": "string"})},
    ),
    Route("GET", "/healthz", healthz, "Liveness", "service", {200: Reply("Alive", Health)}),
    Route(
        "GET",
        "/readyz",
        readyz,
        "Readiness: the model is loaded and the service is not stopping",
        "service",
        {200: Reply("Ready", Ready)},
        errors=(503,),
    ),
    Route(
        "GET",
        "/metrics",
        metrics,
        "Prometheus metrics",
        "service",
        {200: Reply("Metrics", media_type="text/plain", schema={"type": "string"})},
    ),
    Route(
        "GET",
        "/openapi.json",
        openapi,
        "This document",
        "service",
        {200: Reply("OpenAPI 3.1", schema={"type": "object"})},
    ),
    Route(
        "GET",
        "/v1/config",
        config_view,
        "The running configuration by section (token and sink targets hidden)",
        "service",
        {200: Reply("Configuration", model=PublicServiceConfig)},
    ),
    Route(
        "GET",
        "/v1/streams",
        list_streams,
        "List streams with their live status",
        "streams",
        {200: Reply("Streams", StreamList)},
    ),
    Route(
        "POST",
        "/v1/streams",
        add_stream,
        "Add a stream: pull a URL, or open an RTMP ingest to push to",
        "streams",
        {
            201: Reply(
                "The stream, starting; for an RTMP ingest with its stream_key (shown this "
                "once) and the ingest_url that holds it",
                NewStreamAnswer,
            )
        },
        errors=(400, 409, 413, 429),
        body=NewStream,
        body_examples=NEW_STREAM_EXAMPLES,
    ),
    Route(
        "GET",
        "/v1/streams/{stream_id}",
        get_stream,
        "One stream's status",
        "streams",
        {200: Reply("The stream", Stream)},
        errors=(404,),
    ),
    Route(
        "DELETE",
        "/v1/streams/{stream_id}",
        delete_stream,
        "Stop and remove a stream",
        "streams",
        {
            204: Reply(
                "Removed; the events it published until then (normally its `stream.ended`, "
                "reason `removed`) are in the outbox",
                media_type=None,
            )
        },
        errors=(404,),
    ),
    Route(
        "POST",
        "/v1/webrtc/offer",
        webrtc_offer,
        "WebRTC offer/answer: send a camera; verdicts return on the data channel the client "
        "opens (JSON messages of type 'status')",
        "webrtc",
        {200: Reply("The answer", WebRtcAnswer)},
        errors=(400, 413, 429),
        body=WebRtcOffer,
    ),
    Route(
        "POST",
        "/v1/sessions",
        create_session,
        "Create a KYC session: a random challenge sequence under this policy; connect to it "
        "with POST /v1/webrtc/offer and its id as `session`. Its verdict ends it (GET it, or "
        "the session.completed event)",
        "sessions",
        {201: Reply("The session, waiting for its connection", Session)},
        errors=(400, 413),
        body=NewSession,
        body_examples={
            "default": {},
            "two turns": {"count": 2, "kinds": ["turn_left", "turn_right"], "window_s": 5},
        },
    ),
    Route(
        "GET",
        "/v1/sessions/{session_id}",
        get_session,
        "A KYC session: its state and, once completed, its verdict with reasons and evidence",
        "sessions",
        {200: Reply("The session", Session)},
        errors=(404,),
    ),
    Route(
        "GET",
        "/v1/events",
        events_feed,
        "Live events (server-sent events): stream.started, stream.ended, stream.error, "
        "alert.raised, alert.cleared, each with its outbox position as SSE id. Reconnect with "
        "Last-Event-ID to get what was missed. EventSource cannot send headers: pass ?token=",
        "events",
        {200: Reply("The feed", media_type="text/event-stream", schema=FEED)},
        errors=(400,),
        query=EventFeedQuery,
    ),
    Route(
        "GET",
        "/v1/events/status",
        events_status,
        "The durable outbox (path, ok, error, events recorded and lost) and each sink's "
        "delivery counters",
        "events",
        {200: Reply("Outbox and sinks", EventsStatus)},
    ),
    Route(
        "POST",
        "/v1/hooks/nginx-rtmp/publish",
        nginx_rtmp_publish,
        "nginx-rtmp on_publish callback: start analysing the published stream (pulled back "
        "from ingest.nginx_rtmp.url/APP/KEY, named by its key). A non-2xx answer makes nginx "
        "refuse the publish. nginx cannot send headers: pass ?token= in the callback URL",
        "nginx-rtmp",
        {200: Reply("The stream, starting", Stream)},
        errors=(400, 403, 404, 409, 429),
        body=NginxRtmpPublish,
        body_media_type=FORM,
    ),
    Route(
        "POST",
        "/v1/hooks/nginx-rtmp/publish_done",
        nginx_rtmp_publish_done,
        "nginx-rtmp on_publish_done callback: remove the stream its publish session started",
        "nginx-rtmp",
        {200: Reply("Whether a stream was removed", Removed)},
        errors=(400, 404),
        body=NginxRtmpPublishDone,
        body_media_type=FORM,
    ),
)


def build_app(service: Service) -> web.Application:
    config = service.config
    app = web.Application(
        middlewares=[cors_middleware(config.http), errors_as_json, auth_middleware(config.auth)],
        client_max_size=max(config.http.max_body_bytes, config.ingest.webrtc.max_offer_bytes),
    )
    app[SERVICE] = service
    for route in ROUTES:
        if route.method == "GET":
            app.router.add_get(route.path, route.handler, expect_handler=answer_expect)
        else:
            app.router.add_route(
                route.method, route.path, route.handler, expect_handler=answer_expect
            )
    # CORS plumbing, not operations: preflights (answered by cors_middleware) and the 404/405
    # of paths no route takes.
    preflighted = ("/v1/streams", "/v1/streams/{stream_id}", "/v1/webrtc/offer", "/v1/sessions")
    for path in preflighted:
        app.router.add_route("OPTIONS", path, _preflight_fallback, expect_handler=answer_expect)
    add_catch_all(app.router)
    return app


async def _preflight_fallback(request: web.Request) -> web.Response:
    return web.Response(status=204)
