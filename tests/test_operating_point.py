"""Measuring false alarms per stream-hour and detection delay for CUSUM thresholds."""

from __future__ import annotations

import numpy as np
import pytest

from swapwatch.evaluation.operating_point import (
    OperatingPointConfig,
    cusum,
    excursion_peaks,
    false_alarm_peaks,
    first_alarm,
    smallest_threshold,
    streamed_excursion_peaks,
    sweep,
    synthetic_chunks,
    synthetic_stream,
    threshold_for_budget,
)
from swapwatch.fusion.rule import DecisionConfig, TrackDecision


def test_vectorised_cusum_matches_the_decision_rule() -> None:
    rng = np.random.default_rng(0)
    evidence = np.clip(rng.normal(-0.5, 1.5, 400), -4, 4)
    rule = TrackDecision(DecisionConfig(k=0.5, h=1e9, min_frames=1))
    expected = [rule.update(float(e), i / 15).cusum for i, e in enumerate(evidence)]
    np.testing.assert_allclose(cusum(evidence, 0.5), expected, atol=1e-9)


def test_excursion_peaks_by_hand() -> None:
    # k = 0: the path is 0, 1, 3, 0 | 0 | 2, 0 -> excursions peaking at 3 and 2
    path = cusum(np.array([-1.0, 1.0, 2.0, -5.0, -1.0, 2.0, -3.0]), 0.0)
    np.testing.assert_allclose(path, [0, 1, 3, 0, 0, 2, 0])
    np.testing.assert_allclose(excursion_peaks(path), [3, 2])
    assert len(excursion_peaks(np.zeros(5))) == 0


def test_cusum_can_start_where_a_previous_chunk_ended() -> None:
    evidence = np.array([1.0, 2.0, -0.5, -4.0, 3.0])
    whole = cusum(evidence, 0.5)
    np.testing.assert_allclose(cusum(evidence[2:], 0.5, start=whole[1]), whole[2:])


def test_streamed_peaks_equal_the_peaks_of_the_whole_path() -> None:
    rng = np.random.default_rng(3)
    for _ in range(300):
        evidence = np.clip(rng.normal(rng.uniform(-1.5, 1.0), 2.0, rng.integers(1, 300)), -4, 4)
        expected = excursion_peaks(cusum(evidence, 0.5))
        size = int(rng.integers(1, 40))  # excursions open and close across chunk edges
        chunks = [evidence[i : i + size] for i in range(0, len(evidence), size)]
        np.testing.assert_allclose(streamed_excursion_peaks(chunks, 0.5), expected)


def test_synthetic_chunks_are_runs_of_real_tracks_drawn_by_length() -> None:
    long, short = np.arange(1000.0), np.arange(5000.0, 5003.0)
    chunks = list(
        synthetic_chunks(
            [long, short], 60_000, block=10, rng=np.random.default_rng(4), chunk_frames=7_001
        )
    )
    assert [len(c) for c in chunks] == [7_001] * 8 + [60_000 - 8 * 7_001]
    # Within a run values step by one; a run of the long track is 10 long, of the short one 3
    # (two runs may join by chance; the last run of a chunk is cut at its end).
    runs = [
        run
        for chunk in chunks
        for run in np.split(chunk, np.flatnonzero(np.diff(chunk) != 1.0) + 1)[:-1]
    ]
    lengths = {(bool(run[0] >= 5000), len(run)) for run in runs}
    assert lengths <= {(False, 10), (False, 20), (True, 3), (True, 6)}
    assert (False, 10) in lengths and (True, 3) in lengths
    # Tracks come in proportion to their length: 1000 to 3 frames per draw.
    share_short = np.mean([run[0] >= 5000 for run in runs])
    assert 0.0005 < share_short < 0.01


