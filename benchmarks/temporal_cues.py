"""Score flicker, a cue across frames, measured from yardstick runs that kept their face tracks
(the protocol and the rule that keeps it are in benchmarks/README, written before it ran).

    .venv/bin/python benchmarks/temporal_cues.py RESULTS.json[:DETECTOR] ...
        [--resamples 2000] [--out benchmarks/results/temporal-cues.json]

For each run, delivery condition and fake kind of recording present: AUC of the video score,
of the flicker alone and of the fused score (z of the video logit + z of the flicker, both
against the run's real recordings); fused minus video with a 95 % group-bootstrap interval; as
controls, the AUC of the longest track's scored-frame count and of its mean logit.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
sys.path.insert(0, str(REPO))

from machine import write_results  # noqa: E402

from swapwatch.datasets.splits import fake_kind  # noqa: E402
from swapwatch.evaluation.flicker import flicker, standardised, video_logit  # noqa: E402
from swapwatch.evaluation.metrics import (  # noqa: E402
    group_resamples,
    percentile_interval,
    roc_auc,
)
from swapwatch.evaluation.runner import round_or_none  # noqa: E402
from swapwatch.evaluation.stored_rows import (  # noqa: E402
    DECIDED,
    TRACKS_FIELD,
    detector_results,
    is_picture,
)

# An item without a verdict ranks as an error, as in the yardstick: a real above every fake.
WITHOUT_VERDICT = {True: -1e9, False: 1e9}


@dataclass(frozen=True, slots=True)
class Recording:
    name: str
    fake: bool
    kind: str  # the fake kind, or "real"
    group: str
    logit: float | None  # of the video score; None without a verdict
    flicker: float | None
    frames: int  # scored frames of the longest track
    mean_logit: float | None  # of the longest track


def recordings(stored: dict[str, Any]) -> list[Recording]:
    """A delivery condition's recordings, read from its stored rows."""
    if not isinstance(stored, dict) or "rows" not in stored:
        sys.exit("temporal_cues: a results file without per-item rows (made before they were kept)")
    fields = stored["fields"]
    if TRACKS_FIELD not in fields:
        sys.exit("temporal_cues: a results file without face tracks (made before they were kept)")
    out = []
    for values in stored["rows"]:
        row = dict(zip(fields, values, strict=True))
        if is_picture(row["name"]):
            continue
        tracks = row[TRACKS_FIELD] or []
        longest = max(tracks, key=lambda t: len(t["t"]), default=None)
        fake = row["label"] == "fake"
        decided = row["verdict"] in DECIDED and row["score"] is not None
        out.append(
            Recording(
                name=row["name"],
                fake=fake,
                kind=fake_kind(row["family"]).value if fake else "real",
                group=row["group"],
                logit=video_logit(row["score"]) if decided else None,
                flicker=flicker(longest["t"], longest["logit"]) if longest else None,
                frames=len(longest["t"]) if longest else 0,
                mean_logit=float(np.mean(longest["logit"])) if longest else None,
            )
        )
    return out


def scores(items: list[Recording]) -> dict[str, np.ndarray]:
    """Each ranking the rule compares, one value per recording."""
    reals = [r for r in items if not r.fake]
    real_logits = [r.logit for r in reals if r.logit is not None]
    real_flickers = [r.flicker for r in reals if r.flicker is not None]
    z_logit = standardised([r.logit if r.logit is not None else 0.0 for r in items], real_logits)
    z_flicker = standardised(
        [r.flicker if r.flicker is not None else 0.0 for r in items], real_flickers
    )
    video, fused, alone = [], [], []
    for r, zl, zf in zip(items, z_logit, z_flicker, strict=True):
        if r.logit is None:
            video.append(WITHOUT_VERDICT[r.fake])
            fused.append(WITHOUT_VERDICT[r.fake])
        else:
            video.append(r.logit)
            fused.append(zl + (zf if r.flicker is not None else 0.0))
        alone.append(r.flicker if r.flicker is not None else float(np.median(real_flickers)))
    return {
        "video": np.asarray(video),
        "fused": np.asarray(fused),
        "flicker": np.asarray(alone),
        "frames": np.asarray([float(r.frames) for r in items]),
        "mean_logit": np.asarray(
            [r.mean_logit if r.mean_logit is not None else 0.0 for r in items]
        ),
    }


def measure_kind(
    items: list[Recording], kind: str, resamples: int, seed: int = 0
) -> dict[str, Any]:
    chosen = [r for r in items if r.kind in (kind, "real")]
    labels = np.asarray([r.fake for r in chosen])
    counts = {
        "reals": int((~labels).sum()),
        "fakes": int(labels.sum()),
        "fakes_with_flicker": sum(r.flicker is not None for r in chosen if r.fake),
        "reals_with_flicker": sum(r.flicker is not None for r in chosen if not r.fake),
    }
    try:
        ranked = scores(chosen)
    except ValueError as exc:  # too few real recordings with a verdict or a flicker
        return {**counts, "auc": None, "not_measured": str(exc)}
    aucs = {name: roc_auc(values, labels) for name, values in ranked.items()}

    def difference(drawn: np.ndarray) -> float | None:
        fused = roc_auc(ranked["fused"][drawn], labels[drawn])
        video = roc_auc(ranked["video"][drawn], labels[drawn])
        return None if fused is None or video is None else fused - video

    groups = [r.group for r in chosen]
    draws = [difference(d) for d in group_resamples(groups, resamples, seed)]
    interval = percentile_interval(draws)
    gain = None if aucs["fused"] is None or aucs["video"] is None else aucs["fused"] - aucs["video"]
    return {
        **counts,
        "auc": {name: round_or_none(value) for name, value in aucs.items()},
        "fused_minus_video": round_or_none(gain),
        "fused_minus_video_95": None
        if interval is None
        else [round(interval.low, 4), round(interval.high, 4)],
        "flicker_by_item": {
            r.name: None if r.flicker is None else round(r.flicker, 3) for r in chosen
        },
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("runs", nargs="+", help="RESULTS.json[:DETECTOR]")
    parser.add_argument("--resamples", type=int, default=2000)
    parser.add_argument("--out", type=Path, default=RESULTS / "temporal-cues.json")
    args = parser.parse_args()
    out: dict[str, Any] = {}
    for spec in args.runs:
        try:
            name, results = detector_results(spec)
        except ValueError as exc:
            sys.exit(f"temporal_cues: {exc}")
        run: dict[str, Any] = {"file": spec.partition(":")[0], "detector": name, "conditions": {}}
        for condition, entry in results["conditions"].items():
            items = recordings(entry["items"])
            kinds = sorted({r.kind for r in items if r.fake})
            measured = {k: measure_kind(items, k, args.resamples) for k in kinds}
            run["conditions"][condition] = measured
            for kind, m in measured.items():
                if m["auc"] is None:
                    print(f"{name} {condition} {kind}: not measured: {m['not_measured']}")
                    continue
                a = m["auc"]
                print(
                    f"{name} {condition} {kind}: {m['fakes']} fakes / {m['reals']} reals; AUC "
                    f"video {a['video']}, flicker {a['flicker']}, fused {a['fused']} "
                    f"(fused - video {m['fused_minus_video']} {m['fused_minus_video_95']}); "
                    f"controls: frames {a['frames']}, mean logit {a['mean_logit']}"
                )
        out[spec] = run
    write_results(args.out, "temporal_cues", {"runs": out}, flat_lists=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
