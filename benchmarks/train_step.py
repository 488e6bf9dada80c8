"""What one training step costs on this CPU, with the tensors laid out channels-first (NCHW) and
channels-last, and what each layout does to the gradient's precision.

    .venv/bin/python benchmarks/train_step.py [--threads 2] [--batch 32] [--steps 6] [--turns 2]
        [--input-size 224] [--out benchmarks/results/train-step.json]

A step is what `swapwatch train` does per step: forward, binary cross-entropy, backward and an
AdamW update of the detector (ImageNet-initialised, training mode), on a batch of real face crops
from the shared data's crop cache (the training part's real recordings and pictures; a batch of
16 pairs is 32 crops). The layouts are timed in turns (A B A B) so that a change of load on this
shared machine falls on both; each turn builds its model afresh and drops its first two steps
(allocation). Precision: on one batch of 8 the float32 gradient of every parameter is compared
with a float64 one, relative error of each parameter's gradient; the median and max over the
parameters whose gradient is not vanishing (norm > 1e-4) are reported.
"""

from __future__ import annotations

import argparse
import copy
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data"
RESULTS = REPO / "benchmarks" / "results"
sys.path.insert(0, str(REPO))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from machine import write_results  # noqa: E402

from swapwatch.datasets.crops import CropCache, centre_window  # noqa: E402
from swapwatch.datasets.lists import Label, read_list  # noqa: E402
from swapwatch.datasets.splits import Part, split  # noqa: E402
from swapwatch.engines.base import shrunk  # noqa: E402
from swapwatch.training.model import SwapDetector, load_imagenet  # noqa: E402
from swapwatch.training.train import to_tensor  # noqa: E402

LAYOUTS = {"channels_first": torch.contiguous_format, "channels_last": torch.channels_last}


def real_crops(count: int, manifest: Path) -> np.ndarray:
    """`count` real face crops of the training part, a few from each item."""
    training = [i for i in split(read_list(manifest))[Part.TRAIN] if i.label is Label.REAL]
    cache = CropCache()
    taken: list[np.ndarray] = []
    try:
        for item in training[:: max(1, len(training) // count)]:
            crops = cache.get(item).crops
            if len(crops):
                taken.append(centre_window(crops[:2]))
            if sum(len(t) for t in taken) >= count:
                break
    finally:
        cache.close()
    if not taken:
        raise SystemExit(f"no real face crops found through {manifest}")
    return np.ascontiguousarray(np.concatenate(taken)[:count])


def batch_of(images: np.ndarray, layout: torch.memory_format) -> torch.Tensor:
    return to_tensor(images, "cpu").contiguous(memory_format=layout)


def timed_steps(
    base: SwapDetector, images: np.ndarray, layout: torch.memory_format, steps: int
) -> list[float]:
    model = copy.deepcopy(base).to(memory_format=layout).train()  # type: ignore[call-overload]
    optimiser = torch.optim.AdamW(model.parameters(), lr=1e-4)
    x = batch_of(images, layout)
    y = torch.tensor([0.0, 1.0] * (len(images) // 2))
    seconds = []
    for _ in range(steps + 2):
        started = time.perf_counter()
        loss = F.binary_cross_entropy_with_logits(model(x), y)
        optimiser.zero_grad(set_to_none=True)
        loss.backward()  # type: ignore[no-untyped-call]
        optimiser.step()
        seconds.append(time.perf_counter() - started)
    return seconds[2:]


def gradients(
    base: SwapDetector, images: np.ndarray, layout: torch.memory_format, dtype: torch.dtype
) -> list[torch.Tensor]:
    model = copy.deepcopy(base).to(dtype=dtype)
    model = model.to(memory_format=layout).train()  # type: ignore[call-overload]
    model.dropout.p = 0.0  # the same function in every run
    x = batch_of(images, layout).to(dtype)
    y = torch.tensor([0.0, 1.0] * (len(images) // 2), dtype=dtype)
    F.binary_cross_entropy_with_logits(model(x), y).backward()  # type: ignore[no-untyped-call]
    return [p.grad.double() for p in model.parameters() if p.grad is not None]


def gradient_error(base: SwapDetector, images: np.ndarray) -> dict[str, dict[str, float]]:
    reference = gradients(base, images, torch.contiguous_format, torch.float64)
    out = {}
    for name, layout in LAYOUTS.items():
        measured = gradients(base, images, layout, torch.float32)
        errors = [
            float((m - r).norm() / r.norm())
            for m, r in zip(measured, reference, strict=True)
            if r.norm() > 1e-4
        ]
        out[name] = {"median": round(statistics.median(errors), 5), "max": round(max(errors), 5)}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--steps", type=int, default=6, help="timed steps per turn")
    parser.add_argument("--turns", type=int, default=2)
    parser.add_argument("--input-size", type=int, default=224)
    parser.add_argument("--manifest", type=Path, default=DATA / "manifest.csv")
    parser.add_argument("--out", type=Path, default=RESULTS / "train-step.json")
    args = parser.parse_args()
    if args.batch < 8 or args.batch % 2:
        parser.error("--batch must be even and at least 8 (pairs of a real and a fake)")
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    images = shrunk(real_crops(args.batch, args.manifest), args.input_size)
    base = SwapDetector()
    load_imagenet(base)
    seconds: dict[str, list[float]] = {name: [] for name in LAYOUTS}
    for turn in range(args.turns):
        for name, layout in LAYOUTS.items():
            seconds[name] += timed_steps(base, images, layout, args.steps)
            print(f"turn {turn + 1} {name}: median {statistics.median(seconds[name]):.2f} s a step")
    medians = {name: statistics.median(s) for name, s in seconds.items()}
    errors = gradient_error(base, images[:8])
    fields: dict[str, Any] = {
        "threads": args.threads,
        "batch": args.batch,
        "input_size": args.input_size,
        "seconds_per_step": {n: [round(s, 3) for s in v] for n, v in seconds.items()},
        "median_seconds_per_step": {n: round(m, 3) for n, m in medians.items()},
        "channels_last_speedup": round(medians["channels_first"] / medians["channels_last"], 2),
        "gradient_relative_error_vs_float64": errors,
    }
    for name in LAYOUTS:
        print(
            f"{name}: {medians[name]:.2f} s a step ({1 / medians[name]:.2f} steps/s); gradient "
            f"error vs float64 median {errors[name]['median']:.4f}, max {errors[name]['max']:.4f}"
        )
    print(f"channels-last speed-up: {fields['channels_last_speedup']}x")
    write_results(args.out, "train_step", fields)


if __name__ == "__main__":
    main()
