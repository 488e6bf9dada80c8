"""Evaluation metrics against values worked out by hand, and the report built on them."""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np
import pytest

from swapwatch.datasets.lists import Label, MediaItem
from swapwatch.engines.base import ModelInfo
from swapwatch.evaluation.metrics import (
    DetCurve,
    apcer,
    apcer_at_bpcer,
    bpcer,
    bpcer_at_apcer,
    classification_errors,
    equal_error_rate,
    error_rates,
    group_bootstrap,
    group_resamples,
    percentile_interval,
    roc_auc,
    stratified_auc,
)
from swapwatch.evaluation.report import ReportConfig, build_report, render_text, summarise
from swapwatch.evaluation.runner import EvalConfig, EvalRun, ItemResult, ItemStatus
from swapwatch.fusion import Verdict

# Case A. reals 0.1 0.2 0.3 0.4, fakes 0.35 0.5 0.6 0.7 (label 1 = fake).
# AUC: of the 16 (fake, real) pairs only (0.35, 0.4) is out of order: 15/16.
# Thresholds (attack when score >= t) and error rates:
#   t     0.1  0.2  0.3  0.35  0.4  0.5  0.6  0.7  inf
#   APCER 0    0    0    0     1/4  1/4  1/2  3/4  1     (fakes below t)
#   BPCER 1    3/4  1/2  1/4   1/4  0    0    0    0     (reals at or above t)
# EER: APCER = BPCER = 1/4 exactly at t = 0.4.
A_SCORES = [0.1, 0.2, 0.3, 0.4, 0.35, 0.5, 0.6, 0.7]
A_LABELS = [0, 0, 0, 0, 1, 1, 1, 1]


def test_auc_by_hand() -> None:
    assert roc_auc(A_SCORES, A_LABELS) == pytest.approx(15 / 16)
    # Perfect, inverted, and label order does not matter.
    assert roc_auc([0.1, 0.2, 0.8, 0.9], [0, 0, 1, 1]) == 1.0
    assert roc_auc([0.1, 0.2, 0.8, 0.9], [1, 1, 0, 0]) == 0.0
    assert roc_auc([0.9, 0.1, 0.8, 0.2], [True, False, True, False]) == 1.0


def test_ties_count_one_half() -> None:
    # reals 0.1 0.5, fakes 0.5 0.9: pairs (0.5,0.1)=1 (0.5,0.5)=1/2 (0.9,0.1)=1 (0.9,0.5)=1
    assert roc_auc([0.1, 0.5, 0.5, 0.9], [0, 0, 1, 1]) == pytest.approx(3.5 / 4)
    # Everything tied: chance.
    assert roc_auc([0.5] * 4, [0, 0, 1, 1]) == 0.5


@pytest.mark.parametrize(
    ("threshold", "expected_apcer", "expected_bpcer"),
    [
        (0.5, 1 / 4, 0.0),  # 0.35 is a fake let through; no real reaches 0.5
        (0.35, 0.0, 1 / 4),  # 0.35 itself is an attack (>=); the real 0.4 is flagged
        (0.4, 1 / 4, 1 / 4),
        (0.0, 0.0, 1.0),
        (1.0, 1.0, 0.0),
    ],
)
def test_apcer_bpcer_at_a_threshold(
    threshold: float, expected_apcer: float, expected_bpcer: float
) -> None:
    assert error_rates(A_SCORES, A_LABELS, threshold) == pytest.approx(
        (expected_apcer, expected_bpcer)
    )
    assert apcer(A_SCORES, A_LABELS, threshold) == pytest.approx(expected_apcer)
    assert bpcer(A_SCORES, A_LABELS, threshold) == pytest.approx(expected_bpcer)


def test_errors_of_given_decisions() -> None:
    # fakes: one of three missed; reals: one of two flagged.
    attack = [True, True, False, True, False]
    labels = [1, 1, 1, 0, 0]
    assert classification_errors(attack, labels) == pytest.approx((1 / 3, 1 / 2))


def test_eer_exact_crossing() -> None:
    eer = equal_error_rate(A_SCORES, A_LABELS)
    assert eer is not None
    assert eer.apcer == eer.bpcer == pytest.approx(0.25)
    assert eer.threshold == pytest.approx(0.4)


