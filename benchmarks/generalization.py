"""The yardstick: each item of held-out groups judged alone, as `scan` judges it, per family,
per kind and pooled, as delivered plainly and over a poor call.

    .venv/bin/python benchmarks/generalization.py [--model FILE.onnx] [--mesonet FILE.h5]
        [--part validation | --leave-out KIND | --part lockbox --open-lockbox]
        [--condition plain --condition poor-call] [--max-seconds 20] [--out FILE.json]

What it scores (swapwatch.datasets.splits):
- `--part validation` (default): the validation groups. Candidates and checkpoints are chosen
  on these, so a figure here is a selection figure, not a test.
- `--leave-out KIND` (live-swap, swap-still, talking-head): every fake of that kind outside the
  lockbox, with the validation reals, for a model trained by `swapwatch train --leave-out KIND`.
- `--part lockbox --open-lockbox`: the lockbox groups, scored once, for the model that ships.
  Each opening is recorded in benchmarks/results/lockbox-ledger.json; a second model is refused
  unless `--reopen-because TEXT` says why, and the ledger keeps the reason.

Every item is cut to its own panel and encoded anew before it is judged
(swapwatch.evaluation.conditions), so no file format, bitrate or container is a cue. Items are
judged by the product's own path (`swapwatch.evaluation.runner`: `scan` for recordings, one face
analysis for pictures) at 15 Hz over the first --max-seconds of each recording. The per-face cost
of the model is measured at the end (batch 1, one thread, median of 200 faces): quote it only
from a run on an otherwise idle machine.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import math
import statistics
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data"
RESULTS = REPO / "benchmarks" / "results"
LEDGER = RESULTS / "lockbox-ledger.json"

from machine import results_text, write_results  # noqa: E402

from swapwatch.datasets.lists import MediaItem, read_list  # noqa: E402
from swapwatch.datasets.splits import (  # noqa: E402
    FakeKind,
    Part,
    item_kind,
    leave_one_kind_out,
    split,
)
from swapwatch.engines import create_engine  # noqa: E402
from swapwatch.engines.base import Engine, detector_logits  # noqa: E402
from swapwatch.errors import SourceError  # noqa: E402
from swapwatch.evaluation.conditions import CONDITIONS, deliver  # noqa: E402
from swapwatch.evaluation.runner import (  # noqa: E402
    EvalConfig,
    ItemResult,
    TrackLogits,
    evaluate,
)
from swapwatch.evaluation.stored_rows import (  # noqa: E402
    compact,
    detector_results,
    is_picture,
    stored_outcomes,
)
from swapwatch.evaluation.verdict_point import (  # noqa: E402
    MIN_OWN_REALS,
    Delivery,
    Outcome,
    called_fake,
    choose,
    peak_cusum,
)
from swapwatch.evaluation.yardstick import Judged, format_table, yardstick  # noqa: E402
from swapwatch.models import DEFAULT_DETECTOR  # noqa: E402

MAX_SECONDS = 20.0  # of each recording: fixed, so that figures compare across runs
RATE = 15.0  # frames analysed per second, as `scan` does by default
COST_FACES = 200
TARGET_REAL_CALLED_FAKE = 0.05  # the operating point: at most this share of reals called fake


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def items_to_score(args: argparse.Namespace, items: list[MediaItem]) -> list[MediaItem]:
    if args.leave_out:
        return leave_one_kind_out(items, FakeKind(args.leave_out)).score
    return split(items)[Part(args.part)]


def check_lockbox(args: argparse.Namespace, models: list[Path]) -> None:
    """The lockbox is opened once, for the model that ships; each opening is recorded."""
    if args.part != Part.LOCKBOX.value:
        return
    if not args.open_lockbox:
        sys.exit(
            "generalization: the lockbox is scored once, for the shipped model: add "
            "--open-lockbox if this is that run"
        )
    ledger = json.loads(LEDGER.read_text()) if LEDGER.is_file() else {"openings": []}
    digests = [sha256(m) for m in models]
    seen = {d for o in ledger["openings"] for d in o["models"]}
    if ledger["openings"] and not set(digests) <= seen and not args.reopen_because:
        sys.exit(
            "generalization: the lockbox was opened before for another model "
            f"({LEDGER}); say why with --reopen-because TEXT"
        )
    ledger["openings"].append(
        {
            "date": time.strftime("%Y-%m-%d"),
            "models": digests,
            "files": [str(m) for m in models],
            "reason": args.reopen_because,
        }
    )
    LEDGER.parent.mkdir(parents=True, exist_ok=True)
    LEDGER.write_text(json.dumps(ledger, indent=2) + "\n")


def judged(result: ItemResult, original: MediaItem) -> Judged:
    verdict = None if result.verdict is None else result.verdict.value
    if verdict == "inconclusive":
        verdict = None
    why = result.why or (result.error and f"error: {result.error}") or result.status.value
    path = original.path.relative_to(DATA) if original.path.is_relative_to(DATA) else original.path
    panel = f"#{';'.join(f'{c:g}' for c in original.crop)}" if original.crop else ""
    return Judged(
        name=f"{path}{panel}",
        fake=original.is_fake,
        family=original.family,
        kind=item_kind(original),
        group=original.group,
        score=result.score,
        verdict=verdict,
        why=None if verdict else why,
    )


def per_face_ms(engine: Engine, crops: Any) -> float:
    for crop in crops[:10]:
        detector_logits(engine, crop[None])
    times = []
    for crop in crops[:COST_FACES]:
        started = time.perf_counter()
        detector_logits(engine, crop[None])
        times.append((time.perf_counter() - started) * 1000)
    return round(statistics.median(times), 3)


def score_condition(
    items: list[MediaItem], factory: Any, condition: str, folder: Path, label: str
) -> tuple[list[Judged], list[dict[str, Any]]]:
    delivered: list[MediaItem] = []
    originals: dict[Path, MediaItem] = {}
    failed: list[Judged] = []
    for i, item in enumerate(items):
        try:
            copy = deliver(item, CONDITIONS[condition], folder, MAX_SECONDS)
        except SourceError as exc:  # an unreadable source is an item without a verdict
            failed.append(
                Judged(
                    item.name,
                    item.is_fake,
                    item.family,
                    item_kind(item),
                    item.group,
                    None,
                    None,
                    f"error: {exc}",
                )
            )
            continue
        delivered.append(copy)
        originals[copy.path] = item
        if i % 200 == 0:
            print(f"  [{label}] delivered {i + 1}/{len(items)}", file=sys.stderr, flush=True)

    def progress(done: int, total: int, result: ItemResult) -> None:
        if done % 100 == 0 or not result.item.is_image:
            score = "n/a" if result.score is None else f"{result.score:.3f}"
            print(
                f"  [{label} {done}/{total}] {originals[result.item.path].name} "
                f"({result.item.label.value}): {score}",
                file=sys.stderr,
                flush=True,
            )

    config = EvalConfig(rate=RATE, max_seconds=MAX_SECONDS)
    run = evaluate(delivered, factory, config, progress)
    out = [judged(r, originals[r.item.path]) for r in run.results] + failed
    decision = config.decision
    peaks = [peak_cusum(r.track_evidence, decision.k, decision.min_frames) for r in run.results]
    peaks += [0.0] * len(failed)
    # A recording's face tracks, each as its scored frames' times and calibrated logits, for
    # cues that read how a score moves from frame to frame (benchmarks/temporal_cues.py).
    traces = [[track_trace(t) for t in r.track_logits if len(t.times) > 1] for r in run.results]
    traces += [[]] * len(failed)
    rows = [
        {
            "name": j.name,
            "label": "fake" if j.fake else "real",
            "family": j.family,
            "group": j.group,
            "score": None if j.score is None else round(j.score, 4),
            "verdict": j.verdict,
            "why": j.why,
            "peak_cusum": round(peak, 3),
            **({"tracks": tracks} if tracks else {}),
        }
        for j, peak, tracks in zip(out, peaks, traces, strict=True)
    ]
    return out, rows


def track_trace(track: TrackLogits) -> dict[str, list[float]]:
    return {
        "t": [round(float(v), 3) for v in track.times],
        "logit": [round(float(v), 3) for v in track.logits],
    }


def rejudged(
    items: list[Judged], rows: list[dict[str, Any]], point: dict[str, Any]
) -> list[Judged]:
    """The items' verdicts at another operating point: recordings at its video threshold and
    CUSUM h, pictures at its picture threshold (a point from before pictures had their own
    judges them at the video threshold, as the model then did)."""
    out = []
    for j, row in zip(items, rows, strict=True):
        if not j.decided:
            out.append(j)
            continue
        if is_picture(j.name):
            # A point from before pictures had their own judged them at the video threshold.
            threshold = point["picture_threshold"] if "pictures" in point else point["threshold"]
            h = math.inf
        else:
            threshold, h = point["threshold"], point["h"]
        if threshold is None:  # no point for this medium: its verdict stands
            out.append(j)
            continue
        delivery = Outcome(j.fake, (Delivery(j.score, row["peak_cusum"]),))
        (fake,) = called_fake(delivery, threshold, math.inf if h is None else h)
        out.append(dataclasses.replace(j, verdict="fake" if fake else "real"))
    return out


def operating_point(
    args: argparse.Namespace,
    name: str,
    entry: dict[str, Any],
    conditions: list[str],
    scored: str,
) -> dict[str, Any] | None:
    """Chosen on the validation part only, every recording counted once over its deliveries;
    other parts are judged at the point their model's validation run chose (--operating-point),
    never at one tuned on themselves."""
    if args.part != Part.VALIDATION.value or args.leave_out:
        if args.operating_point is None or name == "mesonet":  # the baseline carries none
            return None
        chosen = stored_point(args.operating_point, name)
        entry["operating_point"] = {**chosen, "from": args.operating_point}
        return dict(chosen)
    # From the rows as the results file keeps them, so `--rechoose` reads the same outcomes.
    outcomes = stored_outcomes([compact(entry["conditions"][c]["items"]) for c in conditions])
    point = choose(outcomes, TARGET_REAL_CALLED_FAKE)
    entry["operating_point"] = {
        "set_on": f"{scored} part, {len(outcomes)} items, each delivered as "
        f"{' and '.join(conditions)}; a real item counts as called fake if it is in either; "
        "recordings and pictures each at most the target on their own reals (a medium with "
        f"fewer than {MIN_OWN_REALS} also on every real item)",
        **point,
    }
    print(
        f"{name}: operating point for <= {TARGET_REAL_CALLED_FAKE:.0%} reals called fake: {point}"
    )
    return point


def stored_point(spec: str, name: str) -> dict[str, Any]:
    """The operating point a validation run chose, from `RESULTS.json[:DETECTOR]` (the detector
    named `name` when none is given); one clear line and exit 2 when there is none."""
    try:
        named, entry = detector_results(spec, default=name)
    except ValueError as exc:
        sys.exit(f"generalization: {exc}; name one as FILE:DETECTOR")
    chosen = entry.get("operating_point")
    if not chosen or "threshold" not in chosen:
        sys.exit(f"generalization: {named!r} in {spec} carries no operating point")
    return dict(chosen)


def rechoose(path: Path) -> int:
    text = path.read_text()
    results = json.loads(text)
    second = text.splitlines()[1]
    indent = len(second) - len(second.lstrip())  # written as it was
    for name, entry in results["detectors"].items():
        point = entry.get("operating_point")
        if (
            not point
            or "set_on" not in point
            or isinstance(entry["conditions"]["plain"]["items"], str)
        ):
            continue  # chose none, or judged at another run's point, or rows not kept
        stored = [condition["items"] for condition in entry["conditions"].values()]
        chosen = choose(stored_outcomes(stored), TARGET_REAL_CALLED_FAKE)
        entry["operating_point"] = {
            "set_on": f"{point['set_on'].split(';')[0]}; recordings and pictures each at most "
            f"the target on their own reals (a medium with fewer than {MIN_OWN_REALS} also on "
            f"every real item; chosen again from the stored rows, {time.strftime('%Y-%m-%d')})",
            **chosen,
        }
        for condition in entry["conditions"].values():
            # Its tables were judged at the old point; the rows stay for choosing again.
            condition.pop("table_at_operating_point", None)
        print(f"{name}: {json.dumps(entry['operating_point'])}")
    path.write_text(results_text(results, indent, flat_lists=True))
    print(f"wrote {path}")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--model",
        type=Path,
        action="append",
        help="detector ONNX (repeatable; default the bundled one)",
    )
    parser.add_argument("--mesonet", type=Path, help="also score MesoNet (Keras .h5) as a baseline")
    parser.add_argument("--list", type=Path, default=DATA / "manifest.csv")
    parser.add_argument(
        "--part",
        choices=[p.value for p in Part if p is not Part.TRAIN],
        default=Part.VALIDATION.value,
    )
    parser.add_argument(
        "--leave-out", choices=[k.value for k in FakeKind if k is not FakeKind.OTHER]
    )
    parser.add_argument("--open-lockbox", action="store_true")
    parser.add_argument("--reopen-because")
    parser.add_argument("--condition", action="append", choices=sorted(CONDITIONS))
    parser.add_argument("--limit", type=int, help="score only the first N items (a smoke run)")
    parser.add_argument(
        "--cache", type=Path, default=Path.home() / ".cache" / "swapwatch" / "delivered"
    )
    parser.add_argument(
        "--operating-point",
        metavar="RESULTS.json[:DETECTOR]",
        help="lockbox or leave-out runs: judge again at the operating point a validation run "
        "chose (its results file): the same model's, or, for a leave-out model, DETECTOR's "
        "(the seed of its recipe whose point the rules name)",
    )
    parser.add_argument("--out", type=Path)
    parser.add_argument(
        "--rechoose",
        type=Path,
        metavar="RESULTS.json",
        help="choose the operating point of each detector in a validation run's results file "
        "again from its stored per-item rows (recordings and pictures each on their own reals), "
        "and write it back; scores nothing",
    )
    args = parser.parse_args()
    if args.rechoose:
        return rechoose(args.rechoose)
    if args.leave_out and args.part != Part.VALIDATION.value:
        parser.error("--leave-out scores its own set: leave --part out")
    models = args.model or [DEFAULT_DETECTOR]
    conditions = args.condition or ["plain", "poor-call"]
    check_lockbox(args, models)
    items = items_to_score(args, read_list(args.list))
    if args.limit:
        items = items[: args.limit]
    scored = "leave-out " + args.leave_out if args.leave_out else args.part
    print(f"{len(items)} items ({scored}), {len({i.group for i in items})} groups", file=sys.stderr)

    detectors: list[tuple[str, Any, dict[str, Any]]] = []
    for model in models:
        detectors.append(
            (
                model.stem,
                lambda m=model: create_engine("onnxruntime", m, device="cpu", threads=1),
                {"file": str(model), "sha256": sha256(model)},
            )
        )
    if args.mesonet:
        from swapwatch.evaluation.mesonet import MesoNetEngine

        def mesonet() -> Engine:
            engine = MesoNetEngine(args.mesonet)
            engine.warmup()
            return engine

        detectors.append(
            ("mesonet", mesonet, {"file": str(args.mesonet), "sha256": sha256(args.mesonet)})
        )

    if args.operating_point and (args.part != Part.VALIDATION.value or args.leave_out):
        for name, _, _ in detectors:
            if name != "mesonet":
                stored_point(args.operating_point, name)  # before hours of scoring, not after
    results: dict[str, Any] = {}
    texts = []
    for name, factory, about in detectors:
        entry: dict[str, Any] = {**about, "conditions": {}}
        for condition in conditions:
            folder = args.cache / condition
            folder.mkdir(parents=True, exist_ok=True)
            started = time.perf_counter()
            judged_items, rows = score_condition(
                items, factory, condition, folder, f"{name} {condition}"
            )
            table = yardstick(judged_items)
            entry["conditions"][condition] = {
                "table": table,
                "judged": judged_items,
                "items": rows,
                "seconds": round(time.perf_counter() - started, 1),
            }
            text = format_table(table, f"{name}, {condition} ({scored})")
            texts.append(text)
            print(text, flush=True)
        point = operating_point(args, name, entry, conditions, scored)
        if point is not None and point["threshold"] is not None:
            for c in conditions:
                at_point = rejudged(
                    entry["conditions"][c]["judged"], entry["conditions"][c]["items"], point
                )
                table = yardstick(at_point)
                entry["conditions"][c]["table_at_operating_point"] = table
                text = format_table(
                    table,
                    f"{name}, {c} ({scored}) at threshold {point['threshold']}, h {point['h']}, "
                    f"pictures {point.get('picture_threshold') or point['threshold']}",
                )
                texts.append(text)
                print(text, flush=True)
        for c in conditions:
            del entry["conditions"][c]["judged"]
            entry["conditions"][c]["items"] = compact(entry["conditions"][c]["items"])
        engine = factory()
        try:
            crops = face_crops(items, engine)
            entry["per_face_ms_batch1"] = per_face_ms(engine, crops) if len(crops) else None
        finally:
            engine.close()
        print(f"{name}: {entry['per_face_ms_batch1']} ms per face (batch 1, one thread)")
        results[name] = entry

    out = args.out or RESULTS / (f"generalization-{args.leave_out or args.part}.json")
    write_results(
        out,
        "generalization",
        flat_lists=True,
        fields={
            "scored": scored,
            "items": len(items),
            "groups": len({i.group for i in items}),
            "max_seconds": MAX_SECONDS,
            "rate": RATE,
            "conditions": {c: str(CONDITIONS[c]) for c in conditions},
            "command": " ".join(sys.argv),
            "detectors": results,
        },
    )
    return 0


def face_crops(items: list[MediaItem], engine: Engine) -> Any:
    """Up to COST_FACES real face crops of pictures in `items`, for the cost figure."""
    import numpy as np

    from swapwatch.evaluation.runner import read_picture
    from swapwatch.faces.analyzer import FaceAnalyzer
    from swapwatch.stream.source import crop_fraction

    crops = []
    faces = FaceAnalyzer(crop_size=engine.info.cut_size, quiet=True)
    try:
        for item in items:
            if not item.is_image or item.is_fake:
                continue
            image = read_picture(item.path)
            if item.crop:
                image = crop_fraction(image, item.crop)
            batch = faces.analyse_picture(image).batch
            crops.extend(batch.crops[batch.usable])
            if len(crops) >= COST_FACES:
                break
    finally:
        faces.close()
    return np.asarray(crops)


if __name__ == "__main__":
    raise SystemExit(main())
