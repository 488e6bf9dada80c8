"""The event-loop lag monitor: a loop held by blocking work shows as lag, an idle one does not."""

from __future__ import annotations

import asyncio
import time

import pytest

from swapwatch.server.loop_lag import LoopLagMonitor


def test_a_blocked_loop_is_measured_and_an_idle_one_is_not() -> None:
    lags: list[float] = []

    async def main() -> None:
        monitor = LoopLagMonitor(lags.append, interval_s=0.05)
        monitor.start()
        await asyncio.sleep(0.3)
        idle = len(lags)
        time.sleep(0.4)  # CPU work done on the loop, as a bug would
        await asyncio.sleep(0.2)
        await monitor.stop()
        assert idle >= 3 and sorted(lags[:idle])[idle // 2] < 0.05

    asyncio.run(main())
    assert max(lags) >= 0.3
    assert all(lag >= 0 for lag in lags)


def test_stop_ends_the_task_and_a_bad_interval_is_refused() -> None:
    async def main() -> None:
        monitor = LoopLagMonitor(lambda _: None, interval_s=0.01)
        monitor.start()
        await asyncio.sleep(0.03)
        await monitor.stop()
        assert [t for t in asyncio.all_tasks() if t.get_name() == "loop-lag"] == []

    asyncio.run(main())
    with pytest.raises(ValueError, match="interval_s"):
        LoopLagMonitor(lambda _: None, interval_s=0)
