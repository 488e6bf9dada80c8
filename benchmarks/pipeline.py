"""Per-stage cost of the swapwatch pipeline on 720p30 video, against the design budgets.

Budgets: docs/design.md, section Budgets (2-core CPU, no GPU). Video: synthetic, tests/media.py.

    .venv/bin/python benchmarks/pipeline.py [--seconds 10] [--model FILE] [--faces 1]
                                            [--out benchmarks/results/pipeline.json]

Stages: decode (PyAV, one stream, thread_type AUTO) with and without the rgb24 conversion;
StreamAnalyzer.analyse at the CLI's default stride (every 2nd frame = 15 Hz) with a
CollectingTimer; the detector engine at batch 1 and 8; and a full `swapwatch scan`.
"""

from __future__ import annotations

import argparse
import datetime
import json
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import av
import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

from machine import describe as describe_machine  # noqa: E402
from media import Placement, write_linear_model, write_video  # noqa: E402

from swapwatch.engines import Engine, create_engine  # noqa: E402
from swapwatch.faces.analyzer import FaceAnalyzer  # noqa: E402
from swapwatch.models import DEFAULT_DETECTOR, FLOAT_DETECTOR  # noqa: E402
from swapwatch.native_logs import native_stderr_silenced  # noqa: E402
from swapwatch.stream.frames import Frame  # noqa: E402
from swapwatch.stream.pipeline import StreamAnalyzer  # noqa: E402
from swapwatch.timing import CollectingTimer  # noqa: E402

WIDTH, HEIGHT, FPS = 1280, 720, 30
STRIDE = 2  # the CLI default (--rate 15 on a 30 fps file)
CORES = 2  # the design's target machine
TEST_MODEL_LABEL = "test model (no trained detector installed)"


def stats(seconds: list[float]) -> dict[str, Any]:
    """n, median, p95 and mean of durations, in milliseconds."""
    ms = [s * 1000.0 for s in seconds]
    if not ms:
        return {"n": 0, "median_ms": None, "p95_ms": None, "mean_ms": None}
    p95 = statistics.quantiles(ms, n=20, method="inclusive")[18] if len(ms) > 1 else ms[0]
    return {
        "n": len(ms),
        "median_ms": round(statistics.median(ms), 3),
        "p95_ms": round(p95, 3),
        "mean_ms": round(statistics.fmean(ms), 3),
    }


def make_video(path: Path, seconds: float, faces: int) -> Path:
    placements = [Placement(cx=(i + 1) / (faces + 1), cy=0.5, size=300) for i in range(faces)]
    write_video(path, placements, seconds=seconds, fps=FPS, size=(WIDTH, HEIGHT))
    return path


def decode(path: Path, rgb: bool) -> tuple[list[float], list[float], float]:
    """One pass over the file: per-frame decode and rgb24 times, and the pass's CPU seconds (all
    threads). Frames are dropped at once, as AvSource does, so no page faults of a growing heap."""
    decode_s: list[float] = []
    convert_s: list[float] = []
    cpu0 = time.process_time()
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        frames = container.decode(stream)
        while True:
            t0 = time.perf_counter()
            frame = next(frames, None)
            t1 = time.perf_counter()
            if frame is None:
                break
            decode_s.append(t1 - t0)
            if rgb:
                frame.to_ndarray(format="rgb24")
                convert_s.append(time.perf_counter() - t1)
    return decode_s, convert_s, time.process_time() - cpu0


