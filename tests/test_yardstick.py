"""The yardstick's metrics and verdict counts, on hand-made outcomes."""

from __future__ import annotations

import pytest

from swapwatch.evaluation.yardstick import Judged, format_table, summary, yardstick


def item(
    name: str, fake: bool, score: float | None, verdict: str | None, family: str = "f"
) -> Judged:
    kind = ("talking-head" if family.startswith("talking") else "live-swap") if fake else "real"
    return Judged(name, fake, family, kind, group=name, score=score, verdict=verdict)


def test_verdict_counts_and_auc_of_decided_items() -> None:
    items = [
        item("r1", False, 0.1, "real"),
        item("r2", False, 0.6, "fake"),  # a real called fake
        item("r3", False, 0.2, "real"),
        item("f1", True, 0.9, "fake"),
        item("f2", True, 0.3, "real"),  # a fake that passes
    ]
    s = summary(items)
    assert (s["reals"], s["fakes"]) == (3, 2)
    assert s["reals_called_fake"] == 1 and s["fakes_caught"] == 1
    assert s["real_called_fake_rate"] == pytest.approx(1 / 3, abs=1e-4)
    # f1 beats all 3 reals, f2 beats 2 of 3: 5 of 6 orderings.
    assert s["auc"] == pytest.approx(5 / 6, abs=1e-4)
    assert s["auc"] == s["auc_decided_only"]


def test_an_item_without_verdict_counts_as_an_error_in_the_ranking() -> None:
    decided = [item("r1", False, 0.1, "real"), item("f1", True, 0.9, "fake")]
    # Abstaining on a hard fake must not help: it ranks below every real.
    abstained = [*decided, item("f2", True, None, None)]
    s = summary(abstained)
    assert s["auc"] == pytest.approx(0.5)
    assert s["auc_decided_only"] == pytest.approx(1.0)
    assert s["fakes_without_verdict"] == 1 and s["fakes_caught"] == 1
    # A real without a verdict ranks above every fake, even with a low score kept.
    real_inconclusive = [*decided, item("r2", False, 0.05, None)]
    assert summary(real_inconclusive)["auc"] == pytest.approx(0.5)
    assert summary(real_inconclusive)["reals_without_verdict"] == 1


def test_bpcer_at_apcer_picks_the_threshold_letting_at_most_that_share_of_fakes_pass() -> None:
    # 20 fakes at 0.50..0.69, 10 reals at 0.0..0.45 plus one real at 0.6.
    fakes = [item(f"f{i}", True, 0.50 + i / 100, "fake") for i in range(20)]
    reals = [item(f"r{i}", False, i / 20, "real") for i in range(10)]
    reals.append(item("rhigh", False, 0.605, "fake"))
    s = summary([*fakes, *reals])
    # APCER 5 % lets one fake of 20 pass: threshold 0.51, above which 0.605 is still "fake".
    assert s["bpcer_at_apcer_5"] == {
        "bpcer": pytest.approx(1 / 11, abs=1e-4),
        "apcer": 0.05,
        "threshold": 0.51,
    }
    # APCER 10 % lets 2 pass (threshold 0.52): the high real is still above it.
    assert s["bpcer_at_apcer_10"]["bpcer"] == pytest.approx(1 / 11, abs=1e-4)
    perfect = summary([*fakes, *reals[:-1]])
    assert perfect["bpcer_at_apcer_5"]["bpcer"] == 0.0


def test_families_and_kinds_are_scored_against_all_of_the_other_class() -> None:
    items = [
        item("r1", False, 0.1, "real", family="webcam"),
        item("r2", False, 0.7, "fake", family="photos"),
        item("s1", True, 0.9, "fake", family="live"),
        item("t1", True, 0.4, "real", family="talking-x"),
    ]
    table = yardstick(items)
    live = table["families"]["live (fake)"]
    # Ranked against both reals; its counts are its own: one fake, caught, no real.
    assert (live["reals"], live["fakes"], live["ranked_against"]) == (0, 1, 2)
    assert live["auc"] == 1.0 and live["reals_called_fake"] == 0 and live["fakes_caught"] == 1
    talking = table["kinds"]["talking-head"]
    assert talking["auc"] == pytest.approx(0.5)  # above r1, below r2
    photos = table["families"]["photos (real)"]
    assert (photos["reals"], photos["fakes"]) == (1, 0) and photos["reals_called_fake"] == 1
    assert photos["auc"] == pytest.approx(0.5)  # r2 (0.7) ranks above t1, below s1
    assert "real" not in table["kinds"]  # the reals' row is the pooled one
    assert table["pooled"]["auc"] == pytest.approx(3 / 4)
    assert "pooled" in format_table(table, "t")


def test_a_threshold_falling_on_an_item_without_verdict_is_not_reported() -> None:
    # 2 of 3 fakes have no verdict: APCER 5 % is met only by calling everything fake.
    items = [
        item("r1", False, 0.2, "real"),
        item("f1", True, 0.9, "fake"),
        item("f2", True, None, None),
        item("f3", True, None, None),
    ]
    point = summary(items)["bpcer_at_apcer_5"]
    assert point["bpcer"] == 1.0 and point["threshold"] is None


def test_reasons_for_missing_verdicts_are_listed() -> None:
    items = [
        item("r1", False, 0.1, "real"),
        Judged("f1", True, "f", "live-swap", "g", None, None, "extreme_pose"),
    ]
    assert yardstick(items)["without_verdict"] == {"live-swap: extreme_pose": 1}


def test_a_kind_is_also_ranked_against_the_reals_of_its_own_medium() -> None:
    """Talking-head recordings that beat the real recordings but lose to real photos: pooled at
    chance, against the recordings they would be judged beside, every time."""
    items = [
        item("webcam.mp4", False, 0.1, "real"),
        item("studio.mp4", False, 0.2, "real"),
        item("photo1.jpg", False, 0.8, "fake"),
        item("photo2.jpg", False, 0.9, "fake"),
        item("talk.mp4", True, 0.5, "fake", family="talking-x"),
        item("still.png", True, 0.85, "fake", family="talking-y"),
    ]
    talking = yardstick(items)["kinds"]["talking-head"]
    assert talking["auc"] == pytest.approx(5 / 8)  # talk beats 2 of 4 reals, still 3 of 4
    # talk.mp4 beats both real recordings; still.png beats one of the two real photos.
    assert talking["auc_same_medium"] == pytest.approx((2 + 1) / 4)
