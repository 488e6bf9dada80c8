"""The verdict's operating point (video threshold and CUSUM h together) on hand-made items."""

from __future__ import annotations

import numpy as np
import pytest

from swapwatch.evaluation.verdict_point import (
    Delivery,
    Outcome,
    choose,
    clopper_pearson_upper,
    peak_cusum,
)


def one(fake: bool, score: float | None, peak: float = 0.0) -> Outcome:
    return Outcome(fake, (Delivery(score, peak),))


def test_clopper_pearson_upper_bound_matches_known_values() -> None:
    # 0 errors in 59 items: the rule of three, 1 - 0.05 ** (1 / 59).
    assert clopper_pearson_upper(0, 59) == pytest.approx(1 - 0.05 ** (1 / 59), abs=1e-6)
    assert clopper_pearson_upper(5, 100) == pytest.approx(0.1023, abs=5e-4)
    assert clopper_pearson_upper(3, 3) == 1.0 and clopper_pearson_upper(0, 0) is None


def test_the_pair_meeting_the_target_that_catches_most_fakes_wins() -> None:
    reals = [one(False, s) for s in np.linspace(0.01, 0.40, 19)]
    reals.append(one(False, 0.62))  # one real scores high: 1 of 21 is under 5 %
    reals.append(one(False, 0.2, 55.0))  # one real track's CUSUM climbs to 55
    fakes = [one(True, 0.45), one(True, 0.7), one(True, 0.1, 90.0)]
    point = choose(reals + fakes, target=0.05)
    # One real may be called fake. Any threshold 0.41-0.62 calls the 0.62 real fake, so h
    # must stay above 55; the 0.1 fake is caught by its CUSUM at h 56-90. Of the thresholds
    # catching all three fakes, the highest (0.45) leaves the most margin.
    assert point["threshold"] == 0.45 and 56 <= point["h"] <= 90
    assert point["reals_called_fake"] == 1 and point["fake_deliveries_caught"] == 3
    assert point["real_called_fake_upper_95"] > point["real_called_fake_rate"]


def test_among_pairs_catching_as_many_the_one_calling_fewer_reals_fake_wins() -> None:
    reals = [one(False, 0.1)] * 19 + [one(False, 0.1, 60.0)]
    fakes = [one(True, 0.6, 60.0), one(True, 0.2, 300.0)]
    point = choose(reals + fakes, target=0.05)
    # Threshold 0.6 with h 62-300 catches both and calls no real fake; h 60 would call one.
    assert point["reals_called_fake"] == 0 and point["fake_deliveries_caught"] == 2
    assert point["h"] > 60


def test_a_real_recording_counts_once_whatever_the_deliveries() -> None:
    # Called fake only as a poor call delivers it: one recording of ten called fake, not one
    # delivery of twenty, and the bound is over ten recordings.
    plain_only = [Outcome(False, (Delivery(0.1, 0), Delivery(0.1, 0)))] * 9
    reals = [*plain_only, Outcome(False, (Delivery(0.2, 0), Delivery(0.97, 0)))]
    point = choose([*reals, one(True, 0.96)], target=0.1)  # caught only below 0.97
    assert point["real_recordings"] == 10
    assert point["reals_called_fake"] == 1 and point["real_called_fake_rate"] == 0.1
    assert point["real_called_fake_upper_95"] == pytest.approx(
        clopper_pearson_upper(1, 10), abs=1e-4
    )


def picture(fake: bool, score: float | None) -> Outcome:
    return Outcome(fake, (Delivery(score, 0.0),), picture=True)


def test_each_medium_meets_the_target_on_its_own_reals() -> None:
    """Thousands of real pictures beside twenty real recordings: a shared point could call 3
    of the 20 recordings fake (15 %) while the pooled rate stayed under 5 %."""
    pictures = [picture(False, s) for s in np.linspace(0.01, 0.69, 2000)]
    pictures += [picture(True, 0.72), picture(True, 0.5)]
    recordings = [one(False, s) for s in np.linspace(0.05, 0.45, 17)]
    recordings += [one(False, 0.75), one(False, 0.8), one(False, 0.85)]
    recordings += [one(True, 0.78), one(True, 0.95)]
    point = choose(pictures + recordings, target=0.05)
    # Below 0.81 two real recordings are called fake; 0.81-0.95 catch the same one fake, and
    # 0.86-0.95 call no real recording fake: the highest of those leaves the most margin.
    assert point["real_recordings"] == 20 and point["reals_called_fake"] == 0
    assert point["threshold"] == 0.95 and point["fake_deliveries_caught"] == 1
    assert point["real_called_fake_upper_95"] == pytest.approx(
        clopper_pearson_upper(point["reals_called_fake"], 20), abs=1e-4
    )
    # Pictures keep their own, lower threshold: at most 100 of 2,000 reals, the 0.72 fake caught.
    assert point["picture_threshold"] <= 0.72
    assert point["pictures"]["real_pictures"] == 2000
    assert point["pictures"]["reals_called_fake"] <= 100
    assert point["pictures"]["fake_deliveries_caught"] == 1
    # A list of recordings only has no picture point, and the other way round.
    assert choose(recordings)["picture_threshold"] is None
    only_pictures = choose(pictures)
    assert only_pictures["threshold"] is None and only_pictures["h"] is None


def test_a_few_real_recordings_can_only_make_their_point_stricter() -> None:
    """Twenty real recordings allow one called fake: a threshold chosen on them alone follows
    their noise. Below 60 they must also keep every real item within the target."""
    pictures = [picture(False, s) for s in np.linspace(0.01, 0.69, 2000)]
    few = [one(False, s) for s in np.linspace(0.05, 0.30, 20)] + [one(True, 0.5)]
    point = choose(pictures + few, target=0.05)
    # At 0.5 no real recording is called fake, but 28 % of all reals would be.
    assert point["threshold"] >= 0.66 and point["fake_deliveries_caught"] == 0
    assert point["chosen_on"] == "own reals and every real item"
    many = [one(False, s) for s in np.linspace(0.05, 0.30, 60)] + [one(True, 0.5)]
    point = choose(pictures + many, target=0.05)
    assert point["threshold"] == 0.5 and point["fake_deliveries_caught"] == 1
    assert point["chosen_on"] == "own reals"


def test_items_without_a_verdict_are_never_called_fake() -> None:
    reals = [one(False, None)] * 5 + [one(False, 0.1)] * 5
    fakes = [one(True, None), one(True, 0.9)]
    point = choose(reals + fakes, target=0.0)
    assert point["reals_called_fake"] == 0 and point["fake_deliveries_caught"] == 1
    with pytest.raises(ValueError):
        choose(fakes)


def test_peak_cusum_counts_only_where_a_track_could_alarm() -> None:
    steady = np.full(20, 2.5)  # CUSUM grows by 2 a frame
    assert peak_cusum([steady], k=0.5, min_frames=10) == pytest.approx(40.0)
    assert peak_cusum([np.full(5, 2.5)], k=0.5, min_frames=10) == 0.0
    assert peak_cusum([], k=0.5, min_frames=10) == 0.0
