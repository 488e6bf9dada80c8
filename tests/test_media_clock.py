"""The worker's media clock: time that never goes back across a source's reconnects, so old
tracks age and are pruned (the end-to-end case, with a real publisher, is in
test_reconnect_clock.py)."""

from __future__ import annotations

import pytest

from swapwatch.stream.clock import MediaClock


def frames(clock: MediaClock, times: list[float]) -> list[float]:
    return [round(clock.map(t), 6) for t in times]


def test_the_first_connection_keeps_its_own_times() -> None:
    clock = MediaClock()
    assert frames(clock, [0.0, 0.1, 0.2]) == [0.0, 0.1, 0.2]


def test_a_connection_that_starts_again_at_zero_goes_on_one_frame_after_the_last() -> None:
    clock = MediaClock()
    frames(clock, [0.0, 0.1, 0.2])
    clock.new_connection()
    assert frames(clock, [0.0, 0.1]) == [0.3, 0.4]
    clock.new_connection()  # and again: the offset builds on the one before
    assert frames(clock, [0.0, 0.05]) == [0.5, 0.55]


def test_a_resumed_recording_keeps_its_times() -> None:
    clock = MediaClock()
    frames(clock, [0.0, 0.1, 0.2])
    clock.new_connection()
    assert frames(clock, [5.0, 5.1]) == [5.0, 5.1]


@pytest.mark.parametrize("cut", [0, 1, 3])
def test_a_restored_clock_maps_the_next_connection_as_the_one_it_was_saved_from(cut: int) -> None:
    first = [0.0, 0.04, 0.08, 0.12]
    original = MediaClock()
    frames(original, first[: cut + 1])
    restored = MediaClock()
    restored.restore(original.state())
    # A restored worker opens its source again: the next frame starts a new connection.
    original.new_connection()
    assert frames(restored, [0.0, 0.04]) == frames(original, [0.0, 0.04])
    assert restored.last is not None and restored.last > first[cut]


def test_a_restored_clock_that_never_saw_a_frame_keeps_the_sources_times() -> None:
    restored = MediaClock()
    restored.restore(MediaClock().state())
    assert frames(restored, [2.0, 2.1]) == [2.0, 2.1]
