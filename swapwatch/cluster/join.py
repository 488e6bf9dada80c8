"""Joining a Ray cluster, again and again until it answers (needs no Ray itself)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from swapwatch.errors import SwapwatchError

log = logging.getLogger(__name__)

JOIN_BACKOFF_S = (1.0, 10.0)  # first and longest pause between two tries


class ClusterError(SwapwatchError):
    """The Ray cluster cannot be reached or cannot run what it is asked to."""


def join_with_retries(
    join: Callable[[], None],
    address: str,
    timeout_s: float,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> None:
    """Calls `join` until it returns, pausing 1, 2, 4 ... 10 s between failures, and raises
    ClusterError once `timeout_s` has passed.

    A front often starts before its head is ready (pods of one release start together), and
    Ray Client's per-connection server can fail to start now and then ("Starting Ray client
    server failed"); neither should end the front.
    """
    deadline = clock() + timeout_s
    pause, longest = JOIN_BACKOFF_S
    tries = 0
    while True:
        tries += 1
        try:
            join()
            return
        except ValueError as exc:  # a malformed address or argument: trying again cannot help
            raise ClusterError(f"cannot join the Ray cluster at {address}: {exc}") from exc
        except (ConnectionError, RuntimeError) as exc:
            left = deadline - clock()
            if left <= 0:
                raise ClusterError(
                    f"cannot join the Ray cluster at {address} after {tries} tries "
                    f"in {timeout_s:g} s: {_first_line(exc)}"
                ) from exc
            log.warning(
                "cannot join the Ray cluster at %s yet (try %d): %s; trying again in %.0f s",
                address,
                tries,
                _first_line(exc),
                min(pause, left),
            )
            sleep(min(pause, left))
            pause = min(pause * 2, longest)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
