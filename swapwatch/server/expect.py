"""The `Expect` header, answered by the service on every path.

aiohttp checks `Expect` before any middleware runs, with the route's handler for it: its default
one answers an unknown expectation with a plain-text 417 that quotes the header, and a value that
is not UTF-8 made that answer fail to build, a 500 with a traceback. Every route of the service
is added with `answer_expect` instead, and `unrouted` takes the paths no route matches (aiohttp's
own 404 and 405 would use its default handler again).
"""

from __future__ import annotations

from aiohttp import HttpVersion11, hdrs, web

CONTINUE = "100-continue"


async def answer_expect(request: web.Request) -> web.Response | None:
    """`100-continue` as aiohttp answers it (go on, send the body); anything else a JSON 417."""
    expect = request.headers.get(hdrs.EXPECT, "")
    if expect.lower() == CONTINUE:
        if request.version == HttpVersion11:
            await request.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
            request.writer.output_size = 0  # the interim answer is not the response's size
        return None
    message = f"the only Expect this service answers is {CONTINUE}"
    return web.json_response(
        {"error": {"status": 417, "kind": "expectation", "message": message}}, status=417
    )


async def unrouted(request: web.Request) -> web.StreamResponse:
    """The catch-all route's handler: the 405 or 404 that aiohttp's router would have given."""
    this = request.match_info.route.resource
    allowed: set[str] = set()
    for resource in request.app.router.resources():
        if resource is not this:
            _, methods = await resource.resolve(request)
            allowed |= methods
    if allowed:
        raise web.HTTPMethodNotAllowed(request.method, allowed)
    raise web.HTTPNotFound()


def add_catch_all(router: web.UrlDispatcher) -> None:
    """Add last: every request no other route takes comes here."""
    router.add_route(hdrs.METH_ANY, "/{unrouted:.*}", unrouted, expect_handler=answer_expect)
