"""`swapwatch events ...` (the outbox: tail, replay, deliver, status) and `swapwatch webhook
verify` (for receivers)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import re
import signal
import sys
import time
import tomllib
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from swapwatch.cli import hard_stop
from swapwatch.errors import ConfigError

_RELATIVE = re.compile(r"^(\d+(?:\.\d+)?)([smhd])$")
_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86_400.0}


def since_time(text: str, now: float | None = None) -> float:
    """`--since`: an ISO 8601 time, a unix time, or an age such as 90s, 10m, 2h, 7d."""
    now = time.time() if now is None else now
    if match := _RELATIVE.match(text.strip()):
        return now - float(match[1]) * _UNITS[match[2]]
    try:
        return float(text)
    except ValueError:
        pass
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected an ISO time, a unix time or an age like 10m, got {text!r}"
        ) from None
    if moment.tzinfo is None:
        moment = moment.astimezone()  # a time without zone is local, as a person types it
    return moment.timestamp()


def add_sink_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--sink",
        action="append",
        default=[],
        metavar="TYPE:TARGET[;k=v...]",
        help="deliver events to a sink, e.g. 'webhook:https://host/hook;secret=env:HOOK_SECRET', "
        "'jsonl:-', 'mqtt:mqtt://127.0.0.1:1883;topic=alerts/{type}' (repeatable)",
    )
    parser.add_argument(
        "--sinks", type=Path, metavar="FILE.toml", help="sinks as [[sink]] tables in a TOML file"
    )


def sink_specs(args: argparse.Namespace) -> list[Any]:
    """The sinks named by --sink and --sinks."""
    from swapwatch.events.sinks.base import parse_sink, spec_from_mapping

    specs = [parse_sink(text) for text in args.sink]
    if args.sinks is not None:
        try:
            tables = tomllib.loads(args.sinks.read_text("utf-8")).get("sink", [])
        except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise ConfigError(f"cannot read sinks file {args.sinks}: {exc}") from None
        if not isinstance(tables, list):
            raise ConfigError(f"{args.sinks}: sinks must be [[sink]] tables")
        specs += [spec_from_mapping(t, where=f"{args.sinks} sink") for t in tables]
    names = [s.name for s in specs]
    if len(set(names)) != len(names):
        raise ConfigError(f"sink names must be unique (set name=...): {', '.join(names)}")
    return specs


def add_events_parser(commands: Any) -> None:
    """Register `events` and `webhook` on the CLI's sub-command parsers."""
    events: argparse.ArgumentParser = commands.add_parser(
        "events",
        help="the event outbox: tail, replay, deliver, status",
        description="Read and deliver the durable event outbox (a SQLite file written by "
        "`scan --events` or the service).",
    )
    actions = events.add_subparsers(dest="action", required=True, metavar="ACTION")

    def action(name: str, help_text: str) -> argparse.ArgumentParser:
        parser: argparse.ArgumentParser = actions.add_parser(name, help=help_text)
        parser.add_argument("--db", type=Path, required=True, metavar="FILE.sqlite")
        parser.add_argument("-v", "--verbose", action="count", default=0)
        return parser

    tail = action("tail", "print the latest events as JSON lines")
    tail.add_argument("-n", "--lines", type=int, default=20, help="how many (default 20)")
    tail.add_argument("--since", type=since_time, help="from this time or age (e.g. 10m) instead")
    tail.add_argument("-f", "--follow", action="store_true", help="keep printing new events")
    tail.add_argument("--type", dest="types", action="append", help="only this type (repeatable)")
    tail.set_defaults(handler=cmd_tail)

    replay = action("replay", "send events again: those since a time, or the dead letters")
    which = replay.add_mutually_exclusive_group(required=True)
    which.add_argument("--since", type=since_time, help="ISO time, unix time or age (10m, 2h)")
    which.add_argument("--dead", action="store_true", help="the dead letters")
    replay.add_argument("--sink", dest="sink_name", help="only to this sink (default: all)")
    replay.set_defaults(handler=cmd_replay)

    deliver = action("deliver", "deliver the outbox to sinks until stopped")
    add_sink_options(deliver)
    deliver.add_argument(
        "--until-idle", action="store_true", help="exit once every event is delivered"
    )
    deliver.add_argument(
        "--poll", type=float, default=0.5, help="seconds between looks for new events"
    )
    deliver.add_argument(
        "--keep-days",
        type=float,
        default=None,
        metavar="DAYS",
        help="also prune settled events older than DAYS (default: prune nothing, as the "
        "service prunes its own outbox by events.keep_days)",
    )
    deliver.set_defaults(handler=cmd_deliver)

    status = action("status", "per sink: cursor, backlog, dead letters")
    status.add_argument("--json", action="store_true")
    status.set_defaults(handler=cmd_status)

    forget = action("forget", "drop a sink that is no longer used (its cursor holds events)")
    forget.add_argument("sink_name", metavar="SINK")
    forget.set_defaults(handler=cmd_forget)

    webhook: argparse.ArgumentParser = commands.add_parser(
        "webhook", help="helpers for webhook receivers"
    )
    hooks = webhook.add_subparsers(dest="action", required=True, metavar="ACTION")
    verify: argparse.ArgumentParser = hooks.add_parser(
        "verify",
        help="check a Swapwatch-Signature header against a body",
        description="Exit 0 when SIGNATURE signs the body (FILE, or stdin) with SECRET within "
        "the tolerance; else print why and exit 7.",
    )
    verify.add_argument("--secret", required=True, help="the shared secret, or env:NAME, file:P")
    verify.add_argument("--signature", required=True, help="the Swapwatch-Signature value")
    verify.add_argument("--tolerance", type=float, default=300.0, help="seconds (default 300)")
    verify.add_argument("body", nargs="?", type=Path, help="file with the raw body (default stdin)")
    verify.add_argument("-v", "--verbose", action="count", default=0)
    verify.set_defaults(handler=cmd_verify)
    new_secret: argparse.ArgumentParser = hooks.add_parser(
        "new-secret",
        help="print a random secret for signature_scheme=standard-webhooks (whsec_<base64>)",
    )
    new_secret.add_argument("-v", "--verbose", action="count", default=0)
    new_secret.set_defaults(handler=cmd_new_secret)


