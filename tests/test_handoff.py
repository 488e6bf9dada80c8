from __future__ import annotations

import asyncio
import threading

import pytest

from swapwatch.stream.handoff import DropPolicy, Handoff, HandoffClosed


def test_keep_newest_replaces_waiting_items_and_counts_drops() -> None:
    async def run() -> tuple[list[int], int]:
        handoff: Handoff[int] = Handoff(asyncio.get_running_loop(), DropPolicy.KEEP_NEWEST, 1)
        for i in range(5):
            handoff.put(i)
        handoff.finish()
        got = []
        while True:
            try:
                got.append(await handoff.get())
            except EOFError:
                return got, handoff.dropped

    assert asyncio.run(run()) == ([4], 4)


def test_wait_policy_blocks_the_producer_and_loses_nothing() -> None:
    async def run() -> list[int]:
        handoff: Handoff[int] = Handoff(asyncio.get_running_loop(), DropPolicy.WAIT, 2)

        def produce() -> None:
            for i in range(50):
                handoff.put(i)
            handoff.finish()

        threading.Thread(target=produce).start()
        got = []
        while True:
            try:
                got.append(await handoff.get())
            except EOFError:
                return got
            await asyncio.sleep(0)

    assert asyncio.run(run()) == list(range(50))


def test_producer_error_surfaces_after_the_items() -> None:
    async def run() -> None:
        handoff: Handoff[int] = Handoff(asyncio.get_running_loop(), DropPolicy.WAIT, 4)
        handoff.put(1)
        handoff.finish(RuntimeError("decoder broke"))
        assert await handoff.get() == 1
        with pytest.raises(RuntimeError, match="decoder broke"):
            await handoff.get()

    asyncio.run(run())


def test_cancel_unblocks_a_waiting_producer() -> None:
    async def run() -> None:
        handoff: Handoff[int] = Handoff(asyncio.get_running_loop(), DropPolicy.WAIT, 1)
        handoff.put(0)
        outcome: list[BaseException] = []

        def produce() -> None:
            try:
                handoff.put(1)
            except HandoffClosed as exc:
                outcome.append(exc)

        thread = threading.Thread(target=produce)
        thread.start()
        await asyncio.sleep(0.05)
        handoff.cancel()
        await asyncio.to_thread(thread.join, 2)
        assert not thread.is_alive() and len(outcome) == 1

    asyncio.run(run())
