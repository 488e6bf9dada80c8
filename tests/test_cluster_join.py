"""The front keeps trying to join its Ray cluster (the head may start after it, and Ray Client's
per-connection server sometimes fails to start) instead of exiting on the first failure."""

from __future__ import annotations

import logging

import pytest

from swapwatch.cluster.join import ClusterError, join_with_retries


class Clock:
    """Time that passes only when the code under test sleeps."""

    def __init__(self) -> None:
        self.now = 0.0
        self.pauses: list[float] = []

    def sleep(self, seconds: float) -> None:
        self.pauses.append(seconds)
        self.now += seconds

    def __call__(self) -> float:
        return self.now


class Head:
    """A head that answers from its `ready_after`th try on, failing before as Ray does."""

    def __init__(self, ready_after: int, failure: Exception) -> None:
        self.ready_after = ready_after
        self.failure = failure
        self.tries = 0

    def join(self) -> None:
        self.tries += 1
        if self.tries < self.ready_after:
            raise self.failure


SERVER_FAILED = RuntimeError(
    "Initialization failure from server:\nTraceback (most recent call last):\n"
    "RuntimeError: Starting Ray client server failed. See ray_client_server_23000.err"
)


def test_a_failed_ray_client_server_start_is_tried_again(
    caplog: pytest.LogCaptureFixture,
) -> None:
    head, clock = Head(3, SERVER_FAILED), Clock()
    with caplog.at_level(logging.WARNING, "swapwatch.cluster.join"):
        join_with_retries(head.join, "ray://head:10001", 120, clock.sleep, clock)
    assert head.tries == 3
    assert clock.pauses == [1.0, 2.0]
    assert "Initialization failure from server" in caplog.text
    assert "Traceback" not in caplog.text  # one line per failed try, not Ray's whole report


def test_a_head_that_comes_late_is_waited_for_with_a_growing_pause() -> None:
    head, clock = Head(7, ConnectionError("ray client connection timeout")), Clock()
    join_with_retries(head.join, "ray://head:10001", 120, clock.sleep, clock)
    assert clock.pauses == [1.0, 2.0, 4.0, 8.0, 10.0, 10.0]


def test_the_front_gives_up_with_one_clear_error_when_the_time_is_spent() -> None:
    head, clock = Head(10**6, ConnectionError("ray client connection timeout")), Clock()
    with pytest.raises(ClusterError, match=r"ray://head:10001 after \d+ tries in 30 s"):
        join_with_retries(head.join, "ray://head:10001", 30, clock.sleep, clock)
    assert clock.now == pytest.approx(30)  # the last pause is cut to the deadline


def test_a_malformed_address_fails_at_once() -> None:
    head, clock = Head(2, ValueError("Invalid address 'ray:/x'")), Clock()
    with pytest.raises(ClusterError, match="Invalid address"):
        join_with_retries(head.join, "ray:/x", 120, clock.sleep, clock)
    assert head.tries == 1 and clock.pauses == []
