"""The yardstick's rows as a results file keeps them, read back into each item's outcome: the
operating point chosen again from a results file is the one the run chose."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from swapwatch.evaluation.stored_rows import (
    compact,
    detector_results,
    is_picture,
    stored_outcomes,
)
from swapwatch.evaluation.verdict_point import Delivery, Outcome, choose


def row(name: str, label: str, score: float | None, peak: float = 0.0, **kw: Any) -> dict[str, Any]:
    verdict = None if score is None else ("fake" if score >= 0.5 else "real")
    return {
        "name": name,
        "label": label,
        "family": kw.get("family", "real-image" if is_picture(name) else "real-video"),
        "group": kw.get("group", name),
        "score": score,
        "verdict": verdict,
        "why": None if verdict else "no face",
        "peak_cusum": peak,
    }


def test_outcomes_read_back_from_stored_rows_are_the_runs_own() -> None:
    plain = [
        row("a.jpg", "real", 0.2),
        row("b.jpg", "real", 0.6),
        row("c.jpg", "real", None),  # no verdict: never called fake
        row("rec.mp4#0;0;0.5;1", "real", 0.1, 3.0),
        row("rec.mp4#0.5;0;1;1", "fake", 0.9, 80.0, family="live-swap"),
        row("swap.png", "fake", 0.7, family="swap-simswap"),
        row("talk.mp4", "real", 0.3, 12.0),
    ]
    poor = [
        row("a.jpg", "real", 0.25),
        row("b.jpg", "real", 0.4),
        row("c.jpg", "real", 0.3),
        row("rec.mp4#0;0;0.5;1", "real", 0.2, 5.0),
        row("rec.mp4#0.5;0;1;1", "fake", None, 0.0, family="live-swap"),
        row("swap.png", "fake", 0.55, family="swap-simswap"),
        row("talk.mp4", "real", 0.8, 30.0),
    ]
    stored = [compact(plain), compact(poor)]
    # The real pictures are kept as family lists, without names.
    assert all(len(s["real_pictures"]["real-image"]) == 3 for s in stored)
    got = stored_outcomes(stored)
    by_hand = [
        Outcome(False, (Delivery(0.1, 3.0), Delivery(0.2, 5.0))),
        Outcome(True, (Delivery(0.9, 80.0), Delivery(None, 0.0))),
        Outcome(True, (Delivery(0.7, 0.0), Delivery(0.55, 0.0)), picture=True),
        Outcome(False, (Delivery(0.3, 12.0), Delivery(0.8, 30.0))),
        Outcome(False, (Delivery(0.2, 0.0), Delivery(0.25, 0.0)), picture=True),
        Outcome(False, (Delivery(0.6, 0.0), Delivery(0.4, 0.0)), picture=True),
        Outcome(False, (Delivery(None, 0.0), Delivery(0.3, 0.0)), picture=True),
    ]
    assert got == by_hand
    assert choose(got, target=0.5) == choose(by_hand, target=0.5)


def test_conditions_that_kept_different_pictures_cannot_be_matched() -> None:
    plain = [row("a.jpg", "real", 0.2), row("b.jpg", "real", 0.6)]
    poor = [row("a.jpg", "real", 0.25)]  # b.jpg failed to deliver in this condition
    with pytest.raises(ValueError, match="different numbers of real pictures"):
        stored_outcomes([compact(plain), compact(poor)])


def test_a_recordings_face_tracks_are_kept_and_results_without_them_still_read() -> None:
    tracks = [{"t": [0.0, 0.07, 0.13], "logit": [-1.2, 0.4, 2.5]}]
    rows = [
        row("rec.mp4", "fake", 0.9, 40.0, family="live-swap") | {"tracks": tracks},
        row("talk.mp4", "real", 0.3, 2.0),  # a recording whose run kept no track
        row("a.jpg", "real", 0.2),
    ]
    stored = compact(rows)
    kept = [dict(zip(stored["fields"], values, strict=True)) for values in stored["rows"]]
    assert [r["tracks"] for r in kept] == [tracks, None]
    # A file written before the tracks were kept has the old fields and reads the same.
    old = {**stored, "fields": stored["fields"][:-1], "rows": [r[:-1] for r in stored["rows"]]}
    assert stored_outcomes([old]) == stored_outcomes([stored])


def test_a_detectors_results_are_found_by_name_default_or_first(tmp_path: Path) -> None:
    results = tmp_path / "run.json"
    results.write_text(json.dumps({"detectors": {"a": {"x": 1}, "b": {"x": 2}}}))
    assert detector_results(str(results)) == ("a", {"x": 1})
    assert detector_results(f"{results}:b") == ("b", {"x": 2})
    assert detector_results(str(results), default="b") == ("b", {"x": 2})
    with pytest.raises(ValueError, match=r"no detector 'c' .*\['a', 'b'\]"):
        detector_results(str(results), default="c")
    with pytest.raises(ValueError, match="cannot read"):
        detector_results(str(tmp_path / "missing.json"))
