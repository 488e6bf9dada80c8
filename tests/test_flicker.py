"""Score flicker: how far a track's reading jumps between neighbouring frames."""

from __future__ import annotations

import math

import numpy as np
import pytest

from swapwatch.evaluation.flicker import flicker, standardised, video_logit


def test_a_jumpy_reading_flickers_more_than_a_steady_one_at_the_same_level() -> None:
    times = np.arange(60) / 15.0
    steady = 2.0 + 0.05 * np.sin(times)
    jumpy = 2.0 + np.where(np.arange(60) % 2, 1.0, -1.0)  # same mean, alternating by 2
    assert flicker(times, jumpy) == pytest.approx(math.log(2.0))
    assert flicker(times, steady) == pytest.approx(math.log(0.01))  # the floor


def test_only_frames_close_in_time_are_neighbours() -> None:
    # Two steady stretches 1 s apart at different levels: the jump between them is a gap,
    # not a flicker.
    times = np.concatenate([np.arange(15) / 15.0, 2.0 + np.arange(15) / 15.0])
    logits = np.concatenate([np.full(15, -3.0), np.full(15, 4.0)])
    assert flicker(times, logits) == pytest.approx(math.log(0.01))
    # At 15 Hz one missed frame still leaves neighbours; two missed frames (0.2 s) do not.
    assert flicker(np.arange(40) * 0.133, np.arange(40) % 2) == pytest.approx(0.0)
    assert flicker(np.arange(40) * 0.2, np.zeros(40)) is None


def test_a_short_track_gives_none_and_bad_input_is_refused() -> None:
    assert flicker(np.arange(10) / 15.0, np.zeros(10)) is None  # 9 neighbouring pairs
    assert flicker(np.arange(11) / 15.0, np.zeros(11)) is not None
    with pytest.raises(ValueError, match="same length"):
        flicker([0.0, 0.1], [1.0])


def test_scores_become_clipped_logits_and_z_scores_against_the_reals() -> None:
    assert video_logit(0.5) == 0.0
    assert video_logit(1.0) == 10.0 and video_logit(0.0) == -10.0
    assert video_logit(0.9) == pytest.approx(math.log(9.0))
    z = standardised([1.0, 3.0, 5.0], reference=[1.0, 3.0])
    np.testing.assert_allclose(z, [-1.0, 1.0, 3.0])
    with pytest.raises(ValueError, match="two different"):
        standardised([1.0], reference=[2.0, 2.0])
