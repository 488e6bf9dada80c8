"""`scan --report`: one self-contained HTML page a reviewer reads at a glance.

No external assets: CSS and SVG inline, thumbnails as base64 data URIs, no scripts.
"""

from __future__ import annotations

import base64
import itertools
import math
import os
from collections.abc import Callable, Sequence
from html import escape
from pathlib import Path

from swapwatch.errors import ConfigError
from swapwatch.fusion import AlarmChange, Alert, Verdict, sigmoid
from swapwatch.fusion.video import track_score
from swapwatch.stream.scan import ScanResult, Thumbnail, TrackRecord

VERDICT_COLOURS = {
    Verdict.FAKE: "#c62828",
    Verdict.REAL: "#2e7d32",
    Verdict.INCONCLUSIVE: "#616161",
}
ALERT_COLOURS = {AlarmChange.RAISED: "#c62828", AlarmChange.CLEARED: "#2e7d32"}
MAX_PLOT_POINTS = 2000  # per series; longer tracks are thinned so the page stays small
HALO = "paint-order=stroke stroke=#fff stroke-width=4 stroke-linejoin=round"
LEGEND = (
    "<p class=muted><span style='color:#1565c0'>━</span> display score (smoothed) · "
    "<span style='color:#1565c0;opacity:.5'>●</span> probability of each scored frame · "
    "<span style='color:#c62828'>╌</span> video threshold · "
    "<span style='color:#c62828'>│</span> alerts</p>"
)
Scale = Callable[[float], float]
# Plot geometry (SVG user units): the plot area sits inside these margins.
WIDTH, HEIGHT, LEFT, RIGHT, TOP, BOTTOM = 900, 220, 44, 16, 12, 34

CSS = """
body{font:15px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:#212121;
 background:#f4f5f7;margin:0}
main{max-width:980px;margin:0 auto;padding:20px}
section{background:#fff;border-radius:8px;padding:16px 20px;margin:0 0 16px;
 box-shadow:0 1px 3px rgba(0,0,0,.12)}
h1{margin:0;font-size:40px;letter-spacing:.04em}h2{margin:0 0 8px;font-size:19px}
.verdict{border-left:12px solid var(--c)}.verdict h1{color:var(--c)}
.score{font-size:22px;margin-left:14px;color:#424242}
.warn{background:#fff3cd;border:1px solid #e0b100;border-radius:6px;padding:6px 10px;margin:8px 0}
table{border-collapse:collapse}td,th{padding:2px 14px 2px 0;text-align:left;vertical-align:top}
th{color:#616161;font-weight:500}
.tag{display:inline-block;border-radius:4px;padding:0 6px;font-size:12px;color:#fff;
 background:#757575;margin-left:6px;vertical-align:middle}
.alarm{background:#c62828}.raised{color:#c62828}.cleared{color:#2e7d32}
svg{width:100%;height:auto;display:block;margin:6px 0}
.thumbs{display:flex;flex-wrap:wrap;gap:10px}
figure{margin:0;width:118px;text-align:center;font-size:12px;color:#424242}
figure img{width:112px;height:112px;border-radius:4px;display:block;border:3px solid #ccc}
.muted{color:#757575}
"""


def check_report_path(path: Path) -> None:
    """ConfigError unless a report can be written at `path`."""
    directory = path.parent
    if path.is_dir():
        raise ConfigError(f"cannot write report {path}: it is a directory")
    if not directory.is_dir():
        raise ConfigError(f"cannot write report {path}: directory {directory} does not exist")
    if not os.access(directory, os.W_OK):
        raise ConfigError(f"cannot write report {path}: directory {directory} is not writable")


