"""Does a detector read softness as fake? Each validation item's sharpness against its score in
a yardstick run, and how far sharpness alone separates the fakes of the part from its reals.

    .venv/bin/python benchmarks/sharpness_shortcut.py RESULTS.json[:DETECTOR] [...] [--out FILE]

An item's sharpness is the median, over up to 40 of its cached training crops (the crops every
training run and `swapwatch train` extract, `swapwatch.datasets.crops`; none is extracted here),
of the quality gate's measure on the inference crop (`swapwatch.faces.quality.exposure`). It is
read on the source, not on the delivered copy the detector scored: a ranking of items by
softness, not the sharpness the gate saw. Items the training gate kept no face of (the blurred
photos among them) have no cached crop and are left out, counted.

Per results file, detector and condition, for the real items of each medium: Spearman's rank
correlation of score with sharpness (negative: the softer a real face, the nearer an alarm) with
a 95 % bootstrap interval over items, and the median score of the softest and the sharpest
quarter. Once for the part: the AUC of softness alone (the negated sharpness) for each fake kind
against the reals of its medium, the figure a shortcut could reach without reading a face.

And per detector and condition, for each fake kind against the reals of its medium, the
*sharpness-stratified AUC* (written 2026-12-07, before detector-v22-allmatch's figures existed;
it decides nothing): the items with a score and a sharpness cut into STRATA equal-count bins of
sharpness, and the share of (real, fake) pairs within a bin that the score orders rightly (ties
half), over all such pairs. The part's fakes are softer than its reals, so its pooled AUC
rewards a model that reads softness; within a bin softness can no longer order a pair, and what
is left is what the model reads of the face. Beside it, the plain AUC on the same items.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
from scipy.stats import spearmanr

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data"
RESULTS = REPO / "benchmarks" / "results"

from machine import write_results  # noqa: E402

from swapwatch.datasets.crops import CropCache, centre_window  # noqa: E402
from swapwatch.datasets.lists import MediaItem, read_list  # noqa: E402
from swapwatch.datasets.splits import (  # noqa: E402
    FakeKind,
    Part,
    item_kind,
    leave_one_kind_out,
    split,
)
from swapwatch.evaluation.metrics import roc_auc, stratified_auc  # noqa: E402
from swapwatch.evaluation.stored_rows import is_picture  # noqa: E402
from swapwatch.faces.quality import exposure  # noqa: E402

CROPS_PER_ITEM = 40
STRATA = 5
RESAMPLES = 2000
BOOTSTRAP_SEED = 20261207


def result_name(item: MediaItem) -> str:
    """The item's name as generalization.py writes it in its rows."""
    path = item.path.relative_to(DATA) if item.path.is_relative_to(DATA) else item.path
    panel = f"#{';'.join(f'{c:g}' for c in item.crop)}" if item.crop else ""
    return f"{path}{panel}"


def item_sharpness(item: MediaItem, cache: CropCache) -> float | None:
    path = cache.path(item)
    if not path.is_file():
        return None
    with np.load(path) as data:
        crops = data["crops"]
    if not len(crops):
        return None
    chosen = np.linspace(0, len(crops) - 1, min(len(crops), CROPS_PER_ITEM)).astype(int)
    values = [exposure(np.ascontiguousarray(c))[1] for c in centre_window(crops[chosen])]
    return float(np.median(values))


