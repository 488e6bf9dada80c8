"""Event delivery: events per second through the outbox to a local webhook, and the latency an
alarm adds from its append to its arrival at the receiver.

    .venv/bin/python benchmarks/events.py [--events 2000] [--latency-events 200] [--rate 50]
                                          [--out benchmarks/results/events.json]

The receiver is an aiohttp server in its own process on 127.0.0.1 that checks every signature.
- appends: EventLog.append one at a time (each an fsync'd SQLite commit, synchronous=FULL);
- throughput: a backlog of --events events in the outbox, then one webhook sink drains it
  (signed POST per event, kept-alive connection, cursor committed after each);
- latency: events appended one at a time at --rate per second while the dispatcher runs, as a
  live stream's alarms are; latency = receiver arrival - the moment append was called.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import multiprocessing
import statistics
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from aiohttp import ClientSession, web
from machine import result_header

from swapwatch.events import Dispatcher, Event, EventLog, EventType, Route, parse_sink
from swapwatch.events.signing import SIGNATURE_HEADER, verify
from swapwatch.events.sinks.factory import create_sink
from swapwatch.events.sinks.webhook import EVENT_ID_HEADER

SECRET = "bench-secret"


def receiver_main(port: int, ready: Any) -> None:
    arrivals: dict[str, float] = {}
    bad = 0

    async def hook(request: web.Request) -> web.Response:
        nonlocal bad
        body = await request.read()
        try:
            verify(SECRET, request.headers[SIGNATURE_HEADER], body)
        except Exception:
            bad += 1
        arrivals.setdefault(request.headers[EVENT_ID_HEADER], time.time())
        return web.Response()

    async def stats(request: web.Request) -> web.Response:
        return web.json_response({"arrivals": arrivals, "bad_signatures": bad})

    async def reset(request: web.Request) -> web.Response:
        arrivals.clear()
        return web.Response()

    app = web.Application()
    app.router.add_post("/hook", hook)
    app.router.add_get("/stats", stats)
    app.router.add_post("/reset", reset)

    async def serve() -> None:
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        ready.set()
        await asyncio.Event().wait()

    asyncio.run(serve())


def event(i: int) -> Event:
    return Event(
        str(uuid.uuid4()),
        EventType.ALERT_RAISED,
        datetime.datetime.now(datetime.UTC),
        f"bench-{i % 8}",
        "run",
        i,
        1.0,
        0.97,
        {"cusum": 12.0, "threshold": 11.0, "policy": "monitoring"},
    )


async def receiver_stats(base: str) -> dict[str, Any]:
    async with ClientSession() as client, client.get(f"{base}/stats") as response:
        data: dict[str, Any] = await response.json()
        return data


async def reset(base: str) -> None:
    async with ClientSession() as client, client.post(f"{base}/reset"):
        pass


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def measure(
    db: Path, base: str, count: int, latency_count: int, rate: float
) -> dict[str, Any]:
    outbox = EventLog(db)
    spec = parse_sink(f"webhook:{base}/hook;secret={SECRET}")

    started = time.perf_counter()
    for i in range(count):
        outbox.append(event(i))
    append_s = time.perf_counter() - started

    route = Route(create_sink(spec), spec.retry)
    started = time.perf_counter()
    async with Dispatcher(outbox, [route]) as dispatcher:
        assert await dispatcher.wait_idle(600)
        drain_s = time.perf_counter() - started
    stats = await receiver_stats(base)
    assert len(stats["arrivals"]) == count, "events missing at the receiver"

    await reset(base)
    sent: dict[str, float] = {}
    route = Route(create_sink(spec), spec.retry)
    async with Dispatcher(outbox, [route]) as dispatcher:
        for i in range(latency_count):
            e = event(i)
            sent[e.id] = time.time()
            await asyncio.to_thread(outbox.append, e)  # as the analysis thread would
            await asyncio.sleep(1.0 / rate)
        assert await dispatcher.wait_idle(60)
    later = await receiver_stats(base)
    latencies = [(later["arrivals"][i] - t) * 1000.0 for i, t in sent.items()]
    outbox.close()
    return {
        "appends_per_second": round(count / append_s, 1),
        "append_ms_mean": round(append_s / count * 1000.0, 3),
        "delivered_per_second": round(count / drain_s, 1),
        "backlog_events": count,
        "latency_events": latency_count,
        "latency_rate_hz": rate,
        "alarm_to_delivery_ms": {
            "median": round(statistics.median(latencies), 2),
            "p99": round(percentile(latencies, 0.99), 2),
            "max": round(max(latencies), 2),
        },
        "bad_signatures": later["bad_signatures"] + stats["bad_signatures"],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=2000)
    parser.add_argument("--latency-events", type=int, default=200)
    parser.add_argument("--rate", type=float, default=50.0)
    parser.add_argument(
        "--out", type=Path, default=Path(__file__).parent / "results" / "events.json"
    )
    args = parser.parse_args()

    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    ready = multiprocessing.Event()
    receiver = multiprocessing.Process(target=receiver_main, args=(port, ready), daemon=True)
    receiver.start()
    try:
        if not ready.wait(30):
            raise SystemExit("receiver did not start")
        with tempfile.TemporaryDirectory() as tmp:
            result = asyncio.run(
                measure(
                    Path(tmp) / "outbox.sqlite",
                    f"http://127.0.0.1:{port}",
                    args.events,
                    args.latency_events,
                    args.rate,
                )
            )
    finally:
        receiver.terminate()
        receiver.join(10)
    result = {
        **result_header("events"),
        **result,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
