"""Figures of an evaluation, per family and pooled, with group-bootstrap intervals; as JSON and
as a text table.

Two levels: video (one score per recording, as `scan` gives it; a picture counts with its most
suspicious face) and frame (every scored face of every analysed frame, weighted by how many
frames an item has). AUC and EER need both classes: a family of only reals has none, but its
BPCER and false alarms are reported; the pooled figures put every family's fakes against every
family's reals. Alarms are counted on real recordings, per hour of real recording analysed.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from swapwatch.evaluation.metrics import (
    DetCurve,
    Interval,
    classification_errors,
    group_bootstrap,
    group_resamples,
    percentile_interval,
)
from swapwatch.evaluation.operating_point import OperatingPointConfig, operating_point
from swapwatch.evaluation.runner import EvalRun, ItemResult, ItemStatus, round_or_none
from swapwatch.fusion import Verdict, VideoConfig, sigmoid
from swapwatch.version import __version__

Metrics = dict[str, float | None]


@dataclass(frozen=True, slots=True)
class ReportConfig:
    apcer_targets: tuple[float, ...] = (0.01, 0.05, 0.10)  # report BPCER at these APCERs
    bpcer_targets: tuple[float, ...] = (0.01, 0.05)  # and APCER at these BPCERs
    resamples: int = 1000  # group bootstrap; 0: no intervals
    confidence: float = 0.95
    seed: int = 0
    operating_point: OperatingPointConfig = field(default_factory=OperatingPointConfig)


def build_report(
    run: EvalRun, config: ReportConfig | None = None, context: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The JSON object of `swapwatch eval`. `context` (the list, split, filters) is copied in."""
    config = config or ReportConfig()
    results = run.results
    threshold = run.config.video_threshold  # the one the run's verdicts were given at
    pictures = run.config.picture_threshold  # ... for pictures, where it differs
    families = sorted({r.item.family for r in results})
    model = run.model
    return {
        "swapwatch": __version__,
        **(context or {}),
        "model": {
            "name": model.name,
            "trained": model.trained,
            "temperature": model.temperature,
            "input_size": model.input_size,
            "description": model.description,
        },
        "analysis": {
            "rate": None if run.config.every else run.config.rate,
            "every": run.config.every,
            "max_seconds": run.config.max_seconds,
            "reencode_kbps": run.config.reencode_kbps,
            "policy": run.config.decision.policy.value,
            "cusum_h": run.config.decision.h,
            "video_threshold": run.config.video_threshold,
            "picture_threshold": run.config.video.threshold_for(still=True),
            "min_frames": run.config.decision.min_frames,
            "min_face": run.config.quality.min_face_px,
            "quality_gate": asdict(run.config.quality),
        },
        "bootstrap": {
            "unit": "group",
            "resamples": config.resamples,
            "confidence": config.confidence,
            "seed": config.seed,
        },
        "counts": _counts(results),
        "pooled": summarise(results, config, threshold, pictures),
        "families": {
            f: summarise([r for r in results if r.item.family == f], config, threshold, pictures)
            for f in families
        },
        # h for a false-alarm budget, and a video threshold, from this list's real recordings
        "operating_point": operating_point(
            results, run.config.decision, config.operating_point, run.config.rate
        ),
        "elapsed_seconds": round(run.elapsed, 1),
        "items": [r.to_json() for r in results],
    }


def _counts(results: Sequence[ItemResult]) -> dict[str, Any]:
    counts: dict[str, Any] = {"total": len(results), "real": 0, "fake": 0}
    counts.update({s.value: 0 for s in ItemStatus})
    for r in results:
        counts[r.item.label.value] += 1
        counts[r.status.value] += 1
    counts["groups"] = len({r.item.group for r in results})
    counts["faces_scored"] = sum(r.faces_scored for r in results)
    counts["video_hours"] = round(sum(r.media_seconds for r in results) / 3600.0, 4)
    return counts


