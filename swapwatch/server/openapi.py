"""The OpenAPI 3.1 description of the HTTP API (served at /openapi.json, rendered at /docs)."""

from __future__ import annotations

from typing import Any

from swapwatch.server.config import AuthConfig
from swapwatch.version import __version__

ERROR = {"$ref": "#/components/schemas/Error"}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _errors(*codes: int) -> dict[str, Any]:
    text = {
        400: "Invalid request",
        401: "Missing or wrong bearer token",
        403: "Refused (a stream key not on the allow-list)",
        404: "No such stream",
        409: "A stream with this id exists",
        413: "Body too large",
        429: "Maximum number of streams reached",
    }
    return {str(c): _json(ERROR, text[c]) for c in codes}


def _nginx_form() -> dict[str, Any]:
    fields = {
        "call": {"enum": ["publish", "publish_done"]},
        "app": {"type": "string", "description": "the nginx-rtmp application, e.g. live"},
        "name": {"type": "string", "description": "the stream key (becomes the stream id)"},
        "addr": {"type": "string", "description": "the publisher's address"},
        "clientid": {"type": "string"},
    }
    schema = {"type": "object", "required": ["app", "name"], "properties": fields}
    return {
        "required": True,
        "content": {"application/x-www-form-urlencoded": {"schema": schema}},
    }


