"""The verdict's operating point (video threshold and CUSUM h together) on hand-made items."""

from __future__ import annotations

import numpy as np
import pytest

from swapwatch.evaluation.verdict_point import (
    Outcome,
    choose,
    clopper_pearson_upper,
    peak_cusum,
)


def test_clopper_pearson_upper_bound_matches_known_values() -> None:
    # 0 errors in 59 items: the rule of three, 1 - 0.05 ** (1 / 59).
    assert clopper_pearson_upper(0, 59) == pytest.approx(1 - 0.05 ** (1 / 59), abs=1e-6)
    assert clopper_pearson_upper(5, 100) == pytest.approx(0.1023, abs=5e-4)
    assert clopper_pearson_upper(3, 3) == 1.0 and clopper_pearson_upper(0, 0) is None


def test_the_pair_meeting_the_target_that_catches_most_fakes_wins() -> None:
    reals = [Outcome(False, s, 0.0) for s in np.linspace(0.01, 0.40, 19)]
    reals.append(Outcome(False, 0.62, 0.0))  # one real scores high: 1 of 20 is 5 %
    reals.append(Outcome(False, 0.2, 55.0))  # one real track's CUSUM climbs to 55
    fakes = [Outcome(True, 0.45, 0.0), Outcome(True, 0.7, 0.0), Outcome(True, 0.1, 90.0)]
    point = choose(reals + fakes, target=0.05)
    # 21 reals: at most one may be called fake. Any threshold 0.41-0.62 calls the 0.62 real
    # fake, so h must stay above 55; the 0.1 fake is caught by its CUSUM at h 56-90. Of the
    # thresholds catching all three fakes, the highest (0.45) leaves the most margin.
    assert point["threshold"] == 0.45 and 56 <= point["h"] <= 90
    assert point["reals_called_fake"] == 1 and point["fakes_caught"] == 3
    assert point["real_called_fake_upper_95"] > point["real_called_fake_rate"]


def test_items_without_a_verdict_are_never_called_fake() -> None:
    reals = [Outcome(False, None, 0.0)] * 5 + [Outcome(False, 0.1, 0.0)] * 5
    fakes = [Outcome(True, None, 0.0), Outcome(True, 0.9, 0.0)]
    point = choose(reals + fakes, target=0.0)
    assert point["reals_called_fake"] == 0 and point["fakes_caught"] == 1
    with pytest.raises(ValueError):
        choose(fakes)


def test_peak_cusum_counts_only_where_a_track_could_alarm() -> None:
    steady = np.full(20, 2.5)  # CUSUM grows by 2 a frame
    assert peak_cusum([steady], k=0.5, min_frames=10) == pytest.approx(40.0)
    assert peak_cusum([np.full(5, 2.5)], k=0.5, min_frames=10) == 0.0
    assert peak_cusum([], k=0.5, min_frames=10) == 0.0
