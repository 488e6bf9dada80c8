"""Does training's codec step reach as low as a live stream's bitrate takes a face?

    .venv/bin/python benchmarks/codec_reach.py [--list MANIFEST.csv] [--kbps 300 ...]
        [--every 6] [--out benchmarks/results/codec_reach.json]

For each held-out recording of ../shared/data (the validation groups), the whole recording is
re-encoded to H.264 at each --kbps as `benchmarks/accuracy.py` does, and every `--every`th frame's
faces are cut from the recording as it is and from the re-encode with the same square, so the
two crops differ by the codec alone. Their median PSNR says how much a stream at that bitrate
takes from a face.

Then the training step (`augment.Reencode`, H.264 and VP8, the last frame of a short clip) is run
on the same crops at a grid of bits per pixel. The bpp whose PSNR equals the stream's, read off
that curve, is where the stream sits in training's terms (`training_equivalent_bpp`; the
stream's own bits per pixel, `stream_bpp`, is another scale). Each item is placed below, inside
or above the configured `AugmentConfig.bpp` range: below, the detector is evaluated on damage it
never saw; above, the stream is milder than the mildest training re-encode.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import av
import numpy as np

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data"

from machine import write_results  # noqa: E402

from swapwatch.datasets.crops import CONTEXT_SIZE, centre_window, context_square  # noqa: E402
from swapwatch.datasets.lists import MediaItem, read_list, split_by_group  # noqa: E402
from swapwatch.evaluation.runner import reencode  # noqa: E402
from swapwatch.faces.analyzer import FaceAnalyzer  # noqa: E402
from swapwatch.faces.geometry import warp  # noqa: E402
from swapwatch.stream.source import crop_fraction  # noqa: E402
from swapwatch.training.augment import AugmentConfig, Reencode  # noqa: E402
from swapwatch.training.train import TrainConfig  # noqa: E402

# Wider than the training range on both sides, so a stream outside it reads as outside.
BPP_GRID = (0.0025, 0.004, 0.006, 0.01, 0.015, 0.025, 0.04, 0.07, 0.15, 0.3, 0.6)
TRAINING_CROPS = 12  # per recording: the codec step is slow, and its PSNR varies little


def frames(path: Path, item: MediaItem) -> Iterator[np.ndarray]:
    with av.open(str(path)) as container:
        for frame in container.decode(container.streams.video[0]):
            image = frame.to_ndarray(format="rgb24")
            yield crop_fraction(image, item.crop) if item.crop else image


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    error = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return float(10.0 * np.log10(255.0**2 / max(error, 1e-9)))


def paired_crops(
    item: MediaItem, encoded: Path, every: int, analyzer: FaceAnalyzer
) -> tuple[np.ndarray, np.ndarray]:
    """Context crops of the faces of `item` and of its re-encode, cut with the same squares."""
    analyzer.reset()
    as_is, low = [], []
    pairs = zip(frames(item.path, item), frames(encoded, item), strict=True)
    for index, (a, b) in enumerate(pairs):
        faces = analyzer.analyse(a)  # tracked on every frame, kept on every `every`th
        if index % every:
            continue
        for i in np.flatnonzero(faces.usable):
            square = context_square(faces.points[i])
            as_is.append(warp(a, square, CONTEXT_SIZE))
            low.append(warp(b, square, CONTEXT_SIZE))
    empty = np.zeros((0, CONTEXT_SIZE, CONTEXT_SIZE, 3), np.uint8)
    return (np.stack(as_is), np.stack(low)) if as_is else (empty, empty)


def training_curve(crops: np.ndarray, rng: np.random.Generator) -> list[float]:
    """Median PSNR of the training codec step (both codecs) at each bpp of BPP_GRID."""
    config = AugmentConfig()
    chosen = crops[rng.permutation(len(crops))[:TRAINING_CROPS]]
    curve = []
    for bpp in BPP_GRID:
        values = []
        for crop in chosen:
            for codec in ("h264", "vp8"):
                step = replace(Reencode.sample(rng, config, codec), bpp=bpp)
                values.append(
                    psnr(centre_window(crop[None])[0], centre_window(step(crop)[None])[0])
                )
        curve.append(float(np.median(values)))
    return curve


def training_equivalent_bpp(curve: list[float], target: float) -> float | None:
    """The bpp at which the training step leaves `target` dB, log-linear between grid points
    on the curve's rising envelope (it can dip at the harshest end); None off the grid."""
    envelope = np.maximum.accumulate(np.asarray(curve))
    if not envelope[0] <= target <= envelope[-1]:
        return None
    first = int(np.argmax(envelope >= target))  # the lowest bpp that reaches the target
    if first == 0:
        return BPP_GRID[0]
    low, high = envelope[first - 1], envelope[first]
    fraction = (target - low) / (high - low)
    logs = np.log([BPP_GRID[first - 1], BPP_GRID[first]])
    return float(np.exp(logs[0] + fraction * (logs[1] - logs[0])))