def analysed_frames(path: Path) -> list[np.ndarray]:
    """Every STRIDE-th frame as rgb24, decoded up front so decoding does not overlap analysis."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        return [
            f.to_ndarray(format="rgb24")
            for i, f in enumerate(container.decode(stream))
            if i % STRIDE == 0
        ]


def analyse(engine: Engine, images: list[np.ndarray]) -> dict[str, Any]:
    timer = CollectingTimer()
    with native_stderr_silenced():
        faces = FaceAnalyzer(crop_size=engine.info.cut_size, timer=timer, quiet=True)
        faces.warmup()
    analyzer = StreamAnalyzer(engine, None, faces, timer)
    totals: list[float] = []
    counts: list[int] = []
    skipped: Counter[str] = Counter()
    cpu0 = time.process_time()
    for i, image in enumerate(images):
        index = i * STRIDE
        frame = Frame(image=image, index=index, time=index / FPS, arrival=time.monotonic())
        t0 = time.perf_counter()
        result = analyzer.analyse(frame)
        totals.append(time.perf_counter() - t0)
        counts.append(len(result.faces))
        skipped.update(f.skip_reason for f in result.faces if f.skip_reason)
    cpu = time.process_time() - cpu0
    with native_stderr_silenced():
        analyzer.close()
    s = timer.samples
    n_frames = len(images)
    per_face = {
        stage: [t / n for t, n in zip(s[stage], counts, strict=True) if n]
        for stage in ("landmarks", "crop")
    }
    lm_crop = [a + b for a, b in zip(per_face["landmarks"], per_face["crop"], strict=True)]
    return {
        "analysed_frames": n_frames,
        "faces_per_frame": round(statistics.fmean(counts), 3) if counts else 0.0,
        "faces_scored": sum(counts) - sum(skipped.values()),
        "skip_reasons": dict(skipped),
        "detector_runs": len(s["detection"]),
        "detection_per_call": stats(s["detection"]),
        "detection_amortised_ms": round(1000 * sum(s["detection"]) / max(n_frames, 1), 3),
        "landmarks_per_frame": stats(s["landmarks"]),
        "landmarks_per_face": stats(per_face["landmarks"]),
        "crop_per_frame": stats(s["crop"]),
        "crop_per_face": stats(per_face["crop"]),
        "landmarks_plus_crop_per_face": stats(lm_crop),
        "engine_per_call": stats(s["engine"]),
        "fusion_per_frame": stats(s["fusion"]),
        "analyse_per_frame": stats(totals),
        "analyse_cpu_ms_per_frame": round(1000 * cpu / max(n_frames, 1), 3),
    }


def engine_batches(engine: Engine, repeats: int = 100) -> dict[str, Any]:
    """Detector time per face at batch 1 and batch 8 (random crops, after a warm-up call), from
    crops at the cut size, as the pipeline hands them over (a smaller input's shrink included)."""
    size = engine.info.cut_size
    out: dict[str, Any] = {}
    rng = np.random.default_rng(0)
    for batch in (1, 8):
        crops = rng.integers(0, 256, (batch, size, size, 3), dtype=np.uint8)
        engine.infer(crops)
        samples = []
        for _ in range(repeats if batch == 1 else max(repeats // 2, 3)):
            t0 = time.perf_counter()
            engine.infer(crops)
            samples.append((time.perf_counter() - t0) / batch)
        out[f"batch{batch}_per_face"] = stats(samples)
    return out


def compare_engines(models: dict[str, Path], rounds: int = 6, calls: int = 20) -> dict[str, Any]:
    """Batch-1 time per face of several models, 1 thread, alternating in rounds so that the
    machine's noise falls on all of them alike; the medians and their ratio to the first."""
    engines = {
        name: create_engine("onnxruntime", path, device="cpu", threads=1)
        for name, path in models.items()
    }
    try:
        size = next(iter(engines.values())).info.cut_size
        crops = np.random.default_rng(0).integers(0, 256, (1, size, size, 3), dtype=np.uint8)
        samples: dict[str, list[float]] = {name: [] for name in engines}
        for engine in engines.values():
            engine.warmup()
        for _ in range(rounds):
            for name, engine in engines.items():
                for _ in range(calls):
                    t0 = time.perf_counter()
                    engine.infer(crops)
                    samples[name].append(time.perf_counter() - t0)
    finally:
        for engine in engines.values():
            engine.close()
    medians = {name: 1000 * statistics.median(values) for name, values in samples.items()}
    first = next(iter(medians))
    return {
        "batch1_per_face_median_ms": {k: round(v, 3) for k, v in medians.items()},
        "ratio_to_" + first: {k: round(v / medians[first], 3) for k, v in medians.items()},
        "samples_each": rounds * calls,
    }


def scan_end_to_end(video: Path, model: Path, seconds: float) -> dict[str, Any]:
    cmd = [
        sys.executable,
        "-m",
        "swapwatch",
        "scan",
        str(video),
        "--json",
        "--no-progress",
        "--model",
        str(model),
    ]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, check=False)
    wall = time.perf_counter() - t0
    result: dict[str, Any] = {
        "returncode": proc.returncode,
        "process_wall_s": round(wall, 3),
        "media_s": seconds,
    }
    if proc.returncode != 0:
        result["stderr_tail"] = proc.stderr[-800:]
        return result
    elapsed = float(json.loads(proc.stdout)["elapsed_seconds"])
    result.update(
        scan_elapsed_s=elapsed,
        realtime_factor=round(elapsed / seconds, 3),
        realtime_factor_with_startup=round(wall / seconds, 3),
    )
    return result


Row = tuple[str, dict[str, Any], float | None, str]  # label, stats, budget ms, note


def verdict(value: float | None, budget: float | None, at_least: bool = False) -> str:
    if value is None or budget is None:
        return ""
    if at_least:
        return "PASS" if value >= budget else "UNDER"
    return "PASS" if value <= budget else "OVER"


def budget_rows(rep: dict[str, Any]) -> list[Row]:
    """The table: every stage with its budget from docs/design.md (None: no budget of its own)."""
    dec, an, eng = rep["decode"], rep["analysis"], rep["engine_batches"]
    test = "" if rep["engine"]["trained_model"] else " [test model]"
    return [
        ("decode + rgb24 / frame", dec["decode_rgb24"], 4.0, ""),
        ("  decode only / frame", dec["decode_only"], None, ""),
        ("  rgb24 conversion / frame", dec["rgb24"], None, ""),
        ("detection / call", an["detection_per_call"], 5.0, f"{an['detector_runs']} calls"),
        (
            "detection amortised / an. frame",
            {"median_ms": an["detection_amortised_ms"]},
            None,
            "sum / analysed frames",
        ),
        ("landmarks / frame", an["landmarks_per_frame"], None, ""),
        ("landmarks / face", an["landmarks_per_face"], None, ""),
        ("crop (align+quality) / face", an["crop_per_face"], None, ""),
        ("landmarks + crop / face", an["landmarks_plus_crop_per_face"], 2.0, ""),
        ("engine / call" + test, an["engine_per_call"], None, ""),
        (
            "detector batch 1 / face",
            eng.get("batch1_per_face", {}),
            5.0,
            "" if eng else "n/a (test model)",
        ),
        ("detector batch 8 / face", eng.get("batch8_per_face", {}), None, ""),
        ("fusion / frame", an["fusion_per_frame"], None, ""),
        ("analyse() total / an. frame", an["analyse_per_frame"], None, ""),
    ]


def print_report(rep: dict[str, Any], rows: list[Row]) -> None:
    video, an, d, scan = rep["video"], rep["analysis"], rep["derived"], rep["scan"]
    print(
        f"swapwatch pipeline: {video['width']}x{video['height']} {video['fps']} fps, "
        f"{video['seconds']:g} s, {video['faces']} face(s); engine: {rep['engine']['label']}"
    )
    print(f"{'stage':34} {'median ms':>10} {'p95 ms':>9}  {'budget':>6}  verdict")
    for label, st, budget, note in rows:
        med, p95 = st.get("median_ms"), st.get("p95_ms")
        cells = [f"{v:.2f}" if v is not None else "-" for v in (med, p95)]
        shown = f"<= {budget:g}" if budget is not None else ""
        print(
            f"{label:34} {cells[0]:>10} {cells[1]:>9}  {shown:>6}  "
            f"{verdict(med, budget):5} {note}".rstrip()
        )
    print(
        f"\nfaces per analysed frame {an['faces_per_frame']}, scored {an['faces_scored']}, "
        f"skipped {an['skip_reasons'] or 'none'}"
    )
    print(
        f"CPU-ms per second of 720p30 video: {d['cpu_ms_per_stream_second']} (wall-time means); "
        f"{d['cpu_ms_per_stream_second_process_time']} (process CPU time)"
    )
    streams = d["streams_on_2_cores"]
    print(
        f"streams on {CORES} cores in real time: {streams} (process CPU time: "
        f"{d['streams_on_2_cores_process_time']})  >= 8  {verdict(streams, 8.0, at_least=True)}"
    )
    print(f"  assuming {d['assumption']}")
    if rep["bundled_int8_vs_fp32"]:
        cmp = rep["bundled_int8_vs_fp32"]
        print(
            f"bundled detector, batch 1, 1 thread, alternating rounds: "
            f"{cmp['batch1_per_face_median_ms']} ms per face; ratio {cmp['ratio_to_int8']}"
        )
    if scan["returncode"] == 0:
        print(
            f"swapwatch scan: {scan['scan_elapsed_s']:.2f} s for {scan['media_s']:g} s of media, "
            f"real-time factor {scan['realtime_factor']} "
            f"({scan['realtime_factor_with_startup']} with process start and model load)"
        )
    else:
        print(f"swapwatch scan failed (rc {scan['returncode']}): {scan.get('stderr_tail', '')}")


def measure(args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="swapwatch-bench-") as tmp:
        model = args.model or (DEFAULT_DETECTOR if DEFAULT_DETECTOR.is_file() else None)
        trained = model is not None
        if model is None:
            model = Path(tmp) / "linear.onnx"
            write_linear_model(model)
        video = make_video(Path(tmp) / "bench.mp4", args.seconds, args.faces)
        raw_s, _, raw_cpu = decode(video, rgb=False)
        dec_s, rgb_s, dec_cpu = decode(video, rgb=True)
        images = analysed_frames(video)
        engine = create_engine("onnxruntime", model, device="cpu", threads=1)
        engine.warmup()
        stages = analyse(engine, images)
        del images
        batches = engine_batches(engine) if trained else {}
        engine.close()
        comparison = (
            compare_engines({"int8": DEFAULT_DETECTOR, "fp32": FLOAT_DETECTOR})
            if model == DEFAULT_DETECTOR and FLOAT_DETECTOR.is_file()
            else None
        )
        scan = scan_end_to_end(video, model, args.seconds)
    frames = len(dec_s)
    # Means, not medians: detection runs on only some frames. Every frame decoded and converted
    # (AvSource converts only the analysed ones, so this slightly overstates decode).
    decode_ms = 1000 * (sum(dec_s) + sum(rgb_s)) / frames
    cpu_ms = FPS * decode_ms + FPS / STRIDE * stages["analyse_per_frame"]["mean_ms"]
    cpu_ms_pt = FPS * 1000 * dec_cpu / frames + FPS / STRIDE * stages["analyse_cpu_ms_per_frame"]
    return {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "command": [sys.executable, *sys.argv],
        "machine": describe_machine(),
        "video": {
            "width": WIDTH,
            "height": HEIGHT,
            "fps": FPS,
            "seconds": args.seconds,
            "frames": frames,
            "faces": args.faces,
            "analysis_stride": STRIDE,
        },
        "engine": {
            "model": str(args.model) if args.model else model.name,
            "trained_model": trained,
            "label": "detector" if trained else TEST_MODEL_LABEL,
        },
        "decode": {
            "decode_rgb24": stats([a + b for a, b in zip(dec_s, rgb_s, strict=True)]),
            "decode_only": stats(raw_s),
            "rgb24": stats(rgb_s),
            "cpu_ms_per_frame_rgb24": round(1000 * dec_cpu / frames, 3),
            "cpu_ms_per_frame_decode_only": round(1000 * raw_cpu / frames, 3),
        },
        "analysis": stages,
        "engine_batches": batches,
        "bundled_int8_vs_fp32": comparison,
        "derived": {
            "assumption": f"perfect scaling over {CORES} cores, no other load; every frame "
            f"decoded and converted to rgb24, {FPS // STRIDE} Hz analysed",
            "decode_ms_per_frame_mean": round(decode_ms, 3),
            "cpu_ms_per_stream_second": round(cpu_ms, 1),
            "streams_on_2_cores": round(CORES * 1000 / cpu_ms, 2),
            "cpu_ms_per_stream_second_process_time": round(cpu_ms_pt, 1),
            "streams_on_2_cores_process_time": round(CORES * 1000 / cpu_ms_pt, 2),
        },
        "scan": scan,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--seconds", type=float, default=10.0, help="length of the test video")
    parser.add_argument("--model", type=Path, help="detector ONNX (default: the bundled one)")
    parser.add_argument("--faces", type=int, default=1, help="astronaut faces in the picture")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks/results/pipeline.json")
    args = parser.parse_args()
    report = measure(args)
    rows = budget_rows(report)
    report["budgets"] = {
        label.strip(): {
            "median_ms": st.get("median_ms"),
            "budget_ms": budget,
            "verdict": verdict(st.get("median_ms"), budget) or note,
        }
        for label, st, budget, note in rows
        if budget is not None
    }
    streams = report["derived"]["streams_on_2_cores"]
    report["budgets"]["streams on 2 cores"] = {
        "value": streams,
        "at_least": 8,
        "verdict": verdict(streams, 8.0, at_least=True),
    }
    print_report(report, rows)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
