"""What the HTTP server logs about requests it cannot parse.

aiohttp logs every malformed request (a port scanner's bytes, a header holding a NUL) as an error
with a traceback, and the exception's text quotes the offending request line or header, so a
malformed `Authorization` header put the token in the log. Such a request is the client's
mistake: it gets one warning line naming the reason, without the request's bytes. Errors raised
by our own handlers keep their traceback."""

from __future__ import annotations

import logging
from collections.abc import MutableMapping
from typing import Any

from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.web_protocol import RequestPayloadError

log = logging.getLogger("swapwatch.server.http")


class ProtocolErrorLog(logging.LoggerAdapter[logging.Logger]):
    """The logger handed to aiohttp's request handler (`AppRunner(logger=...)`)."""

    def exception(self, msg: object, *args: object, exc_info: Any = True, **kw: Any) -> None:
        if isinstance(exc_info, HttpProcessingError) and exc_info.code < 500:
            self.warning(f"{msg}: %s (HTTP %d)", *args, reason(exc_info), exc_info.code)
            return
        if isinstance(exc_info, RequestPayloadError):  # a body that does not decode as declared
            self.warning(f"{msg}: the request body is unreadable", *args)
            return
        super().exception(msg, *args, exc_info=exc_info, **kw)

    def process(self, msg: Any, kwargs: MutableMapping[str, Any]) -> tuple[Any, Any]:
        return msg, kwargs


def reason(exc: HttpProcessingError) -> str:
    """The first line of aiohttp's message ("Invalid header token"), without the bytes it
    quotes after it."""
    lines = [line.strip() for line in exc.message.splitlines() if line.strip()]
    return lines[0].rstrip(":") if lines else type(exc).__name__


def protocol_error_log() -> ProtocolErrorLog:
    return ProtocolErrorLog(log, {})