def summarise(
    results: Sequence[ItemResult],
    config: ReportConfig,
    threshold: float = VideoConfig().threshold,
    picture_threshold: float | None = None,
) -> dict[str, Any]:
    """Figures of one set of results (a family, or all of them); `threshold` is the video
    score probability of the verdicts (pictures': `picture_threshold`, where it is set), and
    is applied to frame probabilities too."""
    scored = [r for r in results if r.status is ItemStatus.SCORED]
    video = _level(
        scores=np.array([r.score for r in scored], np.float64),
        labels=np.array([r.item.is_fake for r in scored], bool),
        groups=[r.item.group for r in scored],
        attack=np.array([r.verdict is Verdict.FAKE for r in scored], bool),
        threshold=threshold,
        config=config,
        probability=lambda s: s,
    )
    video["decision"] = "verdict"  # APCER/BPCER at the threshold: scan's verdict (alarm = fake)
    video["at_threshold"]["picture_threshold"] = picture_threshold
    framed = [r for r in results if r.faces_scored]
    frame_scores, frame_labels = np.zeros(0), np.zeros(0, bool)
    if framed:
        frame_scores = np.concatenate([r.frame_logits for r in framed])
        frame_labels = np.concatenate([np.full(r.faces_scored, r.item.is_fake) for r in framed])
    frame_groups = [r.item.group for r in framed for _ in range(r.faces_scored)]
    logit_threshold = math.log(threshold / (1.0 - threshold))
    frame = _level(
        scores=frame_scores,
        labels=frame_labels,
        groups=frame_groups,
        attack=frame_scores >= logit_threshold,
        threshold=threshold,
        config=config,
        probability=sigmoid,
    )
    frame["decision"] = "score"
    return {
        "items": _counts(results),
        "video": video,
        "frame": frame,
        "alarms": _alarms(results, config),
    }


def _level(
    scores: np.ndarray,
    labels: np.ndarray,
    groups: list[str],
    attack: np.ndarray,
    threshold: float,
    config: ReportConfig,
    probability: Any,
) -> dict[str, Any]:
    """AUC, EER and error rates at the threshold (a probability, shown as it is) and at fixed
    operating points, each with its interval. `probability` maps a score (or threshold) to the
    probability shown."""
    point = _metrics(scores, labels, attack, config)
    resampled: dict[str, list[float | None]] = {k: [] for k in point}
    if config.resamples and len(scores):
        for idx in group_resamples(groups, config.resamples, config.seed):
            for k, v in _metrics(scores[idx], labels[idx], attack[idx], config).items():
                resampled[k].append(v)

    def estimate(key: str) -> dict[str, Any]:
        interval = (
            percentile_interval(resampled[key], config.confidence) if resampled[key] else None
        )
        return {
            "value": round_or_none(point[key]),
            "ci": ci(interval),
        }

    curve = DetCurve.build(scores, labels)
    eer = curve.eer() if curve else None
    operating_points = []
    for target in config.apcer_targets:
        op = curve.at_apcer(target) if curve else None
        operating_points.append(
            {
                "name": f"BPCER@APCER={_percent(target)}",
                "fixed": "apcer",
                "target": target,
                "threshold": None if op is None else _threshold(op.threshold, probability),
                "apcer": None if op is None else round_or_none(op.apcer),
                "bpcer": estimate(f"bpcer@apcer={target}"),
            }
        )
    for target in config.bpcer_targets:
        op = curve.at_bpcer(target) if curve else None
        operating_points.append(
            {
                "name": f"APCER@BPCER={_percent(target)}",
                "fixed": "bpcer",
                "target": target,
                "threshold": None if op is None else _threshold(op.threshold, probability),
                "bpcer": None if op is None else round_or_none(op.bpcer),
                "apcer": estimate(f"apcer@bpcer={target}"),
            }
        )
    return {
        "samples": {"real": int((~labels).sum()), "fake": int(labels.sum())},
        "groups": len(set(groups)),
        "auc": estimate("auc"),
        "eer": {
            **estimate("eer"),
            "threshold": None if eer is None else _threshold(eer.threshold, probability),
        },
        "at_threshold": {
            "threshold": threshold,
            "apcer": estimate("apcer"),
            "bpcer": estimate("bpcer"),
        },
        "operating_points": operating_points,
    }


def _metrics(
    scores: np.ndarray, labels: np.ndarray, attack: np.ndarray, config: ReportConfig
) -> Metrics:
    curve = DetCurve.build(scores, labels)
    apcer, bpcer = classification_errors(attack, labels)
    out: Metrics = {
        "auc": curve.auc if curve else None,
        "eer": curve.eer().apcer if curve else None,
        "apcer": apcer,
        "bpcer": bpcer,
    }
    for t in config.apcer_targets:
        out[f"bpcer@apcer={t}"] = curve.at_apcer(t).bpcer if curve else None
    for t in config.bpcer_targets:
        out[f"apcer@bpcer={t}"] = curve.at_bpcer(t).apcer if curve else None
    return out


