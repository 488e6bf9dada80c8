"""A worker's status as the service shows it (`GET /v1/streams`), wherever the worker runs."""

from __future__ import annotations

from typing import Any

from swapwatch.stream.lifecycle import StreamState
from swapwatch.stream.status import WorkerStatus
from swapwatch.stream.worker import StreamWorker


def worker_report(worker: StreamWorker) -> dict[str, Any]:
    """State, run, video, rates, counters and tracks of `worker`, as JSON (read now: the live
    figures are those of the last seconds)."""
    worker.sync_counters()
    return status_report(worker.status, worker.state, worker.run_id)


def status_report(s: WorkerStatus, state: StreamState, run: str | None) -> dict[str, Any]:
    """`worker_report` of a worker in `state` with status `s`."""
    video = s.video
    live = s.live()
    return {
        "state": state.value,
        "run": run,
        "created": round(s.created, 3),
        "video": None
        if video is None
        else {
            "width": video.width,
            "height": video.height,
            "codec": video.codec,
            "fps": video.fps,
        },
        "fps_in": round(live.fps_in, 2),
        "fps_analysed": round(live.fps_analysed, 2),
        "frames_in": s.frames_in,
        "frames_analysed": s.frames_analysed,
        "dropped": s.dropped,
        "faces": live.faces,
        "latency_ms": None if live.latency_ms is None else round(live.latency_ms, 1),
        "alarms_raised": s.alarms_raised,
        "alarm": s.tracks.alarm,
        "reconnects": s.reconnects,
        "last_error": s.last_error,
        "tracks": [t.to_json() for t in s.tracks.sorted()],
    }
