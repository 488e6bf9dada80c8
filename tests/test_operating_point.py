"""Measuring false alarms per stream-hour and detection delay for CUSUM thresholds."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from swapwatch.datasets.lists import Label, MediaItem
from swapwatch.evaluation.operating_point import (
    OperatingPointConfig,
    TrackSet,
    cusum,
    excursion_peaks,
    false_alarm_peaks,
    first_alarm,
    highest_alarming_cusum,
    operating_point,
    streamed_excursion_peaks,
    synthetic_chunks,
    threshold_for_budget,
    video_threshold,
)
from swapwatch.evaluation.runner import ItemResult, ItemStatus
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
    # Runs start anywhere a whole block fits.
    starts = [run[0] for run in runs if run[0] < 5000]
    assert min(starts) < 20 and max(starts) > 970
    # Each track's share of the stream is its share of the footage: 3 frames in 1003.
    stream = np.concatenate(chunks)
    assert 0.002 < np.mean(stream >= 5000) < 0.004


def test_streamed_peaks_can_drop_the_small_ones() -> None:
    evidence = np.clip(np.random.default_rng(6).normal(-0.5, 2.0, 5000), -4, 4)
    every = excursion_peaks(cusum(evidence, 0.5))
    chunks = [evidence[i : i + 333] for i in range(0, len(evidence), 333)]
    kept = streamed_excursion_peaks(chunks, 0.5, keep_above=4.0)
    np.testing.assert_allclose(kept, every[every >= 4.0])
    assert 0 < len(kept) < len(every)


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


def test_synthetic_chunks_only_hold_real_values() -> None:
    tracks = [np.arange(10.0), np.arange(100.0, 103.0)]
    stream = np.concatenate(list(synthetic_chunks(tracks, 1000, 4, np.random.default_rng(1))))
    assert len(stream) == 1000
    assert set(np.unique(stream)) <= set(np.concatenate(tracks))
    with pytest.raises(ValueError):
        next(synthetic_chunks([np.zeros(0)], 10, 2, np.random.default_rng(0)))


def test_higher_thresholds_trade_false_alarms_for_delay() -> None:
    rng = np.random.default_rng(2)
    real = [np.clip(rng.normal(-1.0, 1.5, 300), -4, 4) for _ in range(20)]
    fake = [np.clip(rng.normal(1.5, 1.5, 150), -4, 4) for _ in range(10)]
    real_peaks = [highest_alarming_cusum(t, 0.5, 10) for t in real]
    tracks = TrackSet(real, fake, 15, 0.5, 10, real_recordings=20, real_peaks=real_peaks)
    peaks = false_alarm_peaks(real, 15, 0.5, hours=5)
    figures = [tracks.figures_at(h, peaks, 5) for h in (2, 6, 12, 20)]
    rates = [f.false_alarms_per_hour for f in figures]
    delays = [f.median_delay_seconds for f in figures]
    assert rates == sorted(rates, reverse=True) and rates[0] > rates[-1]
    assert all(d is not None for d in delays) and delays == sorted(delays)
    assert all(f.fake_tracks_alarmed == 1.0 for f in figures)
    alarmed = [f.real_tracks_alarmed for f in figures]
    assert alarmed == sorted(alarmed, reverse=True) and alarmed[0] > 0


def result(
    label: Label,
    tracks: list[np.ndarray],
    score: float | None,
    *,
    picture: bool = False,
    rate: float | None = 15.0,
) -> ItemResult:
    item = MediaItem(Path("face.png" if picture else "clip.mp4"), label, group="g")
    return ItemResult(
        item=item,
        status=ItemStatus.SCORED,
        score=score,
        verdict=None,
        alarmed=False,
        alarms_raised=0,
        frame_logits=np.concatenate(tracks) if tracks else np.zeros(0),
        media_seconds=0.0 if picture else 10.0,
        elapsed=0.0,
        track_evidence=tuple(tracks),
        analysis_rate=None if picture else rate,
    )


def test_no_operating_point_without_a_real_recording_with_faces() -> None:
    decision = DecisionConfig()
    evidence = [np.full(100, -2.0)]
    assert operating_point([result(Label.FAKE, evidence, 0.9)], decision) is None
    assert operating_point([result(Label.REAL, evidence, 0.1, picture=True)], decision) is None
    assert operating_point([result(Label.REAL, [], None)], decision) is None


def test_false_evidence_longer_than_a_block_still_raises_the_recommendation() -> None:
    # Ten minutes of quiet real faces and one that looks fake for 5 s: 2 s blocks cut that run
    # up, but the list's own real footage must not alarm at the recommended h.
    quiet = [np.full(900, -2.0) for _ in range(10)]
    stretch = np.concatenate([np.full(300, -2.0), np.full(75, 1.5), np.full(300, -2.0)])
    point = operating_point([result(Label.REAL, [*quiet, stretch], 0.2)], DecisionConfig())
    assert point is not None and point["enough_real_footage"]
    assert point["highest_real_track_cusum"] == pytest.approx(75.0)
    assert point["binding"] == "own_real_tracks" and point["recommended_h"] == 75.5
    assert point["bounds"]["resampled"] < 75.0
    assert point["at_recommended_h"]["real_tracks_alarmed"] == 0
    assert point["at_current_h"]["real_tracks_alarmed"] == 1  # the default h = 40 would alarm


def test_quiet_footage_is_held_to_the_independent_frame_bound() -> None:
    quiet = [np.full(900, -3.0) for _ in range(10)]  # never an excursion
    point = operating_point(
        [result(Label.REAL, quiet, 0.05, rate=None)], DecisionConfig(), None, 15.0
    )
    assert point is not None and point["analysis_rate_hz"] == 15.0  # the fallback rate
    assert point["binding"] == "independent_frames"
    assert point["recommended_h"] == 13.5  # ln(15 * 3600 / 0.1) = 13.2


def test_video_threshold_steps_above_the_real_recordings_and_gives_up_near_one() -> None:
    reals = [result(Label.REAL, [], s) for s in (0.12, 0.31)]
    fakes = [result(Label.FAKE, [], s) for s in (0.34, 0.36, 0.9)]
    video = video_threshold([*reals, *fakes])
    assert video["threshold"] == 0.35 and video["fakes_at_or_above"] == 2
    assert video_threshold([result(Label.REAL, [], 0.3), *fakes])["threshold"] == 0.35
    too_high = video_threshold([result(Label.REAL, [], 0.97), *fakes])
    assert too_high["threshold"] is None and too_high["highest_real_score"] == 0.97
    assert video_threshold(fakes)["threshold"] is None
