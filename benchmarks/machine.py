"""What a benchmark ran on, recorded with its figures: this machine is shared, so load matters."""

from __future__ import annotations

import datetime
import json
import os
import platform
import re
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

PACKAGES = ("av", "onnxruntime", "mediapipe", "ai-edge-litert", "numpy", "opencv-contrib-python")


def describe(packages: tuple[str, ...] = PACKAGES) -> dict[str, Any]:
    cpu = "unknown"
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    versions: dict[str, str | None] = {}
    for name in packages:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "usable_cores": len(os.sched_getaffinity(0)),
        "load_average": [round(v, 2) for v in os.getloadavg()],
        "platform": platform.platform(),
        "python": platform.python_version(),
        "versions": versions,
    }


def result_header(benchmark: str) -> dict[str, Any]:
    """The fields every results file starts with: what ran, when, where, and how it was called."""
    return {
        "benchmark": benchmark,
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "machine": describe(),
        "command": " ".join([f"benchmarks/{Path(sys.argv[0]).name}", *sys.argv[1:]]),
    }


def write_results(
    path: Path, benchmark: str, fields: dict[str, Any], indent: int = 2, flat_lists: bool = False
) -> None:
    """Write the results file: the common header, then this benchmark's own fields.
    `flat_lists` writes each list of plain values on one line (long per-item tables)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    document = {**result_header(benchmark), **fields}
    path.write_text(results_text(document, indent, flat_lists))
    print(f"wrote {path}")


def results_text(document: dict[str, Any], indent: int = 2, flat_lists: bool = False) -> str:
    text = json.dumps(document, indent=indent)
    if flat_lists:
        # A newline in JSON text is always layout (strings escape theirs).
        text = re.sub(r"\[[^\[\]{}]*\]", lambda m: re.sub(r"\n\s*", "", m.group(0)), text)
    return text + "\n"
