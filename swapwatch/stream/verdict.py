"""The operating point a run decides at, and how a result names its model.

An explicit setting wins, then the model's own operating point (set on held-out real footage),
then the built-in default. `scan`, `eval` and the Python API resolve it here alike.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from swapwatch.engines.base import Engine, ModelInfo
from swapwatch.fusion import DecisionConfig, VideoConfig

DEFAULT_DECISION = DecisionConfig()
DEFAULT_VIDEO = VideoConfig()


@dataclass(frozen=True, slots=True)
class VerdictSettings:
    """The video threshold, CUSUM `h` and picture threshold a run uses, and where each came
    from: `option` (given), `model` (the model's operating point) or `default`. A threshold
    given as an option is every medium's."""

    video_threshold: float
    cusum_h: float
    video_threshold_from: str
    cusum_h_from: str
    picture_threshold: float | None = None  # None: the video threshold
    picture_threshold_from: str = "default"

    def video_config(self, min_frames: int) -> VideoConfig:
        return VideoConfig(
            threshold=self.video_threshold,
            picture_threshold=self.picture_threshold,
            min_frames=min_frames,
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "video_threshold": self.video_threshold,
            "cusum_h": self.cusum_h,
            "picture_threshold": self.picture_threshold or self.video_threshold,
            "from": {
                "video_threshold": self.video_threshold_from,
                "cusum_h": self.cusum_h_from,
                "picture_threshold": self.picture_threshold_from,
            },
        }


def verdict_settings(
    info: ModelInfo, video_threshold: float | None = None, cusum_h: float | None = None
) -> VerdictSettings:
    """A value given wins, then the model's operating point, then the built-in default."""
    point = info.operating_point
    return VerdictSettings(
        video_threshold=(
            video_threshold
            if video_threshold is not None
            else point.video_threshold
            if point
            else DEFAULT_VIDEO.threshold
        ),
        cusum_h=cusum_h if cusum_h is not None else point.cusum_h if point else DEFAULT_DECISION.h,
        video_threshold_from=_origin(video_threshold, point is not None),
        cusum_h_from=_origin(cusum_h, point is not None),
        picture_threshold=(
            video_threshold
            if video_threshold is not None
            else point.threshold_for_pictures
            if point
            else None
        ),
        picture_threshold_from=_origin(video_threshold, point is not None),
    )


def _origin(given: float | None, model_has_one: bool) -> str:
    return "option" if given is not None else "model" if model_has_one else "default"


def model_description(engine: Engine, settings: VerdictSettings | None = None) -> dict[str, Any]:
    """The `model` object of a scan result."""
    info = engine.info
    description: dict[str, Any] = {
        "name": info.name,
        "trained": info.trained,
        "temperature": info.temperature,
        "input_size": info.input_size,
    }
    if settings is not None:
        description["verdict_settings"] = settings.to_json()
    return description
