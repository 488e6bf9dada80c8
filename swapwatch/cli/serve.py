"""`swapwatch serve`: the live service (HTTP API, WebRTC and RTMP ingest, dashboard, metrics)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import logging
import signal
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import TYPE_CHECKING, Any

from swapwatch.cli import hard_stop as last_resort
from swapwatch.errors import ConfigError

if TYPE_CHECKING:
    from swapwatch.cluster.connect import RayCluster
    from swapwatch.engines.base import Engine
    from swapwatch.server.app import Service
    from swapwatch.server.config import EngineConfig, ServiceConfig
    from swapwatch.server.metrics import ServiceMetrics

log = logging.getLogger(__name__)
REQUESTS_SHUTDOWN_S = 2.0  # what a request still in flight at the end of a stop gets
CONNECTION_CHECK_S = 2.0  # how often a cluster front checks that its connection holds


def add_serve_parser(commands: Any) -> None:
    parser = commands.add_parser(
        "serve",
        help="run the live service: HTTP API, WebRTC and RTMP ingest, dashboard, /metrics",
        description="Run the swapwatch service. Settings come from the embedded defaults, then "
        "--config FILE (TOML), then SWAPWATCH_* environment variables, then these options.",
    )
    parser.add_argument("--config", type=Path, default=None, metavar="FILE.toml")
    parser.add_argument("--host", default=None, help="address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=None, help="HTTP port (default 8080)")
    parser.add_argument("--model", type=Path, default=None, help="detector ONNX file")
    parser.add_argument(
        "--cluster",
        default=None,
        metavar="ADDRESS",
        help="run each stream as an actor on this Ray cluster (host:port, auto, ray://...; "
        "needs swapwatch[ray]); default: every stream in this process",
    )
    parser.add_argument("-v", "--verbose", action="count", default=1)
    parser.set_defaults(handler=cmd_serve)


def cmd_serve(args: argparse.Namespace) -> int:
    from swapwatch.server.config_sources import load_config

    config = load_config(
        args.config,
        overrides={
            "http.host": args.host,
            "http.port": args.port,
            "analysis.model": args.model,
            "cluster.address": args.cluster,
        },
    )
    status = asyncio.run(serve(config, hard_stop=True))
    # What is left is Python's exit, which joins every worker thread: one stuck for good
    # (its stream's stop left it) would hold it for ever.
    last_resort.arm(last_resort.JOIN_LIMIT_S, since="the event loop ended")
    return status


async def serve(
    config: ServiceConfig, ready: asyncio.Event | None = None, hard_stop: bool = False
) -> int:
    """Run the service until SIGINT or SIGTERM. `hard_stop`: the process is ended if it has not
    ended `drain_timeout_s` plus a margin after its stop began (see cli.hard_stop); for the
    command, not for a service run inside another program."""
    from swapwatch.engines.batching import BatchingEngine
    from swapwatch.server.app import Service
    from swapwatch.server.metrics import ServiceMetrics
    from swapwatch.stream.assembly import share_cores_between_streams
    from swapwatch.stream.pipeline import extra_signals

    share_cores_between_streams()
    for extra in extra_signals(config.analysis.signals):  # a missing plugin stops us here
        extra.signal.close()
    metrics = ServiceMetrics()
    if config.cluster.address is not None:
        return await serve_on_cluster(config, metrics, ready, hard_stop)
    engine = build_engine(config.engine, config.analysis.model)
    shared = BatchingEngine(
        engine,
        config.engine.max_batch,
        config.engine.max_batch_wait_ms / 1000.0,
        on_batch=metrics.observe_batch,
    )
    try:
        service = Service(config, shared, metrics)
    except BaseException:
        shared.close()
        raise

    def warmup() -> None:
        shared.warmup()
        providers = engine_providers(engine)
        log.info("engine warmed up on %s, batch sizes %s", providers, shared.warmed_sizes)

    try:
        return await run_service(service, ready, warmup, hard_stop=hard_stop)
    finally:
        shared.close()


async def serve_on_cluster(
    config: ServiceConfig,
    metrics: ServiceMetrics,
    ready: asyncio.Event | None,
    hard_stop: bool = False,
) -> int:
    """The front of a Ray cluster: the same HTTP service, its pulled streams run as actors
    and the detector as one shared actor (see swapwatch.cluster)."""
    try:
        from swapwatch.cluster.connect import RayCluster
        from swapwatch.server.cluster_streams import ClusterPlacer
    except ImportError as exc:
        raise ConfigError(
            f"cluster.address needs Ray: pip install 'swapwatch[ray]' ({exc})"
        ) from exc
    from swapwatch.server.app import Service

    settings = config.cluster
    assert settings.address is not None
    cluster = RayCluster(
        settings.address,
        settings.namespace,
        settings.stream_cpus,
        settings.stream_resource,
        settings.detector_cpus,
        settings.detector_gpus,
        settings.detector_resource,
        settings.join_timeout_s,
    )
    await asyncio.to_thread(cluster.connect)
    try:
        make_engine = functools.partial(build_engine, config.engine, config.analysis.model)
        engine = await asyncio.to_thread(
            cluster.start_detector,
            make_engine,
            config.engine.max_batch,
            config.engine.max_batch_wait_ms / 1000.0,
        )
        service = Service(
            config,
            engine,
            metrics,
            lambda committed: ClusterPlacer(cluster, engine, committed, settings.checkpoint_s),
        )
        return await run_service(
            service,
            ready,
            failure=functools.partial(connection_lost, cluster),
            hard_stop=hard_stop,
        )
    finally:
        await asyncio.to_thread(cluster.close)


async def connection_lost(cluster: RayCluster) -> str:
    """Returns once the front's connection to the cluster is gone for good.

    A Ray Client front whose client server on the head went (the head restarted) has lost the
    driver that owned its actors, and with it their streams; Ray Client gives up reconnecting
    after RAY_CLIENT_RECONNECT_GRACE_PERIOD (30 s). Only a new connection, that is a restart of
    the front, resumes the saved streams.
    """
    while await asyncio.to_thread(cluster.connected):
        await asyncio.sleep(CONNECTION_CHECK_S)
    return f"lost its connection to the Ray cluster at {cluster.address}"


async def run_service(
    service: Service,
    ready: asyncio.Event | None,
    warmup: Callable[[], None] | None = None,
    failure: Callable[[], Coroutine[Any, Any, str]] | None = None,
    hard_stop: bool = False,
) -> int:
    """Serve HTTP until SIGINT or SIGTERM (exit status 0), or until `failure()` returns why the
    service cannot go on (status 1, for its supervisor to start it again); then drain.
    `hard_stop`: see `serve`."""
    from aiohttp import web

    from swapwatch.server.app import build_app
    from swapwatch.server.protocol_log import protocol_error_log

    config = service.config
    app = build_app(service)
    runner = web.AppRunner(
        app,
        handle_signals=False,
        access_log=None,
        logger=protocol_error_log(),
        # After the streams and sinks have had drain_timeout_s, a request still in flight (a
        # client that stalls mid-body or stops reading) gets this long, not aiohttp's 60 s
        # twice over: a stop must not wait on a peer.
        shutdown_timeout=REQUESTS_SHUTDOWN_S,
    )
    await runner.setup()
    host, port = config.http.host, config.http.port
    site = web.TCPSite(runner, host, port)
    listening = False
    status = 0
    try:
        await service.start()  # the outbox is open before a request can add a stream
        try:
            await site.start()
        except OSError as exc:
            where = f"{host}:{port}"
            raise ConfigError(f"cannot listen on {where}: {exc.strerror}") from exc
        listening = True
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                loop.add_signal_handler(sig, stop.set)
        if warmup is not None:
            await loop.run_in_executor(None, warmup)
        service.ready = True
        print(
            f"swapwatch: serving on http://{host}:{port} "
            f"(dashboard /, try it /try, API docs /docs)",
            flush=True,
        )
        if ready is not None:
            ready.set()
        why = await first_of(stop, failure)
        if why is not None:
            log.error("%s: stopping, for the supervisor to start it again", why)
            status = 1
    finally:
        log.info("shutting down: draining %d streams", len(service.manager.workers))
        if hard_stop:
            last_resort.arm(
                config.limits.drain_timeout_s + last_resort.EXIT_MARGIN_S, since="the stop began"
            )
        if listening:
            await site.stop()  # no new connections while the streams drain
        await service.close()
        await runner.cleanup()
    return status


async def first_of(
    stop: asyncio.Event, failure: Callable[[], Coroutine[Any, Any, str]] | None
) -> str | None:
    """Waits until `stop` is set (None) or `failure()` returns why the service cannot go on."""
    if failure is None:
        await stop.wait()
        return None
    stopped = asyncio.create_task(stop.wait())
    failed = asyncio.create_task(failure())
    done, _ = await asyncio.wait({stopped, failed}, return_when=asyncio.FIRST_COMPLETED)
    stopped.cancel()
    failed.cancel()
    return failed.result() if failed in done else None


def build_engine(config: EngineConfig, model: Path | None) -> Engine:
    """The detector engine of the `engine` section (TensorRT's options for `onnxruntime`)."""
    from swapwatch.engines import DEFAULT_ENGINE, create_engine
    from swapwatch.engines.tensorrt import TensorRtOptions
    from swapwatch.models import resolve_detector

    options: dict[str, Any] = {}
    if config.type == DEFAULT_ENGINE:
        trt = config.tensorrt
        options["tensorrt"] = TensorRtOptions(
            max_batch=config.max_batch,
            fp16=trt.fp16,
            cache_dir=trt.cache_dir,
            workspace_mb=trt.workspace_mb,
        )
    return create_engine(
        config.type,
        resolve_detector(model, config.device),
        device=config.device,
        threads=config.threads,
        **options,
    )


def engine_providers(engine: Engine) -> str:
    return ", ".join(getattr(engine, "providers", ())) or "its own runtime"
