from __future__ import annotations

import math

import numpy as np
import pytest

from swapwatch.evaluation.operating_point import cusum
from swapwatch.fusion import (
    AlarmChange,
    DecisionConfig,
    Policy,
    TrackDecision,
    TrackEvidence,
    Verdict,
    VideoConfig,
    cusum_threshold,
    rate_weighted,
    video_decision,
)

RATE = 15.0


def feed(
    decision: TrackDecision, logits: np.ndarray, start: float = 0.0
) -> list[tuple[float, AlarmChange]]:
    changes = []
    for i, z in enumerate(logits):
        t = start + i / RATE
        update = decision.update(float(z), t)
        if update.change is not None:
            changes.append((t, update.change))
    return changes


def test_starting_threshold_follows_the_design_formula() -> None:
    assert cusum_threshold(15, 1) == pytest.approx(math.log(15 * 3600))


@pytest.mark.parametrize(
    ("evidence", "k", "h", "min_frames", "expected_frame"),
    [
        (3.0, 0.5, 11.0, 1, 5),  # S grows 2.5 a frame: 2.5 * 5 = 12.5 >= 11 at the 5th frame
        (3.0, 0.5, 11.0, 10, 10),  # ...but no alarm before min_frames valid frames
        (1.5, 0.5, 11.0, 1, 11),  # 1.0 a frame
        (9.0, 0.5, 11.0, 1, 4),  # evidence is clipped to 4: 3.5 a frame
    ],
)
def test_alarm_delay_on_constant_fake_evidence(
    evidence: float, k: float, h: float, min_frames: int, expected_frame: int
) -> None:
    decision = TrackDecision(DecisionConfig(k=k, h=h, min_frames=min_frames))
    changes = feed(decision, np.full(60, evidence))
    assert changes[0][1] is AlarmChange.RAISED
    assert changes[0][0] == pytest.approx((expected_frame - 1) / RATE)


def alarm_time(rate: float, evidence: float, h: float = 20.0, seconds: float = 10.0) -> float:
    decision = TrackDecision(DecisionConfig(h=h, min_frames=1))
    for i in range(int(seconds * rate)):
        if decision.update(evidence, i / rate).change is AlarmChange.RAISED:
            return i / rate
    raise AssertionError("no alarm")


@pytest.mark.parametrize("rate", [7.5, 10.0, 12.5, 25.0, 30.0])
def test_the_rule_alarms_after_the_same_media_time_at_any_scoring_rate(rate: float) -> None:
    # Evidence accrues per second of face: a stream scored at 10 Hz (a busy service) or a
    # 25 fps file at stride 2 alarms when one scored at the reference 15 Hz does, within a
    # frame interval, instead of 1.5 or 1.2 times later; 30 Hz no sooner.
    reference = alarm_time(15.0, 2.5)
    assert abs(alarm_time(rate, 2.5) - reference) <= 1.0 / min(rate, 15.0) + 1e-9


def test_real_footage_at_another_rate_raises_no_more_false_alarms() -> None:
    # The same second-by-second real evidence (strongly correlated frames) sampled at 30 Hz
    # reaches the same CUSUM level as at 15 Hz, not twice as high.
    rng = np.random.default_rng(3)
    seconds = 600
    per_second = rng.normal(-1.0, 1.5, seconds)  # the face's evidence changes once a second
    peaks = {}
    for rate in (15.0, 30.0):
        decision = TrackDecision(DecisionConfig(min_frames=1))
        top = 0.0
        for i in range(int(seconds * rate)):
            top = max(top, decision.update(per_second[int(i / rate)], i / rate).cusum)
        peaks[rate] = top
    assert peaks[30.0] == pytest.approx(peaks[15.0], rel=0.02)


def test_a_gap_counts_as_a_few_frames_at_most() -> None:
    decision = TrackDecision(DecisionConfig(min_frames=1))
    decision.update(4.0, 0.0)
    after_gap = decision.update(4.0, 60.0)  # the face comes back a minute later
    assert after_gap.cusum == pytest.approx(3.5 + 2 * 3.5)


def test_offline_replay_of_recorded_tracks_matches_the_live_rule() -> None:
    # The evaluation chooses h on recorded tracks with an unweighted CUSUM over
    # rate_weighted evidence: it must reach exactly the values the live rule reached.
    rng = np.random.default_rng(7)
    times = np.cumsum(rng.choice([1 / 30, 1 / 15, 1 / 10, 0.5], 300))
    logits = rng.normal(0.3, 2.0, 300)
    config = DecisionConfig(policy=Policy.KYC, h=1e9, min_frames=1)
    decision = TrackDecision(config)
    live = [decision.update(float(z), float(t)) for z, t in zip(logits, times, strict=True)]
    replayed = cusum(rate_weighted([u.evidence for u in live], times, config.k, 15.0), config.k)
    np.testing.assert_allclose(replayed, [u.cusum for u in live], atol=1e-9)


def test_temperature_scales_the_evidence() -> None:
    hot = TrackDecision(DecisionConfig(h=11.0, min_frames=1), temperature=2.0)
    changes = feed(hot, np.full(30, 3.0))  # 3 / 2 = 1.5 -> 1.0 a frame -> 11th frame
    assert changes[0][0] == pytest.approx(10 / RATE)