@pytest.mark.parametrize(
    ("scores", "labels", "rate", "threshold"),
    [
        # reals 0.1 0.2 0.3, fakes 0.25 0.4:
        #   t=0.25: APCER 0, BPCER 1/3 (gap -1/3); t=0.3: APCER 1/2, BPCER 1/3 (gap +1/6).
        #   w = (1/3) / (1/2) = 2/3 of the way: EER = 0 + 2/3 * 1/2 = 1/3, t = 0.25 + 2/3 * 0.05.
        ([0.1, 0.2, 0.3, 0.25, 0.4], [0, 0, 0, 1, 1], 1 / 3, 0.25 + 2 / 3 * 0.05),
        # reals 0.1 0.5, fakes 0.5 0.9 (a tie):
        #   t=0.5: APCER 0, BPCER 1/2 (gap -1/2); t=0.9: APCER 1/2, BPCER 0 (gap +1/2).
        #   Half way: EER 1/4 at t 0.7.
        ([0.1, 0.5, 0.5, 0.9], [0, 0, 1, 1], 0.25, 0.7),
        # All tied: from (0, 1) at t=0.5 to (1, 0) at inf: EER 1/2, threshold stays 0.5.
        ([0.5] * 4, [0, 0, 1, 1], 0.5, 0.5),
        # Separated: APCER 0 and BPCER 0 at t=0.8.
        ([0.1, 0.2, 0.8, 0.9], [0, 0, 1, 1], 0.0, 0.8),
        # Inverted: at t=0.8 every fake passes and every real is flagged.
        ([0.8, 0.9, 0.1, 0.2], [0, 0, 1, 1], 1.0, 0.8),
    ],
)
def test_eer_interpolates_between_operating_points(
    scores: list[float], labels: list[int], rate: float, threshold: float
) -> None:
    eer = equal_error_rate(scores, labels)
    assert eer is not None
    assert eer.apcer == pytest.approx(rate) and eer.bpcer == pytest.approx(rate)
    assert eer.threshold == pytest.approx(threshold)


@pytest.mark.parametrize(
    ("target", "threshold", "expected_apcer", "expected_bpcer"),
    [
        # With 4 fakes, APCER <= 1%, 5% or 10% all mean no fake may pass: the highest such
        # threshold is 0.35, where the real 0.4 is flagged.
        (0.01, 0.35, 0.0, 0.25),
        (0.05, 0.35, 0.0, 0.25),
        (0.10, 0.35, 0.0, 0.25),
        # One fake may pass: t = 0.5 flags no real.
        (0.25, 0.5, 0.25, 0.0),
    ],
)
def test_bpcer_at_fixed_apcer(
    target: float, threshold: float, expected_apcer: float, expected_bpcer: float
) -> None:
    point = bpcer_at_apcer(A_SCORES, A_LABELS, target)
    assert point is not None
    assert (point.threshold, point.apcer, point.bpcer) == pytest.approx(
        (threshold, expected_apcer, expected_bpcer)
    )


@pytest.mark.parametrize(
    ("target", "threshold", "expected_apcer", "expected_bpcer"),
    [
        # No real may be flagged: the lowest such threshold is just above 0.4, i.e. 0.5,
        # which lets the fake 0.35 through.
        (0.01, 0.5, 0.25, 0.0),
        (0.05, 0.5, 0.25, 0.0),
        # One real may be flagged: t = 0.35 catches every fake.
        (0.25, 0.35, 0.0, 0.25),
    ],
)
def test_apcer_at_fixed_bpcer(
    target: float, threshold: float, expected_apcer: float, expected_bpcer: float
) -> None:
    point = apcer_at_bpcer(A_SCORES, A_LABELS, target)
    assert point is not None
    assert (point.threshold, point.apcer, point.bpcer) == pytest.approx(
        (threshold, expected_apcer, expected_bpcer)
    )


def test_operating_points_of_an_inverted_detector() -> None:
    # Fakes 0.1 0.2 all below reals 0.8 0.9. No fake may pass: only at t = 0.1, flagging
    # every real. No real may be flagged: only when nothing is an attack (t = inf).
    scores, labels = [0.8, 0.9, 0.1, 0.2], [0, 0, 1, 1]
    point = bpcer_at_apcer(scores, labels, 0.01)
    assert point is not None and (point.threshold, point.apcer, point.bpcer) == (0.1, 0.0, 1.0)
    point = apcer_at_bpcer(scores, labels, 0.01)
    assert point is not None and (point.threshold, point.apcer, point.bpcer) == (math.inf, 1.0, 0.0)


def test_det_curve_endpoints() -> None:
    curve = DetCurve.build(A_SCORES, A_LABELS)
    assert curve is not None
    assert list(curve.thresholds[:-1]) == sorted(A_SCORES) and curve.thresholds[-1] == math.inf
    assert (curve.apcer[0], curve.bpcer[0]) == (0.0, 1.0)
    assert (curve.apcer[-1], curve.bpcer[-1]) == (1.0, 0.0)
    assert curve.attacks == 4 and curve.bona_fide == 4


def test_one_class_gives_none() -> None:
    reals_only = ([0.1, 0.7], [0, 0])
    assert roc_auc(*reals_only) is None
    assert equal_error_rate(*reals_only) is None
    assert bpcer_at_apcer(*reals_only, 0.05) is None
    assert apcer(*reals_only, 0.5) is None  # no attack presented
    assert bpcer(*reals_only, 0.5) == 0.5  # still defined
    assert roc_auc([], []) is None