def rank_correlation(
    score: np.ndarray, sharp: np.ndarray, rng: np.random.Generator
) -> dict[str, Any]:
    rho = float(spearmanr(score, sharp).statistic)
    draws = []
    for _ in range(RESAMPLES):
        pick = rng.integers(0, len(score), len(score))
        value = spearmanr(score[pick], sharp[pick]).statistic
        if np.isfinite(value):
            draws.append(value)
    low, high = np.percentile(draws, [2.5, 97.5])
    order = np.argsort(sharp)
    quarter = max(1, len(order) // 4)
    return {
        "reals": len(score),
        "spearman": round(rho, 3),
        "interval_95": [round(float(low), 3), round(float(high), 3)],
        "median_score_softest_quarter": round(float(np.median(score[order[:quarter]])), 4),
        "median_score_sharpest_quarter": round(float(np.median(score[order[-quarter:]])), 4),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("results", nargs="+", help="generalization.py results, FILE[:DETECTOR]")
    parser.add_argument("--list", type=Path, default=DATA / "manifest.csv")
    parser.add_argument("--cache-dir", type=Path, help="the crop cache (default: training's)")
    parser.add_argument("--out", type=Path, default=RESULTS / "sharpness_shortcut.json")
    args = parser.parse_args()
    listed = read_list(args.list)
    parts = split(listed)
    items = parts[Part.VALIDATION]
    cache = CropCache(args.cache_dir)
    training = training_groups(parts[Part.TRAIN], cache)
    sharpness: dict[str, float] = {}
    kinds: dict[str, str] = {}
    # Results files keep real pictures by family, in scoring order (the part's order), unnamed.
    pictures_in_order: dict[str, list[str]] = {}
    for item in items:
        name = result_name(item)
        if not item.is_fake and is_picture(name):
            pictures_in_order.setdefault(item.family, []).append(name)
        value = item_sharpness(item, cache)
        if value is not None:
            sharpness[name] = value
            kinds[name] = item_kind(item)
    print(f"{len(sharpness)} of {len(items)} validation items have cached crops", file=sys.stderr)
    shortcut = softness_alone(sharpness, kinds)
    for kind, row in shortcut.items():
        print(
            f"softness alone, {kind}: AUC {row['auc']} ({row['fakes']} fakes, {row['reals']} reals)"
        )
    leave_outs = {
        kind.value: leave_out_softness(leave_one_kind_out(listed, kind).score, cache)
        for kind in (FakeKind.LIVE_SWAP, FakeKind.SWAP_STILL, FakeKind.TALKING_HEAD)
    }
    for kind, row in leave_outs.items():
        print(f"softness alone, {kind} leave-out set: {row}")
    detectors: dict[str, Any] = {}
    for spec in args.results:
        path, _, wanted = spec.partition(":")
        document = json.loads(Path(path).read_text())
        if document.get("scored") != Part.VALIDATION.value:
            print(f"{path} scored the {document.get('scored')} part, not validation")
            return 2
        for name, entry in document["detectors"].items():
            if wanted and name != wanted:
                continue
            rng = np.random.default_rng(BOOTSTRAP_SEED)  # each detector its own, alike
            detectors[f"{Path(path).name}:{name}"] = figures(
                entry, sharpness, kinds, pictures_in_order, rng, name
            )
    write_results(
        args.out,
        "sharpness_shortcut",
        {
            "items_with_crops": len(sharpness),
            "items": len(items),
            "softness_alone_auc": shortcut,
            "training_groups": training,
            "leave_out_softness_alone_auc": leave_outs,
            "detectors": detectors,
        },
    )
    return 0


def training_groups(items: list[MediaItem], cache: CropCache) -> list[dict[str, Any]]:
    """For each training group with recorded fakes and reals: the median sharpness of each
    class's crops, and the fakes' over the reals', the contrast a recipe could learn from."""
    values: dict[str, dict[bool, list[float]]] = {}
    kinds: dict[str, str] = {}
    for item in items:
        value = item_sharpness(item, cache)
        if value is None:
            continue
        values.setdefault(item.group, {False: [], True: []})[item.is_fake].append(value)
        if item.is_fake:
            kinds[item.group] = item_kind(item)
    rows = []
    for group, found in sorted(values.items()):
        if found[False] and found[True]:
            real, fake = float(np.median(found[False])), float(np.median(found[True]))
            rows.append(
                {
                    "kind": kinds[group],
                    "group": group,
                    "real_items": len(found[False]),
                    "fake_items": len(found[True]),
                    "real_sharpness": round(real, 1),
                    "fake_sharpness": round(fake, 1),
                    "fake_over_real": round(fake / real, 2),
                }
            )
    for row in sorted(rows, key=lambda r: (r["kind"], r["fake_over_real"])):
        print(
            f"training {row['kind']} {row['group']}: fakes {row['fake_sharpness']} over reals "
            f"{row['real_sharpness']} = {row['fake_over_real']}"
        )
    return rows


def leave_out_softness(score: list[MediaItem], cache: CropCache) -> dict[str, Any]:
    """The AUC of softness alone for a leave-one-kind-out score set's fakes against its real
    recordings and its real pictures apart."""
    fakes: list[float] = []
    reals: dict[bool, list[float]] = {True: [], False: []}
    for item in score:
        value = item_sharpness(item, cache)
        if value is None:
            continue
        if item.is_fake:
            fakes.append(-value)
        else:
            reals[is_picture(result_name(item))].append(-value)
    out: dict[str, Any] = {"fakes": len(fakes)}
    for medium, pictures in (("recordings", False), ("pictures", True)):
        scores = np.array(reals[pictures] + fakes)
        labels = np.array([False] * len(reals[pictures]) + [True] * len(fakes))
        out[f"against_real_{medium}"] = {
            "reals": len(reals[pictures]),
            "auc": _rounded(roc_auc(scores, labels)),
        }
    return out


def kind_against_reals(kinds: dict[str, str], kind: str) -> tuple[list[str], list[str], bool]:
    """(the fakes of a kind, the reals of its medium, whether that is pictures): a kind whose
    items are mostly pictures is set against real pictures, otherwise real recordings."""
    fakes = [n for n, k in kinds.items() if k == kind]
    pictures = sum(is_picture(n) for n in fakes) > len(fakes) / 2
    reals = [n for n, k in kinds.items() if k == "real" and is_picture(n) == pictures]
    return fakes, reals, pictures


def softness_alone(sharpness: dict[str, float], kinds: dict[str, str]) -> dict[str, Any]:
    """The AUC of the negated sharpness for each fake kind against the reals of its medium."""
    out: dict[str, Any] = {}
    for kind in sorted({k for k in kinds.values() if k != "real"}):
        fakes, reals, pictures = kind_against_reals(kinds, kind)
        scores = np.array([-sharpness[n] for n in reals + fakes])
        labels = np.array([False] * len(reals) + [True] * len(fakes))
        out[kind] = {
            "medium": "pictures" if pictures else "recordings",
            "fakes": len(fakes),
            "reals": len(reals),
            "auc": _rounded(roc_auc(scores, labels)),
        }
    return out


def named_rows(
    stored: dict[str, Any], pictures_in_order: dict[str, list[str]]
) -> list[dict[str, Any]]:
    """A condition's rows, real pictures named again by family and position; a family whose
    count differs from the part's (a delivery failed) is left out, said on stderr."""
    fields = stored["fields"]
    rows = [dict(zip(fields, row, strict=True)) for row in stored["rows"]]
    for family, found in stored.get("real_pictures", {}).items():
        names = pictures_in_order.get(family, [])
        # A failed delivery's row goes to the end of its family (generalization.py), which
        # would shift every picture after it onto its neighbour's name.
        failed = any(str(why or "").startswith("error:") for _, _, why in found)
        if len(names) != len(found) or failed:
            print(
                f"  {family}: {len(found)} stored, {len(names)} in the part"
                f"{', a delivery failed' if failed else ''}: left out",
                file=sys.stderr,
            )
            continue
        for name, (score, verdict, why) in zip(names, found, strict=True):
            rows.append(
                {"name": name, "label": "real", "score": score, "verdict": verdict, "why": why}
            )
    return rows


def figures(
    entry: dict[str, Any],
    sharpness: dict[str, float],
    kinds: dict[str, str],
    pictures_in_order: dict[str, list[str]],
    rng: np.random.Generator,
    name: str,
) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for condition, content in entry["conditions"].items():
        if not isinstance(content.get("items"), dict):
            print(f"{name} {condition}: the results file keeps no per-item rows (older format)")
            continue
        rows = named_rows(content["items"], pictures_in_order)
        for medium, pictures in (("pictures", True), ("recordings", False)):
            chosen = [
                r
                for r in rows
                if r["label"] == "real"
                and r["score"] is not None
                and r["name"] in sharpness
                and is_picture(r["name"]) == pictures
            ]
            score = np.array([r["score"] for r in chosen], np.float64)
            sharp = np.array([sharpness[r["name"]] for r in chosen], np.float64)
            row = rank_correlation(score, sharp, rng)
            out[f"{condition}, real {medium}"] = row
            print(
                f"{name} {condition} real {medium}: Spearman {row['spearman']} "
                f"{row['interval_95']} over {row['reals']}; median score softest quarter "
                f"{row['median_score_softest_quarter']}, sharpest "
                f"{row['median_score_sharpest_quarter']}"
            )
        for kind in sorted({k for k in kinds.values() if k != "real"}):
            fakes, reals, _ = kind_against_reals(kinds, kind)
            members = set(fakes) | set(reals)
            chosen = [r for r in rows if r["score"] is not None and r["name"] in members]
            score = np.array([r["score"] for r in chosen], np.float64)
            fake = np.array([kinds[r["name"]] == kind for r in chosen])
            within, pairs = stratified_auc(
                score, fake, [sharpness[r["name"]] for r in chosen], STRATA
            )
            stratified = {
                "pairs_within_bins": pairs,
                "auc": _rounded(within),
                "plain_auc": _rounded(roc_auc(score, fake)),
            }
            out[f"{condition}, {kind}: sharpness-stratified"] = stratified
            print(
                f"{name} {condition} {kind}: AUC within sharpness bins {stratified['auc']} "
                f"({pairs} pairs), plain {stratified['plain_auc']}"
            )
    return out


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


if __name__ == "__main__":
    raise SystemExit(main())