def _open(path: Path, must_exist: bool = True, keep_days: float | None = None) -> Any:
    """The outbox at `path`, neither capped nor pruned by this command unless `keep_days` is
    given: the process that writes it (the service, with its own `events.max_mb` and
    `keep_days`) owns its limits. A cap below the file's size would fail every write here."""
    from swapwatch.events.outbox import EventLog, Retention

    if must_exist and not path.exists():
        raise ConfigError(f"no event outbox at {path}")
    if keep_days is None:
        return EventLog(path, Retention(keep_seconds=math.inf, keep_events=2**62, max_bytes=None))
    return EventLog(path, Retention(keep_seconds=keep_days * 86_400.0, max_bytes=None))


def cmd_tail(args: argparse.Namespace) -> int:
    with _open(args.db) as outbox:
        if args.since is not None:
            events = outbox.read_since(args.since, limit=1_000_000)
        else:
            events = outbox.read_after(max(0, outbox.last_seq() - args.lines), limit=args.lines)
        last = outbox.last_seq() if not events else events[-1].seq
        _print(events, args.types)
        while args.follow:
            time.sleep(0.5)
            events = outbox.read_after(last, limit=1000)
            if events:
                last = events[-1].seq
                _print(events, args.types)
    return 0


def _print(events: Sequence[Any], types: list[str] | None) -> None:
    for event in events:
        if not types or event.type in types:
            print(event.body)
    sys.stdout.flush()


