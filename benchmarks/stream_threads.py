"""Where a live stream's CPU goes: the service's CPU time per thread kind, per stream-second.

    .venv/bin/python benchmarks/stream_threads.py [--streams 8] [--seconds 15] [--clip FILE]
                                                  [--model FILE.onnx]
                                                  [--out benchmarks/results/stream_threads.json]

A fresh `swapwatch serve` takes N RTMP push ingests of real camera footage (as streams.py
pushes it); each Python thread gets its name as the OS thread's (benchmarks/thread_names), and
the CPU time of every thread of the service is read from /proc over --seconds after a warm-up,
then summed by kind: the decode thread of each stream (with FFmpeg's own threads), its analysis
thread (`s-<stream>`: landmarks, crops, quality, fusion), the shared `inference` thread (the
detector), MediaPipe's graph threads (`drishti`: face detection), the event loop (`swapwatch`).
Run it on an otherwise idle machine.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import re
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))

from machine import result_header  # noqa: E402
from streams import REAL_CLIP, http, live_service  # noqa: E402

THREAD_NAMES = REPO / "benchmarks" / "thread_names"
# One kind per thread name: the stream id, counters and pool suffixes are dropped.
KINDS = (
    ("decode", re.compile(r"^decode:")),
    ("analysis", re.compile(r"^s-")),
    ("inference", re.compile(r"^inference")),
    ("face detection (MediaPipe)", re.compile(r"^drishti")),
    ("event loop", re.compile(r"^swapwatch$")),
)


def kind_of(name: str) -> str:
    return next((kind for kind, pattern in KINDS if pattern.search(name)), "other")


def thread_cpu(pid: int) -> dict[int, tuple[str, float]]:
    """Thread id -> (name, CPU seconds) of every thread of `pid`."""
    ticks = os.sysconf("SC_CLK_TCK")
    found = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            name = Path(f"/proc/{pid}/task/{tid}/comm").read_text().strip()
            fields = Path(f"/proc/{pid}/task/{tid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:  # the thread ended meanwhile
            continue
        found[int(tid)] = (name, (int(fields[11]) + int(fields[12])) / ticks)
    return found


def measure(streams: int, seconds: float, clip: Path, model: Path | None) -> dict[str, Any]:
    names = {"PYTHONPATH": os.pathsep.join([str(THREAD_NAMES), str(REPO)])}
    with live_service(streams, clip, seconds, model, environ=names) as (service, base):
        before, first = thread_cpu(service.pid), http(base, "/v1/streams")["streams"]
        started = time.monotonic()
        time.sleep(seconds)
        after, last = thread_cpu(service.pid), http(base, "/v1/streams")["streams"]
        elapsed = time.monotonic() - started
    by_kind: dict[str, float] = collections.defaultdict(float)
    for tid, (name, cpu) in after.items():
        by_kind[kind_of(name)] += cpu - before.get(tid, (name, 0.0))[1]
    analysed = sum(s["frames_analysed"] for s in last) - sum(s["frames_analysed"] for s in first)
    decoded = sum(s["frames_in"] for s in last) - sum(s["frames_in"] for s in first)
    per = 1000.0 / elapsed / streams
    return {
        "streams": streams,
        "seconds": round(elapsed, 2),
        "frames_in_per_stream_second": round(decoded / elapsed / streams, 2),
        "frames_analysed_per_stream_second": round(analysed / elapsed / streams, 2),
        "cpu_ms_per_stream_second": round(sum(by_kind.values()) * per, 1),
        "by_thread_kind_ms_per_stream_second": {
            kind: round(cpu * per, 1)
            for kind, cpu in sorted(by_kind.items(), key=lambda kv: -kv[1])
        },
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--streams", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--clip", type=Path, default=REAL_CLIP)
    parser.add_argument("--model", type=Path, help="detector ONNX (default: the bundled one)")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks/results/stream_threads.json")
    args = parser.parse_args()
    if not args.clip.is_file():
        parser.error(f"no clip at {args.clip} (see ../shared/data/README.md)")
    result = measure(args.streams, args.seconds, args.clip, args.model)
    print(
        f"{result['streams']} streams of {args.clip.name}: "
        f"{result['cpu_ms_per_stream_second']} CPU-ms per stream-second, "
        f"{result['frames_analysed_per_stream_second']} frames analysed a second each"
    )
    for kind, ms in result["by_thread_kind_ms_per_stream_second"].items():
        print(f"  {kind:28s} {ms:7.1f}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(
        json.dumps(
            {
                **result_header("stream_threads"),
                "clip": args.clip.name,
                "model": str(args.model or "bundled"),
                **result,
            },
            indent=1,
        )
        + "\n"
    )
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
