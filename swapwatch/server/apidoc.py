"""The route table of the HTTP API and the OpenAPI 3.1 document generated from it.

The service registers its routes from a list of `Route`s and `/openapi.json` is made from the
same list: a route cannot be served without being documented. Bodies are pydantic models (see
`api_models`); their JSON Schemas (2020-12, which OpenAPI 3.1 uses) come from pydantic.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from aiohttp import web
from pydantic import BaseModel
from pydantic.json_schema import JsonSchemaMode, models_json_schema

from swapwatch.events.model import schema as events_schema
from swapwatch.server.api_models import Error
from swapwatch.version import __version__

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
JSON = "application/json"
FORM = "application/x-www-form-urlencoded"
SCHEMAS = "#/components/schemas/"
EVENT = {"$ref": f"{SCHEMAS}Event"}

ERRORS = {
    400: "Invalid request: the message names the field",
    401: "Missing or wrong bearer token",
    403: "Refused (a stream key not on the allow-list)",
    404: "Not found",
    409: "A stream with this id exists",
    413: "Body too large",
    429: "Maximum number of streams reached",
    503: "Not ready",
}


@dataclass(frozen=True)
class Reply:
    """One documented answer: a model's JSON, or another media type with a plain schema."""

    description: str
    model: type[BaseModel] | None = None
    media_type: str | None = JSON
    schema: Mapping[str, Any] | None = None


@dataclass(frozen=True)
class Route:
    """One operation of the API: how it is served and how it is documented."""

    method: Literal["GET", "POST", "DELETE"]
    path: str
    handler: Handler
    summary: str
    tag: str
    replies: Mapping[int, Reply]
    errors: tuple[int, ...] = ()
    body: type[BaseModel] | None = None
    body_media_type: str = JSON
    body_examples: Mapping[str, Any] = field(default_factory=dict)
    query: type[BaseModel] | None = None


def openapi_document(routes: Iterable[Route], secured: Callable[[str], bool]) -> dict[str, Any]:
    """The OpenAPI 3.1 document of `routes`; `secured(path)` says which need the bearer token
    (the auth middleware's own rule)."""
    routes = list(routes)
    refs, schemas = _schemas(routes)
    paths: dict[str, dict[str, Any]] = {}
    for route in routes:
        item = paths.setdefault(route.path, {})
        parameters = _path_parameters(route.path)
        if parameters:
            item["parameters"] = parameters
        item[route.method.lower()] = _operation(route, refs, secured(route.path))
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "swapwatch",
            "version": __version__,
            "description": "Live face-swap detection: add streams, read their status, send a "
            "camera over WebRTC, follow events. Errors are "
            '{"error": {"status", "kind", "message"}}.',
        },
        "paths": paths,
        "webhooks": {
            "event": {
                "post": {
                    "summary": "What the webhook sink posts: one event, its id an idempotency "
                    "key (delivered at least once, each time with the same id and body)",
                    "requestBody": {"required": True, "content": {JSON: {"schema": EVENT}}},
                    "responses": {"2XX": {"description": "Taken; anything else is retried"}},
                }
            }
        },
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": {**schemas, "Event": event_schema()},
        },
    }


def _operation(route: Route, refs: Mapping[Any, Any], secured: bool) -> dict[str, Any]:
    operation: dict[str, Any] = {
        "operationId": route.handler.__name__.strip("_"),
        "summary": route.summary,
        "tags": [route.tag],
        "security": [{"bearer": []}] if secured else [],
    }
    if route.query is not None:
        operation["parameters"] = _query_parameters(route.query, refs)
    if route.body is not None:
        content: dict[str, Any] = {"schema": refs[(route.body, "validation")]}
        if route.body_examples:
            content["examples"] = {k: {"value": v} for k, v in route.body_examples.items()}
        operation["requestBody"] = {"required": True, "content": {route.body_media_type: content}}
    responses = {str(status): _reply(reply, refs) for status, reply in route.replies.items()}
    errors = (*route.errors, 401) if secured else route.errors
    for status in sorted(set(errors)):
        responses[str(status)] = _reply(Reply(ERRORS[status], Error), refs)
    operation["responses"] = responses
    return operation


def _reply(reply: Reply, refs: Mapping[Any, Any]) -> dict[str, Any]:
    answer: dict[str, Any] = {"description": reply.description}
    if reply.media_type is not None:
        schema = refs[(reply.model, "serialization")] if reply.model else reply.schema
        answer["content"] = {reply.media_type: {"schema": dict(schema or {})}}
    return answer


def _schemas(routes: list[Route]) -> tuple[dict[Any, Any], dict[str, Any]]:
    """Every model's schema under components, and the `$ref` of each (model, mode)."""
    wanted: dict[tuple[type[BaseModel], JsonSchemaMode], None] = {(Error, "serialization"): None}
    for route in routes:
        if route.body is not None:
            wanted[(route.body, "validation")] = None
        for reply in route.replies.values():
            if reply.model is not None:
                wanted[(reply.model, "serialization")] = None
    refs, top = models_json_schema(list(wanted), ref_template=SCHEMAS + "{model}")
    return dict(refs), dict(top.get("$defs", {}))


def _path_parameters(path: str) -> list[dict[str, Any]]:
    names = [part[1:-1] for part in path.split("/") if part.startswith("{")]
    return [
        {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
        for name in names
    ]


def _query_parameters(model: type[BaseModel], refs: Mapping[Any, Any]) -> list[dict[str, Any]]:
    schema = model.model_json_schema(ref_template=SCHEMAS + "{model}")
    required = set(schema.get("required", ()))
    parameters = []
    for name, prop in schema.get("properties", {}).items():
        description = prop.pop("description", None)
        parameter = {"name": name, "in": "query", "required": name in required, "schema": prop}
        if description:
            parameter["description"] = description
        parameters.append(parameter)
    return parameters


def event_schema() -> dict[str, Any]:
    """The published event schema (swapwatch/events/schema/event-v1.json) as a component; it
    keeps its `$id`, so it can be matched with the file receivers validate against."""
    return events_schema()