def cmd_replay(args: argparse.Namespace) -> int:
    with _open(args.db) as outbox:
        if args.dead:
            count = outbox.replay_dead(args.sink_name)
            print(f"{count} dead letters queued for delivery again")
        else:
            count = outbox.replay_since(args.since, args.sink_name)
            print(f"{count} deliveries queued again")
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    with _open(args.db) as outbox:
        sinks, dead, last = outbox.sinks(), outbox.dead_letters(), outbox.last_seq()
    if args.json:
        print(
            json.dumps(
                {
                    "last_seq": last,
                    "sinks": [
                        {
                            "name": s.name,
                            "cursor": s.cursor,
                            "backlog": s.backlog,
                            "dead": s.dead,
                            "requeued": s.requeued,
                        }
                        for s in sinks
                    ],
                    "dead_letters": [
                        {
                            "sink": d.sink,
                            "seq": d.seq,
                            "id": d.event_id,
                            "attempts": d.attempts,
                            "error": d.error,
                            "failed_at": d.failed_at,
                        }
                        for d in dead
                    ],
                },
                indent=2,
            )
        )
        return 0
    print(f"{args.db}: {last} events appended")
    for s in sinks:
        print(
            f"  {s.name}: at {s.cursor}, {s.backlog} waiting, {s.dead} dead, {s.requeued} requeued"
        )
    for d in dead:
        print(f"  dead: {d.sink} #{d.seq} {d.event_id} after {d.attempts} attempts: {d.error}")
    return 0


def cmd_forget(args: argparse.Namespace) -> int:
    with _open(args.db) as outbox:
        outbox.forget_sink(args.sink_name)
    return 0


def cmd_deliver(args: argparse.Namespace) -> int:
    from swapwatch.events.sinks.factory import create_routes

    specs = sink_specs(args)
    if not specs:
        raise ConfigError("no sinks: give --sink or --sinks")
    routes = create_routes(specs)
    with _open(args.db, must_exist=False, keep_days=args.keep_days) as outbox:
        stop_began = (
            hard_stop.arm_at_stop(hard_stop.COMMAND_EXIT_MARGIN_S) if args.owns_process else None
        )
        stats = asyncio.run(_deliver(outbox, routes, args.until_idle, args.poll, stop_began))
    crashed = False
    for name, s in stats.items():
        print(
            f"{name}: {s.delivered} delivered, {s.dead_lettered} dead-lettered"
            + (f", stopped by a bug: {s.crashed}" if s.crashed else ""),
            file=sys.stderr,
        )
        crashed |= s.crashed is not None
    return 1 if crashed else 0


async def _deliver(
    outbox: Any,
    routes: list[Any],
    until_idle: bool,
    poll: float,
    stop_began: Callable[[], None] | None = None,
) -> Any:
    """Deliver until SIGINT or SIGTERM (or idle); the first signal also calls `stop_began`: the
    sends in flight are cancelled, to be sent again next time, and the sinks closed."""
    from swapwatch.events.delivery import Dispatcher

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()

    def on_signal() -> None:
        stop.set()
        if stop_began is not None:
            stop_began()

    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, on_signal)
    try:
        async with Dispatcher(outbox, routes, poll_interval=poll) as dispatcher:
            waiters: set[asyncio.Task[Any]] = {asyncio.create_task(stop.wait())}
            if until_idle:
                waiters.add(asyncio.create_task(dispatcher.wait_idle()))
            _, pending = await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
            for task in pending:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            return dispatcher.stats
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)


def cmd_new_secret(args: argparse.Namespace) -> int:
    from swapwatch.events.standard_webhooks import new_secret

    print(new_secret())
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    from swapwatch.events.signing import verify
    from swapwatch.events.sinks.base import resolve_secret

    try:
        body = args.body.read_bytes() if args.body else sys.stdin.buffer.read()
    except OSError as exc:
        raise ConfigError(f"cannot read the body: {exc}") from None
    signed_at = verify(resolve_secret(args.secret), args.signature, body, args.tolerance)
    print(f"valid: signed at {datetime.fromtimestamp(signed_at).astimezone().isoformat()}")
    return 0
