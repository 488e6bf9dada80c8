"""The rules that let a recipe's model replace the shipped one, on hand-made figures."""

from __future__ import annotations

import pytest

from swapwatch.evaluation.recipe_rules import (
    SeedFigures,
    read_rules,
    recordings_auc,
    seed_figures,
    seed_to_ship,
)
from swapwatch.evaluation.stored_rows import ROW_FIELDS


def seed(name: str, pooled: float, called: int = 50, caught: int = 12) -> SeedFigures:
    return SeedFigures(name, (pooled - 0.01, pooled + 0.01), (0.9, 0.9), called, 1000, 16, caught)


def passed(readings: list, rule: str) -> list[bool]:
    return [r.passed for r in readings if r.rule == rule]


def test_a_gain_within_the_seeds_spread_or_from_too_few_seeds_does_not_replace() -> None:
    clear = [seed("s0", 0.80), seed("s1", 0.81), seed("s2", 0.82)]
    assert passed(read_rules(clear, 0.70, (0.6, 0.6), None), "1") == [True]
    # A gain of 0.05 over seeds 0.70-0.80 apart is within the spread.
    wide = [seed("s0", 0.70), seed("s1", 0.75), seed("s2", 0.80)]
    assert passed(read_rules(wide, 0.70, (0.6, 0.6), None), "1") == [False]
    (one,) = [r for r in read_rules(clear[:2], 0.70, (0.6, 0.6), None) if r.rule == "1"]
    assert not one.passed and "needs at least 3 seeds" in one.why


def test_a_cheaper_candidate_is_held_to_its_non_inferiority_margin_instead_of_a_gain() -> None:
    """A 128 px candidate against the shipped 224 px model: rule (1) asks for a seed mean at
    most the margin below it, never a gain over it."""
    close = [seed("s0", 0.820), seed("s1", 0.825), seed("s2", 0.830)]  # mean 0.825
    assert passed(read_rules(close, 0.838, (0.6, 0.6), None), "1") == [False]
    (reading,) = [r for r in read_rules(close, 0.838, (0.6, 0.6), None, 0.02) if r.rule == "1"]
    assert reading.passed and "non-inferiority margin 0.0200" in reading.why
    # 0.03 below the shipped model is outside a 0.02 margin, whatever the spread.
    behind = [seed("s0", 0.807), seed("s1", 0.808), seed("s2", 0.809)]
    assert passed(read_rules(behind, 0.838, (0.6, 0.6), None, 0.02), "1") == [False]
    assert passed(read_rules(close[:2], 0.838, (0.6, 0.6), None, 0.02), "1") == [False]


def test_each_seed_is_held_to_its_reals_called_fake_and_its_recordings_caught() -> None:
    seeds = [seed("s0", 0.8), seed("s1", 0.8, called=101), seed("s2", 0.8, caught=7)]
    readings = read_rules(seeds, 0.7, (0.6, 0.6), None)
    assert passed(readings, "2") == [True, False, True]  # 101 of 1,000 is over 10 %
    assert passed(readings, "4") == [True, True, False]  # 7 of 16 is under half


@pytest.mark.parametrize(
    ("leave_out", "shipped", "verdict", "said"),
    [
        ((0.55, 0.60), None, True, "not under 0.5"),
        ((0.26, 0.30), (0.14, 0.13), True, "passes by that alone"),
        ((0.26, 0.10), (0.14, 0.13), False, "rejected"),  # the poor call alone is worse
        ((0.26, 0.30), None, False, "no shipped figure"),
        (None, None, False, "no talking-head leave-out"),
    ],
)
def test_the_talking_head_leave_out_rejects_below_half_and_below_the_shipped_model(
    leave_out: tuple[float, float] | None,
    shipped: tuple[float, float] | None,
    verdict: bool,
    said: str,
) -> None:
    (reading,) = [
        r for r in read_rules([seed("s0", 0.8)], 0.7, leave_out, shipped) if r.rule == "3"
    ]
    assert reading.passed is verdict and said in reading.why


def test_the_best_seed_whose_file_exists_is_bundled() -> None:
    seeds = [seed("s0", 0.83), seed("s1", 0.81), seed("s2", 0.82)]
    assert seed_to_ship(seeds, set()) == seeds[0]
    assert seed_to_ship(seeds, {"s0"}) == seeds[2]
    assert seed_to_ship(seeds, {"s0", "s1", "s2"}) is None


def rows(*items: tuple[str, str, str, float | None, str | None]) -> dict:
    return {
        "fields": [*ROW_FIELDS, "tracks"],
        "rows": [
            [name, label, family, name, score, verdict, None, 0.0, None]
            for name, label, family, score, verdict in items
        ],
    }


def test_recordings_auc_reads_live_swaps_against_real_recordings_and_abstaining_loses() -> None:
    stored = rows(
        ("a.mp4", "fake", "live-swap-deepfacelive", 0.9, "fake"),
        ("b.mp4", "fake", "live-swap-deepfacelive", 0.2, "real"),
        ("c.mp4", "real", "real-video", 0.3, "real"),
        ("d.mp4", "real", "real-video", 0.1, "real"),
        # Neither a picture nor a talking head counts, however it scored.
        ("e.jpg", "fake", "swap-simswap", 0.0, "real"),
        ("f.mp4", "fake", "talking-head-sadtalker", 0.0, "real"),
    )
    assert recordings_auc(stored) == pytest.approx(0.75)  # a above both reals, b above one
    stored["rows"][0][4:6] = [None, None]  # a swap without a verdict ranks below every real
    assert recordings_auc(stored) == pytest.approx(0.25)


def test_a_run_without_its_operating_points_is_refused() -> None:
    table = {"table": {"pooled": {"auc": 0.8}}, "items": rows()}
    entry = {"conditions": {"plain": table, "poor-call": table}, "operating_point": {}}
    with pytest.raises(ValueError, match="no operating point for each medium"):
        seed_figures("s0", entry)
    with pytest.raises(ValueError, match="no poor-call delivery"):
        seed_figures("s0", {"conditions": {"plain": table}})