def _alarms(results: Sequence[ItemResult], config: ReportConfig) -> dict[str, Any]:
    """False alarms: alarms raised on real recordings that were read, per hour of them."""
    reals = [
        r for r in results if r.is_video and not r.item.is_fake and r.status is not ItemStatus.ERROR
    ]
    raised = np.array([r.alarms_raised for r in reals], np.float64)
    hours = np.array([r.media_seconds / 3600.0 for r in reals], np.float64)

    def per_hour(idx: np.ndarray) -> float | None:
        total = hours[idx].sum()
        return float(raised[idx].sum() / total) if total > 0 else None

    everything = np.arange(len(reals))
    interval = (
        group_bootstrap(
            per_hour,
            [r.item.group for r in reals],
            config.resamples,
            config.seed,
            config.confidence,
        )
        if config.resamples and reals
        else None
    )
    return {
        "real_videos": len(reals),
        "real_videos_alarmed": sum(r.alarmed for r in reals),
        "raised_on_real": int(raised.sum()),
        "real_hours": round(float(hours.sum()), 6),
        "per_hour": {
            "value": round_or_none(per_hour(everything)),
            "ci": ci(interval),
        },
    }


def ci(interval: Interval | None) -> list[float | None] | None:
    """A confidence interval as JSON."""
    return None if interval is None else [round_or_none(interval.low), round_or_none(interval.high)]


def _threshold(value: float, probability: Any) -> float | None:
    return None if not math.isfinite(value) else round_or_none(probability(value), 6)


def _percent(fraction: float) -> str:
    return f"{100 * fraction:g}%"


# Text ---------------------------------------------------------------------------------------


def render_text(report: dict[str, Any]) -> str:
    """The human-readable form of the report."""
    model = report["model"]
    analysis = report["analysis"]
    counts = report["counts"]
    boot = report["bootstrap"]
    lines = [
        f"model {model['name']}" + ("" if model["trained"] else " (NOT a trained detector)"),
    ]
    if model.get("description"):
        lines.append(f"  {model['description']}")
    where = [f"list {report.get('list', '?')}"]
    if report.get("split"):
        where.append(f"split {report['split']}")
    if report.get("families_selected"):
        where.append("families " + ", ".join(report["families_selected"]))
    if analysis.get("reencode_kbps"):
        where.append(f"re-encoded to H.264 at {analysis['reencode_kbps']} kbps")
    rate = f"every {analysis['every']} frames" if analysis["every"] else f"{analysis['rate']:g} fps"
    where.append(f"analysed at {rate}")
    lines.append("; ".join(where))
    lines.append(
        f"{counts['total']} items ({counts['real']} real, {counts['fake']} fake, "
        f"{counts['groups']} groups): {counts['scored']} scored, {counts['inconclusive']} "
        f"inconclusive, {counts['no_face']} no face, {counts['error']} unreadable; "
        f"{counts['faces_scored']} faces scored in {report.get('elapsed_seconds', 0):.0f}s"
    )
    lines.extend(
        f"  unreadable: {item['name']}: {item['error']}"
        for item in report.get("items", [])
        if item["status"] == "error"
    )
    if boot["resamples"]:
        lines.append(
            f"[brackets]: {100 * boot['confidence']:g}% intervals from {boot['resamples']} "
            "bootstrap resamples of groups"
        )
    lines.append(
        "video at the threshold: scan's verdict (an alarm makes it fake); frame: a calibrated "
        "probability per scored face"
    )
    sections = [("pooled", report["pooled"])]
    sections += [(f"family {name}", s) for name, s in report["families"].items()]
    for title, summary in sections:
        lines.append("")
        lines.extend(_section(title, summary))
    lines.append("")
    if report.get("operating_point"):
        lines.extend(_operating_point(report["operating_point"]))
    else:
        lines.append("operating point: none, as no real recording of the list has a scored face")
    return "\n".join(lines)