def test_no_alarm_in_an_hour_of_real_like_noisy_evidence() -> None:
    rng = np.random.default_rng(7)
    # Real faces through a calibrated detector: evidence around -2.5, sd 1, correlated over
    # ~1 s (video frames are), and isolated confident misses.
    n = int(3600 * RATE)
    noise = np.convolve(rng.normal(0, 1.0, n), np.ones(15) / math.sqrt(15), mode="same")
    logits = -2.5 + noise
    logits[rng.choice(n, 200, replace=False)] = 4.0  # isolated false positives
    decision = TrackDecision(DecisionConfig())
    assert feed(decision, logits) == []
    assert decision.max_cusum < DecisionConfig().h


def test_swap_starting_mid_stream_is_caught_within_two_seconds() -> None:
    rng = np.random.default_rng(1)
    real = rng.normal(-2.0, 1.0, int(60 * RATE))
    fake = rng.normal(2.5, 1.0, int(10 * RATE))
    config = DecisionConfig()
    decision = TrackDecision(config)
    changes = feed(decision, np.concatenate([real, fake]))
    assert [c for _, c in changes] == [AlarmChange.RAISED]
    delay = changes[0][0] - 60.0
    # The CUSUM climbs from the zero the real minute left it at, by 2.5 - k a frame on average:
    # it reaches h at the 13th fake frame at h = 25, 12 frames (0.8 s at 15 Hz) after the first,
    # give or take the noise.
    expected = (math.ceil(config.h / (2.5 - config.k)) - 1) / RATE
    assert abs(delay - expected) < 0.3 and delay < 2.0


def test_kyc_alarm_never_clears_by_itself() -> None:
    decision = TrackDecision(DecisionConfig(policy=Policy.KYC, min_frames=1))
    changes = feed(decision, np.concatenate([np.full(30, 3.0), np.full(3000, -4.0)]))
    assert [c for _, c in changes] == [AlarmChange.RAISED]
    assert decision.alarm


def test_monitoring_clears_only_after_sustained_real_evidence() -> None:
    cfg = DecisionConfig(policy=Policy.MONITORING, min_frames=1, clear_h=6.0)
    decision = TrackDecision(cfg)
    feed(decision, np.full(30, 3.0))
    # One good frame does not clear it...
    assert decision.update(-4.0, 30 / RATE).change is None
    assert decision.alarm
    # ...sustained real evidence does: 3.5 a frame -> cleared on the second frame.
    assert decision.update(-4.0, 31 / RATE).change is AlarmChange.CLEARED
    assert not decision.alarm and decision.cusum == 0.0


def test_display_score_is_an_ema_with_the_configured_time_constant() -> None:
    decision = TrackDecision(DecisionConfig(ema_tau=1.0))
    decision.update(-4.0, 0.0)
    update = decision.update(4.0, 1.0)  # after one time constant: 63% of the way
    expected = -4.0 + (1 - math.exp(-1.0)) * 8.0
    assert update.score == pytest.approx(1 / (1 + math.exp(-expected)))


def test_state_round_trip_resumes_identically() -> None:
    a = TrackDecision(DecisionConfig(policy=Policy.KYC), temperature=1.7)
    feed(a, np.linspace(-1, 3, 20))
    b = TrackDecision.restore(a.state())
    assert b.update(2.0, 5.0) == a.update(2.0, 5.0)


@pytest.mark.parametrize(
    ("tracks", "expected_score", "verdict"),
    [
        ([], None, Verdict.INCONCLUSIVE),
        ([TrackEvidence(1, [3.0] * 5, False)], None, Verdict.INCONCLUSIVE),  # too few frames
        ([TrackEvidence(1, [-3.0] * 40, False)], 1 / (1 + math.exp(3)), Verdict.REAL),
        ([TrackEvidence(1, [3.0] * 40, False)], 1 / (1 + math.exp(-3)), Verdict.FAKE),
        # The most suspicious main track decides.
        (
            [TrackEvidence(1, [-3.0] * 40, False), TrackEvidence(2, [3.0] * 30, False)],
            1 / (1 + math.exp(-3)),
            Verdict.FAKE,
        ),
        # A face glimpsed for a moment does not speak for the video.
        (
            [TrackEvidence(1, [-3.0] * 400, False), TrackEvidence(2, [3.0] * 20, False)],
            1 / (1 + math.exp(3)),
            Verdict.REAL,
        ),
        # An alarm anywhere makes it fake even when the average looks real.
        ([TrackEvidence(1, [-1.0] * 40, True)], 1 / (1 + math.exp(1)), Verdict.FAKE),
    ],
)
def test_video_decision(
    tracks: list[TrackEvidence], expected_score: float | None, verdict: Verdict
) -> None:
    score, got = video_decision(tracks, VideoConfig())
    assert got is verdict
    if expected_score is None:
        assert score is None
    else:
        assert score == pytest.approx(expected_score)


def test_video_score_ignores_a_few_outlier_frames() -> None:
    evidence = [-3.0] * 45 + [4.0] * 5  # 10% confident misses are trimmed away
    score, verdict = video_decision([TrackEvidence(1, evidence, False)], VideoConfig())
    assert verdict is Verdict.REAL
    assert score is not None and score < 0.1
