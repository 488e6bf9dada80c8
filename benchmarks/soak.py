"""Does one `swapwatch serve` hold N live streams for an hour without growing?

    .venv/bin/python benchmarks/soak.py [--streams 8] [--minutes 60] [--warmup-minutes 10]
                                        [--sample-seconds 60] [--model FILE]
                                        [--out benchmarks/results/soak.json]

A fresh service (its own process, its own outbox in a temporary folder) with a webhook sink to a
receiver in this script, which checks every signature. N RTMP push ingests, each fed by a
publisher process that loops one real recording of `../shared/data` in real time for the whole
run (`soak_publisher.py`, packets remuxed, not re-encoded). Half the recordings are live swaps
(DeepFaceLive), so alerts are raised and cleared all along (monitoring policy).

Every --sample-seconds (default a minute) it records the service process's resident memory, open
file descriptors and threads (from /proc), its CPU, the event loop's lag (mean and p99 from
`swapwatch_event_loop_lag_seconds`), frames decoded, analysed and dropped, alerts recorded and
alerts delivered to the receiver, and the machine's load. A publisher that dies is started again
with the same key and counted. At the end the publishers stop, the receiver must hold every
alert the outbox recorded, and the service gets SIGTERM.

The figure that decides: the least-squares slope of RSS (MiB per hour) and of the thread count
over the samples after the warm-up. Flat means the slope is within noise of 0.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data"
sys.path.insert(0, str(REPO / "tests"))

from machine import write_results  # noqa: E402
from prometheus_client.parser import text_string_to_metric_families  # noqa: E402
from receivers import Receiver, free_port  # noqa: E402

# Real recordings, camera-like, looped: four real people, four live swaps (two of them
# side by side with the real streamer, so one picture holds a real and a swapped face).
RECORDINGS = (
    "real/fsgan/shinzo_abe.mp4",  # 1280x720, the data's camera-like 720p clip
    "dfl/Dean_Wiesel/Dean_Wiesel_2.mp4",  # live swap, single panel
    "real/liveportrait/d6.mp4",
    "dfl/Emily_Winston/Emily_Winston_1.mp4",  # real | live swap
    "real/liveportrait/d9.mp4",
    "dfl/Nicola_Badge/Nicola_Badge_2.mp4",  # live swap, single panel
    "real/liveportrait/d14.mp4",
    "dfl/Yohanna_Coralson/Yohanna_Coralson_1.mp4",  # real | live swap
)
PUBLISHER = REPO / "benchmarks" / "soak_publisher.py"
SECRET_ENV = "SOAK_HOOK_SECRET"


@dataclass
class Publisher:
    stream: str
    recording: Path
    url: str
    log: Path
    process: subprocess.Popen[bytes] | None = None
    restarts: int = 0

    def start(self, seconds: float) -> None:
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, str(PUBLISHER), str(self.recording), self.url, str(seconds)],
                stdout=subprocess.DEVNULL,
                stderr=log,
            )

    def last_words(self) -> str:
        """The last line its stderr holds, the stream key hidden."""
        lines = self.log.read_text(errors="replace").strip().splitlines()
        words = lines[-1] if lines else f"exit {self.process and self.process.returncode}"
        return words.replace(self.url, self.url.rsplit("/", 1)[0] + "/***")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()


# A stream's counter in its status, and the name of its sum over the streams.
COUNTED = {
    "frames_in": "frames_decoded",
    "frames_analysed": "frames_analysed",
    "dropped": "frames_dropped",
}


@dataclass
class Totals:
    """Counters summed over the streams; a stream whose counters start again still adds up."""

    last: dict[str, dict[str, int]] = field(default_factory=dict)
    sums: Counter[str] = field(default_factory=Counter)

    def update(self, streams: list[dict[str, Any]]) -> dict[str, int]:
        for status in streams:
            before = self.last.get(status["id"], {})
            for key, name in COUNTED.items():
                now, then = int(status[key]), before.get(key, 0)
                self.sums[name] += now - then if now >= then else now
            self.last[status["id"]] = {key: int(status[key]) for key in COUNTED}
        return {name: self.sums[name] for name in COUNTED.values()}


def http(base: str, path: str, body: Any = None) -> Any:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(base + path, data=data, method="POST" if data else "GET")
    request.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(request, timeout=30) as response:
        text = response.read().decode()
    return text if path == "/metrics" else json.loads(text)


def proc_status(pid: int) -> dict[str, Any]:
    fields = dict(
        line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines()
    )
    stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return {
        "rss_mib": round(int(fields["VmRSS"].split()[0]) / 1024, 1),
        "threads": int(fields["Threads"]),
        "open_fds": len(os.listdir(f"/proc/{pid}/fd")),
        "cpu_s": (int(stat[11]) + int(stat[12])) / os.sysconf("SC_CLK_TCK"),
    }


def scrape(text: str) -> dict[str, Any]:
    """The few series the soak follows, from one /metrics page."""
    lag_buckets: dict[float, float] = {}
    found: dict[str, Any] = {"lag_sum": 0.0, "lag_count": 0.0, "alerts_recorded": 0.0}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "swapwatch_event_loop_lag_seconds_bucket":
                lag_buckets[float(sample.labels["le"])] = sample.value
            elif sample.name == "swapwatch_event_loop_lag_seconds_sum":
                found["lag_sum"] = sample.value
            elif sample.name == "swapwatch_event_loop_lag_seconds_count":
                found["lag_count"] = sample.value
            elif (
                sample.name == "swapwatch_events_recorded_total"
                and sample.labels.get("type") == "alert.raised"
            ):
                found["alerts_recorded"] = sample.value
    found["lag_buckets"] = lag_buckets
    return found


def lag_over(now: dict[str, Any], before: dict[str, Any]) -> dict[str, float | None]:
    """Mean and p99 (upper bound of its bucket) of the loop lag measured between two scrapes."""
    count = now["lag_count"] - before["lag_count"]
    if count <= 0:
        return {"mean_ms": None, "p99_ms_upper_bound": None}
    p99 = None
    for le in sorted(now["lag_buckets"]):
        if now["lag_buckets"][le] - before["lag_buckets"].get(le, 0.0) >= 0.99 * count:
            p99 = le * 1000.0
            break
    return {
        "mean_ms": round(1000.0 * (now["lag_sum"] - before["lag_sum"]) / count, 2),
        "p99_ms_upper_bound": p99,
    }


def slope_per_hour(points: list[tuple[float, float]]) -> float | None:
    """Least-squares slope of (minutes, value) points, per hour; None under three points."""
    if len(points) < 3:
        return None
    minutes, values = zip(*points, strict=True)
    return round(statistics.linear_regression(minutes, values).slope * 60.0, 3)


def wait_ready(base: str, service: subprocess.Popen[bytes], timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if service.poll() is not None:
            raise RuntimeError(f"the service exited with {service.returncode} while starting")
        try:
            if http(base, "/readyz")["status"] == "ready":
                return
        except OSError:
            pass
        time.sleep(0.5)
    raise RuntimeError("the service did not become ready")


def delivered_alerts(receiver: Receiver) -> tuple[int, int, int]:
    """(alert.raised events received once or more, deliveries of all types, bad signatures)."""
    deliveries = list(receiver.deliveries)
    raised = {d.event_id for d in deliveries if json.loads(d.body)["type"] == "alert.raised"}
    return len(raised), len(deliveries), sum(not d.signature_ok for d in deliveries)


class Sampler:
    """One sample of the service at a time; rates and lag cover the time since the last one."""

    def __init__(self, base: str, pid: int, receiver: Receiver) -> None:
        self.base, self.pid, self.receiver = base, pid, receiver
        self.totals = Totals()
        self.previous = scrape(http(base, "/metrics"))
        self.cpu_before, self.at_before = proc_status(pid)["cpu_s"], time.monotonic()

    def take(self, minute: float, publishers: list[Publisher]) -> dict[str, Any]:
        process = proc_status(self.pid)
        metrics = scrape(http(self.base, "/metrics"))
        streams = http(self.base, "/v1/streams")["streams"]
        now = time.monotonic()
        raised, deliveries, bad = delivered_alerts(self.receiver)
        cpu = (process["cpu_s"] - self.cpu_before) / max(now - self.at_before, 1e-9)
        sample = {
            "minute": round(minute, 2),
            "rss_mib": process["rss_mib"],
            "open_fds": process["open_fds"],
            "threads": process["threads"],
            "cpu_percent": round(100 * cpu, 1),
            "loop_lag": lag_over(metrics, self.previous),
            **self.totals.update(streams),
            "streams_running": sum(s["state"] == "running" for s in streams),
            "alerts_recorded": int(metrics["alerts_recorded"]),
            "alerts_delivered": raised,
            "deliveries": deliveries,
            "bad_signatures": bad,
            "publisher_restarts": sum(p.restarts for p in publishers),
            "load_average_1m": round(os.getloadavg()[0], 2),
        }
        self.previous, self.cpu_before, self.at_before = metrics, process["cpu_s"], now
        return sample


def print_sample(sample: dict[str, Any], streams: int) -> None:
    print(
        f"  {sample['minute']:6.1f} min  rss {sample['rss_mib']:7.1f} MiB  "
        f"fds {sample['open_fds']:4d}  threads {sample['threads']:3d}  "
        f"lag mean {sample['loop_lag']['mean_ms']} ms  "
        f"analysed {sample['frames_analysed']}  "
        f"alerts {sample['alerts_delivered']}/{sample['alerts_recorded']}  "
        f"running {sample['streams_running']}/{streams}",
        flush=True,
    )


def tail(path: Path, lines: int = 20) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


def run(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    recordings = [DATA / RECORDINGS[i % len(RECORDINGS)] for i in range(args.streams)]
    missing = [str(p) for p in recordings if not p.is_file()]
    if missing:
        raise SystemExit(f"soak: recordings not found (../shared/data): {', '.join(missing)}")
    secret = os.urandom(16).hex()
    receiver = Receiver(secret=secret).start()
    port, low = free_port(), free_port()
    env = {
        **os.environ,
        SECRET_ENV: secret,
        "SWAPWATCH_HTTP_PORT": str(port),
        "SWAPWATCH_LIMITS_MAX_STREAMS": str(args.streams),
        "SWAPWATCH_INGEST_RTMP_HOST": "127.0.0.1",
        "SWAPWATCH_INGEST_RTMP_PORTS": f"{low},{low + args.streams + 5}",
        "SWAPWATCH_EVENTS_PATH": str(workdir / "events.sqlite"),
        "SWAPWATCH_EVENTS_SINKS": f"webhook:{receiver.url};secret=env:{SECRET_ENV}",
    }
    command = [sys.executable, "-m", "swapwatch", "serve"]
    if args.model is not None:
        command += ["--model", str(args.model)]
    log_path = workdir / "service.log"
    base = f"http://127.0.0.1:{port}"
    seconds = args.minutes * 60.0
    publishers: list[Publisher] = []
    samples: list[dict[str, Any]] = []
    with log_path.open("wb") as log:
        service = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            wait_ready(base, service)
            for i, recording in enumerate(recordings):
                reply = http(base, "/v1/streams", {"ingest": "rtmp", "id": f"soak-{i}"})
                publisher = Publisher(
                    reply["id"], recording, reply["ingest_url"], workdir / f"publisher-{i}.log"
                )
                publisher.start(seconds + 60.0)
                publishers.append(publisher)
            sampler = Sampler(base, service.pid, receiver)
            start = time.monotonic()
            step = 0
            while True:
                elapsed = time.monotonic() - start
                if service.poll() is not None:
                    raise SystemExit(
                        f"soak: the service exited with {service.returncode} after "
                        f"{elapsed / 60:.1f} min; its log ends:\n{tail(log_path)}"
                    )
                for publisher in publishers:
                    if publisher.process is not None and publisher.process.poll() is not None:
                        publisher.restarts += 1
                        print(f"  publisher {publisher.stream} stopped: {publisher.last_words()}")
                        publisher.start(seconds - elapsed + 60.0)
                if elapsed >= step * args.sample_seconds:
                    samples.append(sampler.take(elapsed / 60.0, publishers))
                    print_sample(samples[-1], args.streams)
                    step += 1
                    if elapsed >= seconds:
                        break
                time.sleep(1.0)
            for publisher in publishers:
                publisher.stop()
            recorded = int(scrape(http(base, "/metrics"))["alerts_recorded"])
            deadline = time.monotonic() + 60.0
            while delivered_alerts(receiver)[0] < recorded and time.monotonic() < deadline:
                time.sleep(0.5)
            stop_started = time.monotonic()
            service.send_signal(signal.SIGTERM)
            exit_code = service.wait(120)
            stop_seconds = round(time.monotonic() - stop_started, 1)
            # The service drains its sinks before it exits: every event it sent is here now.
            raised, deliveries, bad = delivered_alerts(receiver)
        finally:
            for publisher in publishers:
                publisher.stop()
            if service.poll() is None:
                service.kill()
                service.wait()
            receiver.stop()
    return {
        "samples": samples,
        "ending": {
            "alerts_recorded": recorded,
            "alerts_delivered": raised,
            "alerts_missing": recorded - raised,
            "deliveries": deliveries,
            "duplicate_deliveries": deliveries - len(set(receiver.ids())),
            "bad_signatures": bad,
            "service_exit_code": exit_code,
            "sigterm_to_exit_s": stop_seconds,
        },
    }


def summarise(samples: list[dict[str, Any]], streams: int, warmup_minutes: float) -> dict[str, Any]:
    after = [s for s in samples if s["minute"] >= warmup_minutes]
    last = samples[-1]
    minutes = max(last["minute"], 1e-9)
    return {
        "warmup_minutes": warmup_minutes,
        "samples_after_warmup": len(after),
        "rss_mib_per_hour": slope_per_hour([(s["minute"], s["rss_mib"]) for s in after]),
        "threads_per_hour": slope_per_hour([(s["minute"], s["threads"]) for s in after]),
        "open_fds_per_hour": slope_per_hour([(s["minute"], s["open_fds"]) for s in after]),
        "rss_mib_after_warmup": [min(s["rss_mib"] for s in after), max(s["rss_mib"] for s in after)]
        if after
        else None,
        "threads_after_warmup": [min(s["threads"] for s in after), max(s["threads"] for s in after)]
        if after
        else None,
        "frames_analysed_per_stream_second": round(
            last["frames_analysed"] / (minutes * 60.0) / streams, 2
        ),
        "loop_lag_mean_ms_max": max(
            (s["loop_lag"]["mean_ms"] for s in samples if s["loop_lag"]["mean_ms"] is not None),
            default=None,
        ),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--streams", type=int, default=8)
    parser.add_argument("--minutes", type=float, default=60.0)
    parser.add_argument("--warmup-minutes", type=float, default=10.0)
    parser.add_argument("--sample-seconds", type=float, default=60.0)
    parser.add_argument("--model", type=Path, default=None)
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks/results/soak.json")
    args = parser.parse_args()
    if args.streams < 1 or args.minutes <= 0 or args.sample_seconds <= 0:
        parser.error("--streams, --minutes and --sample-seconds must be positive")
    if not 0 <= args.warmup_minutes < args.minutes:
        parser.error("--warmup-minutes must be at least 0 and shorter than --minutes")
    print(f"soak: {args.streams} streams for {args.minutes:g} min", flush=True)
    with tempfile.TemporaryDirectory(prefix="swapwatch-soak-") as tmp:
        result = run(args, Path(tmp))
    summary = summarise(result["samples"], args.streams, args.warmup_minutes)
    recordings = [RECORDINGS[i % len(RECORDINGS)] for i in range(args.streams)]
    write_results(
        args.out,
        "soak",
        {
            "streams": args.streams,
            "minutes": args.minutes,
            "recordings": recordings,
            "summary": summary,
            "ending": result["ending"],
            "samples": result["samples"],
        },
        indent=1,
    )
    ending = result["ending"]
    print(
        f"after {summary['warmup_minutes']:g} min warm-up: RSS {summary['rss_mib_per_hour']} "
        f"MiB/h, threads {summary['threads_per_hour']}/h, fds {summary['open_fds_per_hour']}/h; "
        f"alerts delivered {ending['alerts_delivered']} of {ending['alerts_recorded']} recorded "
        f"({ending['duplicate_deliveries']} duplicate deliveries); "
        f"SIGTERM to exit {ending['sigterm_to_exit_s']} s (exit {ending['service_exit_code']})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