def _operating_point(point: dict[str, Any]) -> list[str]:
    budget = point["false_alarm_budget_per_hour"]
    minutes = point["real_track_seconds"] / 60
    lines = [
        f"operating point, from {minutes:.3g} min of real face tracks ({point['real_tracks']} "
        f"tracks in {point['real_recordings']} real recordings); the cost on "
        f"{point['fake_tracks']} fake face tracks:",
        f"  {point['method']}",
        f"  {'h':>6}  {'false alarms/h':>14}  {'real tracks alarmed':>19}  "
        f"{'fake tracks alarmed':>19}  median delay",
    ]
    current, recommended = point["current_h"], point["recommended_h"]
    rows = {row["h"]: row for row in point["sweep"]}
    rows[current] = point["at_current_h"]
    rows[recommended] = point["at_recommended_h"]
    for h in sorted(rows):
        row = rows[h]
        alarmed = row["fake_tracks_alarmed"]
        delay = row["median_delay_seconds"]
        marks = (("recommended", recommended), ("used", current))
        mark = [name for name, value in marks if value == h]
        lines.append(
            f"  {h:>6g}  {row['false_alarms_per_hour']:>14.3f}  {row['real_tracks_alarmed']:>19}  "
            f"{'-' if alarmed is None else f'{100 * alarmed:.0f}%':>19}  "
            f"{'-' if delay is None else f'{delay:.1f} s':>12}"
            + (f"  <- {', '.join(mark)}" if mark else "")
        )
    why = {
        "resampled": f"the smallest h with at most {budget:g} false alarms per resampled "
        "stream-hour",
        "own_real_tracks": "just above the highest CUSUM a real track reached by itself "
        f"({point['highest_real_track_cusum']:g}; false evidence that outlasts the blocks)",
        "independent_frames": f"the independent-frame bound ln(r * 3600 / {budget:g})",
    }
    lines.append(f"  recommended --cusum-h {recommended:g}: {why[point['binding']]}")
    video = point["video"]
    if video["threshold"] is not None:
        lines.append(
            f"  recommended --video-threshold {video['threshold']:g}: above every real "
            f"recording's video score (highest {video['highest_real_score']:.3f}); "
            f"{video['fakes_at_or_above']} of {video['fakes']} fake recordings reach it"
        )
    elif video["highest_real_score"] is not None:
        lines.append(
            f"  no --video-threshold is recommended: a real recording scores "
            f"{video['highest_real_score']:.3f}, above any useful threshold"
        )
    lines.append(
        f"  rates under one per {minutes:.3g} min were not observed but extrapolated by "
        "resampling what was"
        + (
            ""
            if point["enough_real_footage"]
            else "; caution: under 10 minutes of real face tracks, measure more real footage"
        )
    )
    return lines


def _section(title: str, summary: dict[str, Any]) -> list[str]:
    video, frame = summary["video"], summary["frame"]
    items = summary["items"]
    lines = [
        f"{title}: {items['real']} real / {items['fake']} fake items in {items['groups']} groups; "
        f"scored {video['samples']['real']} / {video['samples']['fake']} videos, "
        f"{frame['samples']['real']} / {frame['samples']['fake']} frames"
    ]
    width = 28
    lines.append(f"  {'':{width}}{'video':<26}{'frame':<26}")

    def row(label: str, v: dict[str, Any] | None, f: dict[str, Any] | None) -> None:
        if (v is None or v["value"] is None) and (f is None or f["value"] is None):
            return
        lines.append(f"  {label:{width}}{_cell(v):<26}{_cell(f):<26}")

    row("AUC", video["auc"], frame["auc"])
    row("EER", video["eer"], frame["eer"])
    threshold = video["at_threshold"]["threshold"]
    at = video["at_threshold"], frame["at_threshold"]
    pictures = video["at_threshold"].get("picture_threshold")
    at_label = f"{threshold:g}" + (
        f" (pict. {pictures:g})" if pictures is not None and pictures != threshold else ""
    )
    row(f"APCER at {at_label}", at[0]["apcer"], at[1]["apcer"])
    row(f"BPCER at {at_label}", at[0]["bpcer"], at[1]["bpcer"])
    for v_op, f_op in zip(video["operating_points"], frame["operating_points"], strict=True):
        key = "bpcer" if v_op["fixed"] == "apcer" else "apcer"
        row(v_op["name"], v_op[key], f_op[key])
    alarms = summary["alarms"]
    if alarms["real_videos"]:
        rate = alarms["per_hour"]
        minutes = alarms["real_hours"] * 60
        lines.append(
            f"  false alarms: {alarms['raised_on_real']} raised, "
            f"{alarms['real_videos_alarmed']} of {alarms['real_videos']} real videos alarmed "
            f"in {minutes:.3g} min of real video: "
            f"{_cell(rate)} per hour"
        )
    return lines


def _cell(estimate: dict[str, Any] | None) -> str:
    if estimate is None or estimate["value"] is None:
        return "-"
    text = f"{estimate['value']:.3f}"
    if estimate.get("ci"):
        low, high = estimate["ci"]
        text += f" [{low:.3f}, {high:.3f}]"
    return text
