"""What one face costs each detector: batch 1, one thread, the same real face crops for all.

    .venv/bin/python benchmarks/detector_cost.py [--model A.onnx --model B.onnx ...]
        [--clip VIDEO] [--faces 200] [--rounds 3] [--out FILE.json]

Issue 18 lets the default detector take at most 5 ms a face on this CPU (int8, batch 1), and a
larger one ship beside it only as an option. A model's own scoring run gives a figure from
whatever else the machine was doing then, so two models are compared here in one run: the crops
are cut by the product's face pipeline from real camera footage (the streams benchmark's clip),
and the models take turns, round after round, so that a change in the machine's load falls on
all of them alike. Reported per model: the median over its faces of each round, the median of
those rounds, and its ratio to the first model's.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "benchmarks"))

from generalization import COST_FACES, per_face_ms  # noqa: E402
from machine import write_results  # noqa: E402

from swapwatch.engines import create_engine  # noqa: E402
from swapwatch.models import DEFAULT_DETECTOR  # noqa: E402

REAL_CLIP = REPO.parent / "shared/data/real/fsgan/shinzo_abe.mp4"
RESULTS = REPO / "benchmarks" / "results"


def face_crops(clip: Path, size: int, count: int) -> np.ndarray:
    """Up to `count` usable face crops of `clip`, cut at `size` as a stream cuts them."""
    import av

    from swapwatch.faces.analyzer import FaceAnalyzer

    crops: list[np.ndarray] = []
    faces = FaceAnalyzer(crop_size=size, quiet=True)
    try:
        with av.open(str(clip)) as container:
            for index, frame in enumerate(container.decode(video=0)):
                if index % 3:  # about 10 Hz of a 30 fps clip: neighbouring faces differ
                    continue
                batch = faces.analyse(frame.to_ndarray(format="rgb24"))
                crops.extend(batch.crops[batch.usable])
                if len(crops) >= count:
                    break
    finally:
        faces.close()
    if not crops:
        raise SystemExit(f"no usable face in {clip}")
    return np.asarray(crops[:count])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--model", type=Path, action="append", help="detector ONNX (repeatable; default bundled)"
    )
    parser.add_argument("--clip", type=Path, default=REAL_CLIP, help="real camera footage")
    parser.add_argument(
        "--faces", type=int, default=COST_FACES, help=f"face crops a round (at most {COST_FACES})"
    )
    parser.add_argument("--rounds", type=int, default=3, help="turns of each model")
    parser.add_argument("--out", type=Path, default=RESULTS / "detector-cost.json")
    args = parser.parse_args(argv)
    models: list[Path] = args.model or [DEFAULT_DETECTOR]
    for model in models:
        if not model.is_file():
            parser.error(f"no model file {model}")
    if not args.clip.is_file():
        parser.error(f"no clip {args.clip} (the streams benchmark's camera footage)")
    if not 1 <= args.faces <= COST_FACES or args.rounds < 1:
        parser.error(f"--faces must be 1-{COST_FACES} and --rounds at least 1")

    engines = [create_engine("onnxruntime", m, device="cpu", threads=1) for m in models]
    try:
        cut_sizes = {e.info.cut_size for e in engines}
        if len(cut_sizes) != 1:
            parser.error(f"the models cut faces at different sizes: {sorted(cut_sizes)}")
        crops = face_crops(args.clip, cut_sizes.pop(), args.faces)
        rounds: list[list[float]] = [[] for _ in engines]
        for _ in range(args.rounds):
            for i, engine in enumerate(engines):
                # The yardstick's own cost figure (a few faces to warm up, then the median).
                rounds[i].append(per_face_ms(engine, crops))
    finally:
        for engine in engines:
            engine.close()

    first = statistics.median(rounds[0])
    figures: list[dict[str, Any]] = []
    for model, model_rounds in zip(models, rounds, strict=True):
        median = statistics.median(model_rounds)
        figures.append(
            {
                "model": str(model),
                "rounds_ms": [round(r, 3) for r in model_rounds],
                "median_ms": round(median, 3),
                "ratio_to_first": round(median / first, 3),
            }
        )
        print(
            f"{model.name}: {median:.2f} ms a face (rounds "
            f"{', '.join(f'{r:.2f}' for r in model_rounds)}), {median / first:.2f}x the first",
            flush=True,
        )
    write_results(
        args.out,
        "detector_cost",
        fields={
            "command": " ".join(sys.argv),
            "clip": str(args.clip),
            "faces": len(crops),
            "rounds": args.rounds,
            "batch": 1,
            "threads": 1,
            "models": figures,
        },
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
