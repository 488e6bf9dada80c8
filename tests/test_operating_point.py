"""Measuring false alarms per stream-hour and detection delay for CUSUM thresholds."""

from __future__ import annotations

import numpy as np
import pytest

from swapwatch.evaluation.operating_point import (
    cusum,
    excursion_peaks,
    first_alarm,
    smallest_threshold,
    sweep,
    synthetic_stream,
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
