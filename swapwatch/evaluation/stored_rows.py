"""Per-item yardstick results as a results file keeps them, and each item's outcome over its
deliveries read back from them: what the operating point is chosen on, during a run and again
later (`benchmarks/generalization.py --rechoose`) alike."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from swapwatch.datasets.lists import IMAGE_SUFFIXES
from swapwatch.evaluation.verdict_point import Delivery, Outcome

ROW_FIELDS = ("name", "label", "family", "group", "score", "verdict", "why", "peak_cusum")
# A recording's face tracks ({"t": seconds, "logit": calibrated logits} each), where the run
# kept them; results written before 2026-12-06 (session 20) have no such field.
TRACKS_FIELD = "tracks"
DECIDED = ("fake", "real")  # an item without one (inconclusive, no face, error) has no score


def detector_results(spec: str, default: str | None = None) -> tuple[str, dict[str, Any]]:
    """`RESULTS.json[:DETECTOR]` -> (detector name, its entry in that results file): the named
    one, else `default`, else the file's first. ValueError, saying what the file holds, when
    it cannot be read or has no such detector."""
    path, _, named = spec.partition(":")
    try:
        detectors = json.loads(Path(path).read_text())["detectors"]
    except (OSError, ValueError, KeyError) as exc:
        raise ValueError(f"cannot read detector results from {path}: {exc}") from exc
    name = named or default or next(iter(detectors), "")
    if name not in detectors:
        raise ValueError(f"no detector {name!r} in {path} (it has {sorted(detectors)})")
    return name, dict(detectors[name])


def is_picture(name: str) -> bool:
    """Whether an item, named as the yardstick names it (`path#panel`), is a still picture."""
    return name.split("#")[0].lower().endswith(tuple(IMAGE_SUFFIXES))


def compact(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """One delivery condition's rows as a results file keeps them: a row (ROW_FIELDS, then the
    face tracks where the row has them) for every fake and every real recording; for the many
    real pictures their family, score, verdict and reason only, in scoring order, which is what
    the tables are made of."""
    kept: list[list[Any]] = []
    pictures: dict[str, list[list[Any]]] = {}
    for row in rows:
        if row["label"] == "real" and is_picture(row["name"]):
            pictures.setdefault(row["family"], []).append(
                [row["score"], row["verdict"], row["why"]]
            )
        else:
            kept.append([*(row[f] for f in ROW_FIELDS), row.get(TRACKS_FIELD)])
    return {
        "fields": [*ROW_FIELDS, TRACKS_FIELD],
        "rows": kept,
        "real_picture_fields": ["score", "verdict", "why"],
        "real_pictures": pictures,
    }


def stored_outcomes(conditions: Sequence[dict[str, Any]]) -> list[Outcome]:
    """Each item over its deliveries, from the compacted rows of every condition it was
    delivered in. Real pictures are matched by family and position (every condition scores
    the items in the same order); conditions that kept different numbers of a family's
    pictures cannot be matched and are refused. Scores are read as stored (4 decimals, peaks
    3), so an item within 1e-4 of a threshold may count differently than it did in the run."""
    counts = [{f: len(p) for f, p in stored["real_pictures"].items()} for stored in conditions]
    if any(c != counts[0] for c in counts):
        raise ValueError("the conditions kept different numbers of real pictures per family")
    rows: dict[tuple[str, str], list[tuple[dict[str, Any], float | None]]] = {}
    pictures: dict[tuple[str, int], list[float | None]] = {}
    for stored in conditions:
        for values in stored["rows"]:
            row = dict(zip(stored["fields"], values, strict=True))
            score = row["score"] if row["verdict"] in DECIDED else None
            rows.setdefault((row["name"], row["label"]), []).append((row, score))
        for family, found in stored["real_pictures"].items():
            for i, (score, verdict, _why) in enumerate(found):
                pictures.setdefault((family, i), []).append(score if verdict in DECIDED else None)
    outcomes = [
        Outcome(
            label == "fake",
            tuple(Delivery(score, row["peak_cusum"]) for row, score in deliveries),
            picture=is_picture(name),
        )
        for (name, label), deliveries in rows.items()
    ]
    outcomes += [
        Outcome(False, tuple(Delivery(score, 0.0) for score in scores), picture=True)
        for scores in pictures.values()
    ]
    return outcomes