@pytest.mark.parametrize(
    ("scores", "labels", "message"),
    [
        ([0.1, 0.2], [0], "one length"),
        ([0.1, float("nan")], [0, 1], "finite"),
        ([0.1, 0.2], [0, 2], "0 (real) or 1 (fake)"),
        ([[0.1], [0.2]], [0, 1], "1-D"),
    ],
)
def test_malformed_input_raises(scores: list[float], labels: list[int], message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        roc_auc(scores, labels)


# Bootstrap ------------------------------------------------------------------------------


def test_resamples_draw_whole_groups() -> None:
    groups = ["a", "a", "b", "c", "c", "c"]
    for idx in group_resamples(groups, resamples=50, seed=3):
        assert len(idx) >= 3  # three groups drawn, each at least one sample
        counts = np.bincount(idx, minlength=6)
        assert counts[0] == counts[1] and counts[3] == counts[4] == counts[5]
        assert counts[[0, 2, 3]].sum() == 3  # three draws


def test_bootstrap_is_seeded_and_brackets_the_estimate() -> None:
    rng = np.random.default_rng(7)
    groups = [f"g{i // 5}" for i in range(100)]  # 20 groups of 5
    labels = np.array([(i // 5) % 2 for i in range(100)])
    scores = labels * 1.0 + rng.normal(0, 0.8, 100)

    def auc(idx: np.ndarray) -> float | None:
        return roc_auc(scores[idx], labels[idx])

    first = group_bootstrap(auc, groups, resamples=300, seed=1)
    again = group_bootstrap(auc, groups, resamples=300, seed=1)
    other = group_bootstrap(auc, groups, resamples=300, seed=2)
    assert first is not None and other is not None
    assert first == again and first != other
    point = roc_auc(scores, labels)
    assert point is not None and first.low < point < first.high
    assert first.low > 0.5 and first.high <= 1.0
    assert first.resamples == 300  # every resample drew both classes here


def test_resamples_without_a_class_are_left_out() -> None:
    # One fake group among four: some resamples draw no fake, where AUC is undefined.
    groups = ["f", "r1", "r2", "r3"]
    scores, labels = np.array([0.9, 0.1, 0.2, 0.3]), np.array([1, 0, 0, 0])
    interval = group_bootstrap(
        lambda idx: roc_auc(scores[idx], labels[idx]), groups, resamples=200, seed=0
    )
    assert interval is not None
    assert 0 < interval.resamples < 200  # (3/4)^4 of resamples draw no fake
    assert interval.low == interval.high == 1.0


def test_percentile_interval() -> None:
    values = [float(v) for v in range(101)]  # 0..100
    interval = percentile_interval([*values, None], confidence=0.9)
    assert interval is not None
    assert (interval.low, interval.high) == pytest.approx((5.0, 95.0))
    assert interval.resamples == 101
    assert percentile_interval([None, None]) is None
    with pytest.raises(ValueError):
        percentile_interval(values, confidence=1.5)


# Report ---------------------------------------------------------------------------------


def result(
    name: str,
    label: Label,
    family: str,
    group: str,
    score: float | None,
    frames: list[float],
    alarms: int = 0,
    seconds: float = 60.0,
    status: ItemStatus = ItemStatus.SCORED,
) -> ItemResult:
    verdict = None if score is None else Verdict.FAKE if score >= 0.5 or alarms else Verdict.REAL
    return ItemResult(
        item=MediaItem(Path(f"/media/{name}.mp4"), label, group, family),
        status=status,
        score=score,
        verdict=verdict,
        alarmed=alarms > 0,
        alarms_raised=alarms,
        frame_logits=np.asarray(frames, np.float64),
        media_seconds=seconds,
        elapsed=0.1,
    )


def hand_results() -> list[ItemResult]:
    real, fake = Label.REAL, Label.FAKE
    return [
        # family "swap": pairs in groups p1, p2. Video scores: reals 0.2, 0.6; fakes 0.7, 0.9.
        result("p1_left", real, "swap", "p1", 0.2, [-2.0, -1.0]),
        result("p1_right", fake, "swap", "p1", 0.7, [1.0, 2.0]),
        result("p2_left", real, "swap", "p2", 0.6, [0.5, -0.5], alarms=1),
        result("p2_right", fake, "swap", "p2", 0.9, [3.0]),
        # family "camera": reals only. One with no face, one inconclusive with frames.
        result("c1", real, "camera", "c1", 0.1, [-3.0, -3.0, -3.0], seconds=1800.0),
        result("c2", real, "camera", "c2", None, [], status=ItemStatus.NO_FACE),
        result("c3", real, "camera", "c3", None, [0.2], alarms=0, status=ItemStatus.INCONCLUSIVE),
    ]


def test_summary_by_hand() -> None:
    config = ReportConfig(resamples=0)
    pooled = summarise(hand_results(), config)
    video, frame = pooled["video"], pooled["frame"]
    # Video scores: reals 0.2, 0.6, 0.1 (c1); fakes 0.7, 0.9 -> every fake above every real.
    assert video["samples"] == {"real": 3, "fake": 2}
    assert video["auc"] == {"value": 1.0, "ci": None}
    # Verdicts: p2_left is fake (0.6 and an alarm): BPCER 1/3; no fake missed.
    assert video["at_threshold"]["bpcer"]["value"] == pytest.approx(1 / 3, abs=1e-4)
    assert video["at_threshold"]["apcer"]["value"] == 0.0
    # Frames: reals -2 -1 .5 -.5 -3 -3 -3 .2 (8), fakes 1 2 3 (3). Pairs out of order: none
    # (largest real 0.5 < smallest fake 1), so AUC 1; at p=0.5 (logit 0) reals 0.5 and 0.2
    # are flagged: BPCER 2/8.
    assert frame["samples"] == {"real": 8, "fake": 3}
    assert frame["auc"]["value"] == 1.0
    assert frame["at_threshold"]["bpcer"]["value"] == 0.25
    # The EER threshold is reported as a probability: the crossing is at logit 1.
    assert frame["eer"]["value"] == 0.0
    assert frame["eer"]["threshold"] == pytest.approx(1 / (1 + math.exp(-1.0)), abs=1e-5)
    # Alarms on real videos: 1 raised in 60+60+1800+60+60 s (c2 with no face still counts
    # as monitored time).
    alarms = pooled["alarms"]
    assert alarms["raised_on_real"] == 1 and alarms["real_videos"] == 5
    assert alarms["per_hour"]["value"] == pytest.approx(1 / (2040 / 3600), abs=1e-3)
    assert pooled["items"]["no_face"] == 1 and pooled["items"]["inconclusive"] == 1


def test_real_only_family_has_bpcer_but_no_auc() -> None:
    camera = [r for r in hand_results() if r.item.family == "camera"]
    summary = summarise(camera, ReportConfig(resamples=50))
    assert summary["video"]["auc"] == {"value": None, "ci": None}
    assert summary["video"]["eer"]["value"] is None
    assert summary["video"]["at_threshold"]["apcer"]["value"] is None
    assert summary["video"]["at_threshold"]["bpcer"]["value"] == 0.0
    assert summary["alarms"]["raised_on_real"] == 0 and summary["alarms"]["real_videos"] == 3


def test_report_json_and_text() -> None:
    run = EvalRun(
        results=hand_results(),
        model=ModelInfo("hand", 224, (0.5,) * 3, (0.5,) * 3),
        config=EvalConfig(),
        elapsed=1.0,
    )
    report = build_report(run, ReportConfig(resamples=100, seed=5), {"list": "hand.csv"})
    assert set(report["families"]) == {"camera", "swap"}
    assert report["counts"]["total"] == 7 and report["counts"]["scored"] == 5
    assert len(report["items"]) == 7
    auc = report["pooled"]["video"]["auc"]
    assert auc["value"] == 1.0 and auc["ci"] == [1.0, 1.0]
    ops = [op["name"] for op in report["pooled"]["video"]["operating_points"]]
    assert ops == [
        "BPCER@APCER=1%",
        "BPCER@APCER=5%",
        "BPCER@APCER=10%",
        "APCER@BPCER=1%",
        "APCER@BPCER=5%",
    ]
    assert report == build_report(run, ReportConfig(resamples=100, seed=5), {"list": "hand.csv"})
    text = render_text(report)
    assert "family camera" in text and "family swap" in text and "pooled" in text
    assert "false alarms: 1 raised" in text


def test_stratified_auc_sees_through_a_confound_the_plain_auc_rewards() -> None:
    """Fakes softer than reals: a score that is only softness has a perfect plain AUC and a
    chance one within sharpness bins; a score that reads the face keeps its AUC in both."""
    rng = np.random.default_rng(0)
    sharp = np.concatenate([rng.uniform(5, 15, 200), rng.uniform(10, 20, 200)])
    fake = np.array([True] * 200 + [False] * 200)
    softness = -sharp
    assert roc_auc(softness, fake) > 0.85
    within, pairs = stratified_auc(softness, fake, sharp, 5)
    assert pairs > 0 and within is not None and within < 0.7
    face = fake + rng.normal(0, 0.3, 400)
    face_within, _ = stratified_auc(face, fake, sharp, 5)
    assert face_within is not None and face_within > 0.95
    # Classes that never share a bin give no pair to count.
    assert stratified_auc([0.0, 1.0], [False, True], [0.0, 1.0], 2) == (None, 0)