def write_report(result: ScanResult, path: Path) -> None:
    """Write the HTML report of `result` to `path`; ConfigError when it cannot be written."""
    check_report_path(path)
    try:
        path.write_text(render_report(result), encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot write report {path}: {exc.strerror or exc}") from exc


def render_report(result: ScanResult) -> str:
    tracks = sorted(
        result.tracks, key=lambda t: (t.track_id not in result.main_track_ids, t.track_id)
    )
    span = max([result.media_seconds, *(t.last_seen for t in result.tracks), 1.0])
    step = _tick_step(span)
    axis = (math.ceil(span / step - 1e-9) * step, step)  # every track on the same time axis
    body = [_header(result), _alerts(result.alerts)]
    body += [_track(result, t, axis) for t in tracks]
    if not tracks:
        body.append("<section><p class=muted>No faces were found.</p></section>")
    return (
        f"<!doctype html><html lang=en><head><meta charset=utf-8>"
        f"<meta name=viewport content='width=device-width,initial-scale=1'>"
        f"<title>swapwatch: {escape(result.verdict.value)} — {escape(result.source)}</title>"
        f"<style>{CSS}</style></head><body><main>{''.join(body)}</main></body></html>\n"
    )


def _header(r: ScanResult) -> str:
    score = "n/a" if r.score is None else f"{r.score:.3f}"
    model = r.model
    warning = ""
    if model.get("trained") is False:
        warning = (
            "<div class=warn>⚠ The model is <b>not a trained detector</b> (a test or "
            "placeholder model): its scores mean nothing.</div>"
        )
    v = r.video
    video = f"{v.width}\u00d7{v.height}, {v.codec}, "
    video += f"{v.fps:.2f} fps" if v.fps else "fps unknown"
    video += ", live" if v.live else (f", {v.duration:.2f} s" if v.duration else "")
    video += ", hardware decoding" if v.hardware_decoding else ""
    c = r.counters
    frames = (
        f"{c.decoded} decoded, {r.frames_analysed} analysed ({c.skipped} skipped by rate), "
        f"{r.frames_with_faces} with faces, {r.faces_scored} faces scored, "
        f"{c.dropped} dropped, {c.decode_errors} decode errors"
    )
    rows = [
        ("Source", r.source),
        ("Model", f"{model.get('name', '?')}"),
        ("Video", video),
        ("Frames", frames),
        ("Time", f"{r.media_seconds:.2f} s of media analysed in {r.elapsed:.2f} s"),
        ("Policy", f"{r.policy}; {'picture' if r.still else 'video'} threshold {r.threshold:g}"),
    ]
    table = "".join(f"<tr><th>{k}</th><td>{escape(val)}</td></tr>" for k, val in rows)
    return (
        f"<section class=verdict style='--c:{VERDICT_COLOURS[r.verdict]}'>"
        f"<h1>{escape(r.verdict.value.upper())}<span class=score>video score {score}</span>"
        f"</h1>{warning}<table>{table}</table></section>"
    )


def _alerts(alerts: Sequence[Alert]) -> str:
    if not alerts:
        return "<section><h2>Alerts</h2><p class=muted>None.</p></section>"
    items = "".join(
        f"<li><b class={a.type.name.lower()}>{escape(a.type.value)}</b> face {a.track_id} at "
        f"<b>{_clock(a.time)}</b> (display score {a.score:.2f}, CUSUM {a.cusum:.1f})</li>"
        for a in alerts
    )
    return f"<section><h2>Alerts ({len(alerts)})</h2><ul>{items}</ul></section>"


def _track(r: ScanResult, t: TrackRecord, axis: tuple[float, float]) -> str:
    main = t.track_id in r.main_track_ids
    score = track_score(t.evidence, r.video_config.trim)
    tags = ("<span class=tag>main</span>" if main else "<span class=tag>minor</span>") + (
        "<span class='tag alarm'>ALARMED</span>" if t.alarmed else ""
    )
    skipped = ", ".join(f"{escape(k)} {n}" for k, n in sorted(t.skipped.items())) or "none"
    shown = "n/a" if score is None else f"{score:.3f}"
    facts = (
        f"<p>Score <b>{shown}</b> · {len(t.evidence)} of {t.frames_seen} frames scored · "
        f"skipped: {skipped} · seen {_clock(t.first_seen)}&ndash;{_clock(t.last_seen)} · "
        f"max CUSUM {t.max_cusum:.1f}</p>"
    )
    alerts = [a for a in r.alerts if a.track_id == t.track_id]
    plot = (
        _timeline(t, alerts, axis, r.threshold)
        if t.times
        else "<p class=muted>No frame of this face was good enough to score.</p>"
    )
    thumbs = "".join(_thumbnail(t, th, label) for th, label in _thumbnails(t))
    return (
        f"<section><h2>Face {t.track_id}{tags}</h2>{facts}{plot}"
        f"<div class=thumbs>{thumbs}</div></section>"
    )


def _thumbnails(t: TrackRecord) -> list[tuple[Thumbnail, str]]:
    """The track's thumbnails, one per media time, labelled when most fake or most real."""
    by_time: dict[float, tuple[Thumbnail, list[str]]] = {}
    spread = bool(t.evidence) and max(t.evidence) > min(t.evidence)
    for th in t.thumbnails():
        _, labels = by_time.setdefault(th.time, (th, []))
        if spread and th is t.most_fake:
            labels.append("most fake")
        if spread and th is t.most_real:
            labels.append("most real")
    return [(th, " · ".join(labels)) for th, labels in by_time.values()]


def _thumbnail(t: TrackRecord, th: Thumbnail, label: str) -> str:
    p = sigmoid(th.evidence)
    data = base64.b64encode(th.jpeg()).decode("ascii")
    return (
        f"<figure><img alt='face {t.track_id} at {th.time:.2f} s' "
        f"style='border-color:{_prob_colour(p)}' src='data:image/jpeg;base64,{data}'>"
        f"<figcaption>{_clock(th.time)} · p {p:.2f}<br>{label or '&nbsp;'}</figcaption>"
        f"</figure>"
    )


def _timeline(
    t: TrackRecord, alerts: Sequence[Alert], axis: tuple[float, float], threshold: float
) -> str:
    x_max, step = axis
    pw, ph = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM

    def x(s: float) -> float:
        return LEFT + pw * s / x_max

    def y(p: float) -> float:
        return TOP + ph * (1.0 - p)

    def tick(s: float) -> str:
        if x_max < 120:
            return f"{s:g}"
        hours, rest = divmod(round(s), 3600)
        return (f"{hours}:{rest // 60:02d}" if hours else f"{rest // 60}") + f":{rest % 60:02d}"

    out = [
        f"<svg viewBox='0 0 {WIDTH} {HEIGHT}' role=img aria-label='score timeline of face "
        f"{t.track_id}' font-size=12 fill=#616161>"
    ]
    for p in (0.0, 0.25, 0.5, 0.75, 1.0):
        out.append(
            f"<line x1={LEFT} x2={WIDTH - RIGHT} y1={y(p):.1f} y2={y(p):.1f} "
            f"stroke=#eee /><text x={LEFT - 6} y={y(p) + 4:.1f} text-anchor=end>{p:g}</text>"
        )
    for i in range(int(x_max / step + 1e-9) + 1):
        s = i * step
        out.append(
            f"<line x1={x(s):.1f} x2={x(s):.1f} y1={TOP + ph} y2={TOP + ph + 4} "
            f"stroke=#999 /><text x={x(s):.1f} y={TOP + ph + 17} "
            f"text-anchor=middle>{tick(s)}</text>"
        )
    unit = "m:ss" if x_max >= 120 else "s"
    out.append(
        f"<text x={LEFT + pw / 2} y={HEIGHT - 2} text-anchor=middle>"
        f"media time ({unit})</text>"
        f"<rect x={LEFT} y={TOP} width={pw} height={ph} fill=none stroke=#bbb />"
    )
    out.append(
        f"<line x1={LEFT} x2={WIDTH - RIGHT} y1={y(threshold):.1f} y2={y(threshold):.1f} "
        f"stroke=#c62828 stroke-dasharray='6 4' stroke-opacity=.7 />"
    )
    keep = max(1, math.ceil(len(t.times) / MAX_PLOT_POINTS))
    times, evidence, display = t.times[::keep], t.evidence[::keep], t.display[::keep]
    out += [
        f"<circle cx={x(s):.1f} cy={y(sigmoid(e)):.1f} r=2 fill=#1565c0 fill-opacity=.25 />"
        for s, e in zip(times, evidence, strict=True)
    ]
    out.append(
        f"<path d='{_line_path(times, display, x, y)}' fill=none stroke=#1565c0 stroke-width=2 />"
    )
    for a in alerts:
        colour = ALERT_COLOURS[a.type]
        out.append(
            f"<line x1={x(a.time):.1f} x2={x(a.time):.1f} y1={TOP} y2={TOP + ph} "
            f"stroke={colour} stroke-width=2 /><text x={x(a.time) + 4:.1f} y={TOP + 12} "
            f"fill={colour} {HALO}>{escape(a.type.name.lower())} {_clock(a.time)}</text>"
        )
    legend = (
        f"<text x={WIDTH - RIGHT - 6} y={y(threshold) - 5:.1f} text-anchor=end "
        f"fill=#c62828 {HALO}>threshold {threshold:g}</text>"
    )
    return "".join(out) + legend + "</svg>" + LEGEND


def _line_path(times: Sequence[float], values: Sequence[float], x: Scale, y: Scale) -> str:
    """An SVG path through the points, lifting the pen where the face was not scored for long."""
    gaps = [b - a for a, b in itertools.pairwise(times)]
    max_gap = max(1.0, 5 * sorted(gaps)[len(gaps) // 2]) if gaps else 1.0
    parts = []
    for i, (s, v) in enumerate(zip(times, values, strict=True)):
        pen = "M" if i == 0 or s - times[i - 1] > max_gap else "L"
        parts.append(f"{pen}{x(s):.1f},{y(v):.1f}")
    return "".join(parts)


def _tick_step(span: float) -> float:
    """A step giving at most ~10 ticks over `span` seconds: 1-2-5, or whole minutes when long."""
    if span >= 120:
        steps = (15, 30, 60, 120, 300, 600, 900, 1800, 3600)
        return next((m for m in steps if span / m <= 10), 3600 * math.ceil(span / 36000))
    magnitude = 10 ** math.floor(math.log10(span / 10)) if span > 0 else 1.0
    return next(m * magnitude for m in (1, 2, 5, 10) if span / (m * magnitude) <= 10)


def _clock(seconds: float, digits: int = 2) -> str:
    """Media time as a player shows it: `12.34 s` under a minute, else `1:02:03.45`."""
    if seconds < 60:
        return f"{seconds:.{digits}f} s"
    minutes, rest = divmod(seconds, 60)
    hours, minutes = divmod(int(minutes), 60)
    secs = f"{rest:0{3 + digits if digits else 2}.{digits}f}"
    return f"{hours}:{minutes:02d}:{secs}" if hours else f"{minutes}:{secs}"


def _prob_colour(p: float) -> str:
    return "#c62828" if p >= 0.5 else "#2e7d32"