def test_threshold_for_budget_by_hand() -> None:
    peaks = np.array([3.0, 10.0, 5.0, 7.2])
    # 10 hours at 0.1 per hour: one excursion may reach h, so h must pass the second highest.
    assert threshold_for_budget(peaks, hours=10, false_alarms_per_hour=0.1) == 7.5
    assert threshold_for_budget(peaks, hours=10, false_alarms_per_hour=0.2) == 5.5
    assert threshold_for_budget(peaks, hours=10, false_alarms_per_hour=0.05) == 10.5
    assert threshold_for_budget(peaks, hours=10, false_alarms_per_hour=1.0) == 0.5
    assert threshold_for_budget(np.array([7.0, 7.0]), hours=10, false_alarms_per_hour=0.1) == 7.5


def test_the_recommended_h_keeps_to_the_budget_on_fresh_footage() -> None:
    rng = np.random.default_rng(5)

    def footage(seconds: float) -> list[np.ndarray]:
        # Correlated evidence, as video gives: a slow random walk around a negative mean.
        walk = np.cumsum(rng.normal(0, 0.35, int(seconds * 15)))
        return [np.clip(-1.2 + walk - np.convolve(walk, np.ones(45) / 45, "same"), -4, 4)]

    measured, fresh = footage(3600), footage(20 * 3600)
    config = OperatingPointConfig(false_alarms_per_hour=1.0)
    peaks = false_alarm_peaks(measured, 15, 0.5, config.hours)
    h = threshold_for_budget(peaks, config.hours, 1.0)
    fresh_rate = (excursion_peaks(cusum(fresh[0], 0.5)) >= h).sum() / 20
    assert 0 < fresh_rate <= 3.0  # near the budget of 1 per hour, on footage never seen
    assert (excursion_peaks(cusum(fresh[0], 0.5)) >= h - 3).sum() / 20 > fresh_rate


def test_operating_point_config_refuses_budgets_it_cannot_measure() -> None:
    assert OperatingPointConfig(false_alarms_per_hour=0.1).hours == 200
    assert OperatingPointConfig(false_alarms_per_hour=0.005).hours == 4000
    for bad in (0.001, 0.0, 1000.0):
        with pytest.raises(ValueError, match="false alarms per hour"):
            OperatingPointConfig(false_alarms_per_hour=bad)


def test_first_alarm_waits_for_min_frames() -> None:
    evidence = np.full(20, 3.0)  # 2.5 above k per frame: S reaches 5 at frame index 1
    assert first_alarm(evidence, 0.5, 5.0, min_frames=1) == 1
    assert first_alarm(evidence, 0.5, 5.0, min_frames=10) == 9
    assert first_alarm(-evidence, 0.5, 5.0, min_frames=1) is None


def test_synthetic_stream_only_holds_real_values() -> None:
    tracks = [np.arange(10.0), np.arange(100.0, 103.0)]
    stream = synthetic_stream(tracks, 1000, block=4, rng=np.random.default_rng(1))
    assert len(stream) == 1000
    assert set(np.unique(stream)) <= set(np.concatenate(tracks))
    with pytest.raises(ValueError):
        synthetic_stream([np.zeros(0)], 10, 2, np.random.default_rng(0))


def test_higher_thresholds_trade_false_alarms_for_delay() -> None:
    rng = np.random.default_rng(2)
    real = [np.clip(rng.normal(-1.0, 1.5, 300), -4, 4) for _ in range(20)]
    fake = [np.clip(rng.normal(1.5, 1.5, 150), -4, 4) for _ in range(10)]
    figures = sweep(real, fake, [2, 6, 12, 20], rate_hz=15, hours=5)
    rates = [f.false_alarms_per_hour for f in figures]
    delays = [f.median_delay_seconds for f in figures]
    assert rates == sorted(rates, reverse=True) and rates[0] > rates[-1]
    assert all(d is not None for d in delays) and delays == sorted(delays)
    assert all(f.fake_tracks_alarmed == 1.0 for f in figures)
    chosen = smallest_threshold(figures, max_false_alarms_per_hour=rates[2])
    assert chosen is not None and chosen.h <= 12
    assert smallest_threshold(figures, -1.0) is None
