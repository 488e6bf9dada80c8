"""Writes a model's operating point into its ONNX metadata, so the model carries the verdict
settings that were measured for it (`benchmarks/generalization.py` chooses them on the
validation part) and every command uses them unless told otherwise."""

from __future__ import annotations

import hashlib
import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import onnx

from swapwatch.engines.base import METADATA_KEY, ModelInfo, OperatingPoint
from swapwatch.errors import ConfigError, ModelError


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_info(proto: onnx.ModelProto, path: Path) -> ModelInfo:
    props = {p.key: p.value for p in proto.metadata_props}
    if METADATA_KEY not in props:
        raise ModelError(f"{path} carries no swapwatch metadata: not a swapwatch detector")
    return ModelInfo.from_json(props[METADATA_KEY])


def measured_point(results: Path, detector: str) -> tuple[dict[str, Any], str]:
    """The operating point a validation run of the yardstick chose for `detector`, and the
    sha256 of the file it measured."""
    try:
        entry = json.loads(results.read_text())["detectors"][detector]
    except FileNotFoundError:
        raise ConfigError(f"no such results file {results}") from None
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"{results} is not a generalization.py results file: {exc}") from None
    except KeyError:
        raise ConfigError(f"{results} has no detector {detector!r}") from None
    point = entry.get("operating_point")
    if not point or "set_on" not in point:
        raise ConfigError(
            f"{results} chose no operating point for {detector!r}: only a run on the validation "
            "part chooses one (points given with --operating-point are not re-stamped)"
        )
    if point.get("h") is None:
        raise ConfigError(
            f"the point chosen for {detector!r} raises no live alarm (h is null): a shipped "
            "model needs a CUSUM h for live streams"
        )
    return point, str(entry.get("sha256", ""))


def _picture_point(chosen: dict[str, Any]) -> dict[str, Any]:
    """The picture threshold and its figures, where the run chose them (runs before pictures
    had their own chose one threshold for both)."""
    pictures = chosen.get("pictures") or {}
    if not pictures.get("real_pictures"):
        return {}
    if chosen.get("picture_threshold") is None:
        raise ConfigError(
            "the run found no picture threshold that calls at most its target of the real "
            "pictures fake; judged at the video threshold they would miss it (stamp refused)"
        )
    return {
        "picture_threshold": float(chosen["picture_threshold"]),
        "real_pictures": int(pictures["real_pictures"]),
        "pictures_called_fake": int(pictures["reals_called_fake"]),
        "picture_called_fake_upper_95": float(pictures["real_called_fake_upper_95"]),
    }


def stamp(model: Path, results: Path, detector: str | None = None) -> OperatingPoint:
    """Write the point into `model` in place (atomically) and return it. Refused unless the
    results measured this very model: the same file, or the same weights stamped before."""
    if not model.is_file():
        raise ConfigError(f"no such model {model}")
    proto = onnx.load(str(model))
    info = read_info(proto, model)
    name = detector or model.stem
    chosen, measured_sha = measured_point(results, name)
    own = file_sha256(model)
    earlier = info.operating_point.model_sha256 if info.operating_point else ""
    if measured_sha not in (own, earlier):
        raise ConfigError(
            f"{results} measured another file as {name!r} (sha256 {measured_sha[:12]}…, this "
            f"one is {own[:12]}…): measure this model with generalization.py first"
        )
    point = OperatingPoint(
        video_threshold=float(chosen["threshold"]),
        cusum_h=float(chosen["h"]),
        set_on=f"{chosen['set_on']}; {results.name}",
        real_recordings=int(chosen["real_recordings"]),
        reals_called_fake=int(chosen["reals_called_fake"]),
        real_called_fake_upper_95=float(chosen["real_called_fake_upper_95"]),
        model_sha256=measured_sha,
        **_picture_point(chosen),
    )
    props = {p.key: p.value for p in proto.metadata_props}
    props[METADATA_KEY] = replace(info, operating_point=point).to_json()
    onnx.helper.set_model_props(proto, props)
    partial = model.with_suffix(".partial.onnx")
    onnx.save(proto, str(partial))
    partial.replace(model)
    return point