def placement(curve: list[float], target: float, equivalent: float | None) -> str:
    """Where a stream's damage lies against the training range: below, inside or above."""
    low, high = AugmentConfig().bpp
    if equivalent is None:
        return "below" if target < curve[0] else "above"
    return "below" if equivalent < low else "above" if equivalent > high else "inside"


def stream_bpp(item: MediaItem, kbps: int) -> float:
    """Bits per pixel per frame the whole encoded frame gets at `kbps`."""
    with av.open(str(item.path)) as container:
        stream = container.streams.video[0]
        rate = float(stream.average_rate or 30)
        pixels = stream.codec_context.width * stream.codec_context.height
    return kbps * 1000.0 / (pixels * rate)


def measure(
    item: MediaItem,
    encoded: Path,
    kbps: int,
    every: int,
    analyzer: FaceAnalyzer,
    rng: np.random.Generator,
) -> dict[str, Any] | None:
    """One item's face PSNR after the stream, and where that lies in training's terms; None
    without faces."""
    as_is, low = paired_crops(item, encoded, every, analyzer)
    if not len(as_is):
        return None
    pairs = zip(centre_window(as_is), centre_window(low), strict=True)
    stream = float(np.median([psnr(a, b) for a, b in pairs]))
    curve = training_curve(as_is, rng)
    equivalent = training_equivalent_bpp(curve, stream)
    return {
        "item": item.name,
        "kbps": kbps,
        "stream_bpp": round(stream_bpp(item, kbps), 4),
        "faces": len(as_is),
        "stream_psnr": round(stream, 2),
        "training_psnr": [round(v, 2) for v in curve],
        "training_equivalent_bpp": None if equivalent is None else round(equivalent, 4),
        "placement": placement(curve, stream, equivalent),
    }


def summarise(rows: list[dict[str, Any]]) -> dict[str, Any]:
    equivalents = [r["training_equivalent_bpp"] for r in rows if r["placement"] == "inside"]
    return {
        "items": len(rows),
        **{
            side: sum(r["placement"] == side for r in rows) for side in ("below", "inside", "above")
        },
        "median_training_equivalent_bpp_inside": (
            float(np.median(equivalents)) if equivalents else None
        ),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--list", type=Path, default=DATA / "manifest.csv")
    parser.add_argument("--kbps", type=int, action="append", help="default: 300 and 1000")
    parser.add_argument("--every", type=int, default=6)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--out", type=Path, default=REPO / "benchmarks" / "results" / "codec_reach.json"
    )
    args = parser.parse_args()
    rates = args.kbps or [300, 1000]

    defaults = TrainConfig(out=Path("."))
    _, validation = split_by_group(
        read_list(args.list), defaults.validation_fraction, defaults.split_seed
    )
    recordings = [item for item in validation if not item.is_image]
    rng = np.random.default_rng(args.seed)
    rows: list[dict[str, Any]] = []
    analyzer = FaceAnalyzer(quiet=True)
    try:
        with tempfile.TemporaryDirectory(prefix="swapwatch-codec-reach-") as folder:
            for kbps in rates:
                encoded: dict[Path, Path] = {}
                for item in recordings:
                    if item.path not in encoded:  # the halves of a pair share one encode
                        encoded[item.path] = Path(folder) / f"{item.path.stem}.{kbps}k.mp4"
                        reencode(item.path, encoded[item.path], kbps)
                    row = measure(item, encoded[item.path], kbps, args.every, analyzer, rng)
                    if row is None:
                        continue
                    rows.append(row)
                    equivalent = row["training_equivalent_bpp"]
                    print(
                        f"{item.name:28s} {kbps:5d} kbit/s ({row['stream_bpp']:.3f} bpp)  "
                        f"{row['faces']:4d} faces  PSNR {row['stream_psnr']:5.1f} dB  "
                        + (
                            "off the grid"
                            if equivalent is None
                            else f"= training {equivalent:.4f} bpp"
                        )
                        + f"  ({row['placement']} the training range)"
                    )
    finally:
        analyzer.close()
    summary = {str(kbps): summarise([r for r in rows if r["kbps"] == kbps]) for kbps in rates}
    for kbps, figures in summary.items():
        print(
            f"{kbps} kbit/s: {figures['items']} items, {figures['below']} below the training "
            f"range, {figures['inside']} inside, {figures['above']} above (milder)"
        )
    write_results(
        args.out,
        "codec_reach",
        {
            "training_bpp_range": list(AugmentConfig().bpp),
            "bpp_grid": list(BPP_GRID),
            "summary": summary,
            "items": rows,
        },
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
