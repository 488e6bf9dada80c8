"""Calibration and the temporal decision rule."""

from swapwatch.fusion.rule import (
    AlarmChange,
    Alert,
    DecisionConfig,
    Policy,
    TrackDecision,
    TrackUpdate,
    cusum_threshold,
    frame_weight,
    rate_weighted,
    sigmoid,
)
from swapwatch.fusion.video import TrackEvidence, Verdict, VideoConfig, video_decision

__all__ = [
    "AlarmChange",
    "Alert",
    "DecisionConfig",
    "Policy",
    "TrackDecision",
    "TrackEvidence",
    "TrackUpdate",
    "Verdict",
    "VideoConfig",
    "cusum_threshold",
    "frame_weight",
    "rate_weighted",
    "sigmoid",
    "video_decision",
]
