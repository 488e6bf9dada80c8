"""Waiting on the front's event loop for an actor call without ever cancelling the call.

Ray Client completes a call's future from its data thread without looking whether the future
was cancelled. An `asyncio.wait_for(ref, timeout)` that times out, or a task cancelled while it
awaits a ref, cancels that future; when the result comes, or when the connection ends and the
thread fails every pending call, `set_result` raises InvalidStateError in that thread. At the
end of a connection this kills the thread half way through failing the pending calls, which then
never complete (seen under load: a front left running after its client server had died). Here a
call's future is only ever shielded: a timeout or a cancel leaves it to complete on its own.
"""

from __future__ import annotations

import asyncio
from typing import Any


async def call_result(ref: Any, timeout: float | None = None) -> Any:
    """The result of an actor call (its ObjectRef), waited for at most `timeout` seconds
    (TimeoutError after); the call itself is never cancelled."""
    # A plain future, not a task: asyncio.run's last sweep cancels tasks left pending.
    future = asyncio.wrap_future(ref.future())
    future.add_done_callback(_retrieved)
    if timeout is None:
        return await asyncio.shield(future)
    return await asyncio.wait_for(asyncio.shield(future), timeout)


def _retrieved(future: asyncio.Future[Any]) -> None:
    """A call nobody waits for any more may still fail: its error is not worth a warning."""
    if not future.cancelled():
        future.exception()
