"""The last resort of `swapwatch serve`'s stop, with the process's exit replaced by a record."""

from __future__ import annotations

import logging
import threading

import pytest

from swapwatch.cli import hard_stop


def test_the_timer_ends_the_process_naming_the_thread_that_holds_it(
    caplog: pytest.LogCaptureFixture,
) -> None:
    release = threading.Event()

    def plugin_call_that_never_returns() -> None:
        release.wait()

    stuck = threading.Thread(target=plugin_call_that_never_returns, name="s-door_0")
    stuck.start()
    exits: list[int] = []
    try:
        with caplog.at_level(logging.ERROR, logger=hard_stop.__name__):
            timer = hard_stop.arm(0.2, "the stop began", exit_process=exits.append)
            timer.join(5)
    finally:
        release.set()
        stuck.join()
    assert exits == [hard_stop.FORCED_EXIT_STATUS]
    [line] = [r.getMessage() for r in caplog.records if r.name == hard_stop.__name__]
    assert "had not ended 0.2 s after the stop began" in line
    assert "s-door_0 in plugin_call_that_never_returns (test_hard_stop.py:" in line


def test_a_process_that_ends_in_time_is_left_alone() -> None:
    exits: list[int] = []
    timer = hard_stop.arm(30.0, "the stop began", exit_process=exits.append)
    timer.cancel()  # what the end of the process does to a daemon timer
    timer.join(5)
    assert exits == []
    assert timer.daemon  # never what holds the exit