def openapi_document(config: AuthConfig) -> dict[str, Any]:
    secured: list[dict[str, list[str]]] = [{"bearer": []}] if config.required else []
    stream_ref = {"$ref": "#/components/schemas/Stream"}
    stream_id = {"name": "stream_id", "in": "path", "required": True, "schema": {"type": "string"}}
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "swapwatch",
            "version": __version__,
            "description": "Live face-swap detection: add streams, read their status, send a "
            "camera over WebRTC, follow events.",
        },
        "security": secured,
        "paths": {
            "/v1/streams": {
                "get": {
                    "summary": "List streams with their live status",
                    "responses": {
                        "200": _json(
                            {
                                "type": "object",
                                "properties": {"streams": {"type": "array", "items": stream_ref}},
                            },
                            "Streams",
                        ),
                        **_errors(401),
                    },
                },
                "post": {
                    "summary": "Add a stream: pull a URL, or open an RTMP ingest to push to",
                    "requestBody": {
                        "required": True,
                        "content": {
                            "application/json": {
                                "schema": {"$ref": "#/components/schemas/NewStream"},
                                "examples": {
                                    "pull": {
                                        "value": {
                                            "url": "rtsp://camera.local/stream",
                                            "id": "desk-1",
                                            "policy": "kyc",
                                        }
                                    },
                                    "hls": {
                                        "value": {"url": "https://example.com/live/index.m3u8"}
                                    },
                                    "rtmp push": {"value": {"ingest": "rtmp", "id": "studio"}},
                                },
                            }
                        },
                    },
                    "responses": {
                        "201": _json(
                            stream_ref,
                            "The stream, starting; for an RTMP ingest, with its stream_key "
                            "(shown this once) and the ingest_url that holds it",
                        ),
                        **_errors(400, 401, 409, 413, 429),
                    },
                },
            },
            "/v1/streams/{stream_id}": {
                "parameters": [stream_id],
                "get": {
                    "summary": "One stream's status",
                    "responses": {"200": _json(stream_ref, "The stream"), **_errors(401, 404)},
                },
                "delete": {
                    "summary": "Stop and remove a stream",
                    "responses": {"204": {"description": "Removed"}, **_errors(401, 404)},
                },
            },
            "/v1/webrtc/offer": {
                "post": {
                    "summary": "WebRTC offer/answer: send a camera; verdicts return on the "
                    "data channel the client opens (JSON messages of type 'status')",
                    "requestBody": {
                        "required": True,
                        "content": {
                            "application/json": {
                                "schema": {
                                    "type": "object",
                                    "required": ["sdp", "type"],
                                    "properties": {
                                        "sdp": {"type": "string"},
                                        "type": {"const": "offer"},
                                        "id": {"type": "string"},
                                        "policy": {"enum": ["kyc", "monitoring"]},
                                    },
                                }
                            }
                        },
                    },
                    "responses": {
                        "200": _json(
                            {
                                "type": "object",
                                "properties": {
                                    "sdp": {"type": "string"},
                                    "type": {"const": "answer"},
                                    "stream": {"type": "string"},
                                },
                            },
                            "The answer",
                        ),
                        **_errors(400, 401, 413, 429),
                    },
                },
            },
            "/v1/events": {
                "get": {
                    "summary": "Live events (server-sent events): stream.started, stream.ended, "
                    "stream.error, alert.raised, alert.cleared, each the JSON of the event schema "
                    "v1 with its outbox position as SSE id. Reconnect with Last-Event-ID to get "
                    "what was missed; ?recent=N first sends the N latest recorded events "
                    "(ignored when resuming with Last-Event-ID). EventSource cannot send "
                    "headers: pass ?token= instead",
                    "parameters": [
                        {
                            "name": "recent",
                            "in": "query",
                            "required": False,
                            "description": "first send the N latest recorded events",
                            "schema": {"type": "integer", "minimum": 0, "maximum": 1000},
                        }
                    ],
                    "responses": {
                        "200": {"description": "text/event-stream"},
                        **_errors(400, 401),
                    },
                },
            },
            "/v1/events/status": {
                "get": {
                    "summary": "The durable outbox (path, ok, error, events recorded and lost) "
                    "and each sink's delivery counters (delivered, failed attempts, dead letters)",
                    "responses": {
                        "200": {
                            "description": "outbox and sinks",
                            "content": {"application/json": {}},
                        },
                        **_errors(401),
                    },
                },
            },
            "/v1/hooks/nginx-rtmp/publish": {
                "post": {
                    "summary": "nginx-rtmp on_publish callback: start analysing the published "
                    "stream (pulled back from nginx_rtmp_url/APP/KEY, named by its key). A non-2xx "
                    "answer makes nginx refuse the publish. nginx cannot send headers: pass "
                    "?token= in the callback URL",
                    "requestBody": _nginx_form(),
                    "responses": {
                        "200": _json(stream_ref, "The stream, starting"),
                        **_errors(400, 401, 403, 404, 409, 429),
                    },
                }
            },
            "/v1/hooks/nginx-rtmp/publish_done": {
                "post": {
                    "summary": "nginx-rtmp on_publish_done callback: remove the stream its "
                    "publish session started",
                    "requestBody": _nginx_form(),
                    "responses": {
                        "200": _json(
                            {"type": "object", "properties": {"removed": {"type": "boolean"}}},
                            "Whether a stream was removed",
                        ),
                        **_errors(400, 401, 404),
                    },
                }
            },
            "/v1/config": {
                "get": {
                    "summary": "The running configuration (token hidden)",
                    "responses": {"200": {"description": "Configuration"}},
                }
            },
            "/healthz": {
                "get": {
                    "summary": "Liveness",
                    "security": [],
                    "responses": {"200": {"description": "Alive"}},
                }
            },
            "/readyz": {
                "get": {
                    "summary": "Readiness: the model is loaded",
                    "security": [],
                    "responses": {
                        "200": {"description": "Ready"},
                        "503": _json(ERROR, "Not ready"),
                    },
                }
            },
            "/metrics": {
                "get": {
                    "summary": "Prometheus metrics",
                    "security": [] if config.metrics_public else secured,
                    "responses": {"200": {"description": "text/plain"}},
                }
            },
        },
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": {
                "Error": {
                    "type": "object",
                    "properties": {
                        "error": {
                            "type": "object",
                            "properties": {
                                "status": {"type": "integer"},
                                "kind": {"type": "string"},
                                "message": {"type": "string"},
                            },
                        }
                    },
                },
                "NewStream": {
                    "type": "object",
                    "additionalProperties": False,
                    "properties": {
                        "url": {
                            "type": "string",
                            "description": "rtmp://, rtsp://, srt://, "
                            "http(s)://…m3u8, udp:// (loopback), tcp:// (file:// when allowed); "
                            "no option that makes the service listen (listen, mode=listener, …)",
                        },
                        "id": {"type": "string", "pattern": "^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"},
                        "policy": {"enum": ["kyc", "monitoring"]},
                        "ingest": {"enum": ["pull", "rtmp"], "default": "pull"},
                    },
                },
                "Stream": {
                    "type": "object",
                    "properties": {
                        "id": {"type": "string"},
                        "kind": {"enum": ["pull", "rtmp", "webrtc", "nginx-rtmp"]},
                        "state": {
                            "enum": [
                                "starting",
                                "running",
                                "reconnecting",
                                "ended",
                                "failed",
                                "stopped",
                            ]
                        },
                        "run": {
                            "type": ["string", "null"],
                            "description": "the current (or last) run: one per connection "
                            "of the source, the `run` of its events; null before the first",
                        },
                        "ingest_url": {
                            "type": ["string", "null"],
                            "description": "where to push (rtmp ingest): "
                            "rtmp://HOST:PORT/live/KEY in the answer that creates the stream, "
                            "rtmp://HOST:PORT/live/*** afterwards",
                        },
                        "stream_key": {
                            "type": "string",
                            "description": "the key a publisher must push with (rtmp ingest); "
                            "only in the answer that creates the stream, never shown again",
                        },
                        "policy": {"enum": ["kyc", "monitoring"]},
                        "fps_in": {"type": "number"},
                        "fps_analysed": {"type": "number"},
                        "dropped": {"type": "integer"},
                        "faces": {"type": "integer"},
                        "latency_ms": {"type": ["number", "null"]},
                        "alarm": {"type": "boolean"},
                        "alarms_raised": {"type": "integer"},
                        "reconnects": {"type": "integer"},
                        "last_error": {"type": ["string", "null"]},
                        "tracks": {
                            "type": "array",
                            "items": {
                                "type": "object",
                                "properties": {
                                    "track_id": {"type": "integer"},
                                    "score": {"type": "number"},
                                    "verdict": {"enum": ["fake", "real", "unknown"]},
                                    "alarm": {"type": "boolean"},
                                    "frames_scored": {"type": "integer"},
                                    "skip_reason": {"type": ["string", "null"]},
                                },
                            },
                        },
                    },
                },
            },
        },
    }
