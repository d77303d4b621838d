"""Playout paces the agent's voice in real time and knows what the caller heard when they interrupt."""

from __future__ import annotations

import asyncio
import threading
import time

import numpy as np
import pytest

from components.engines.playout import Playout


class Clock:
    """A hand-driven monotonic clock; `asyncio.sleep` in the playout still yields, but time moves only here."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def tone(ms: int, rate: int = 24_000) -> np.ndarray:
    return np.full(rate * ms // 1000, 1000, dtype=np.int16)


def test_audio_is_released_no_more_than_the_lead_ahead_of_the_listener() -> None:
    clock = Clock()
    playout = Playout(chunk_ms=40, lead_s=0.12, clock=clock)
    playout.push("item_a", tone(1000))

    async def drain_without_time_passing() -> int:
        handed = 0
        while (chunk := await playout.next_chunk(timeout=0.01)) is not None:
            handed += chunk.size
        return handed

    handed = asyncio.run(drain_without_time_passing())
    # With the clock standing still, only the lead (plus the chunk that crosses it) may be handed over.
    assert 0.12 * 24_000 <= handed <= (0.12 + 0.04) * 24_000
    assert playout.speaking


def test_a_cut_reports_what_was_heard_not_what_was_received() -> None:
    clock = Clock()
    playout = Playout(chunk_ms=40, lead_s=0.12, clock=clock)
    playout.push("item_a", tone(2000))

    async def listen(seconds: float) -> None:
        end = clock.now + seconds
        while clock.now < end:
            if await playout.next_chunk(timeout=0) is None:
                clock.now += 0.02

    asyncio.run(listen(0.5))
    cut = playout.clear()
    assert cut is not None and cut.item_id == "item_a"
    assert cut.received_ms == 2000
    assert 440 <= cut.played_ms <= 520  # ~0.5 s heard, never the lead that was still queued
    assert not playout.speaking
    assert playout.clear() is None  # nothing left to cut


def test_nothing_is_cut_once_the_item_has_finished_playing() -> None:
    clock = Clock()
    playout = Playout(chunk_ms=40, lead_s=0.12, clock=clock)
    playout.push("item_a", tone(200))

    async def play_all() -> None:
        while True:
            chunk = await playout.next_chunk(timeout=0)
            if chunk is None:
                if not playout.speaking:
                    return
                clock.now += 0.02

    asyncio.run(play_all())
    assert playout.played_ms("item_a") == 200
    assert playout.clear() is None


@pytest.mark.parametrize("chunk_ms", [20, 40, 100])
def test_chunks_are_views_of_the_received_audio(chunk_ms: int) -> None:
    playout = Playout(chunk_ms=chunk_ms, lead_s=10.0)
    audio = tone(300)
    playout.push("item_a", audio)

    async def first() -> np.ndarray | None:
        return await playout.next_chunk()

    chunk = asyncio.run(first())
    assert chunk is not None and chunk.size == 24_000 * chunk_ms // 1000
    assert np.shares_memory(chunk, audio)  # no copy per frame


def test_the_echo_guard_can_listen_from_another_thread_while_audio_is_handed_out() -> None:
    """A phone call's pipeline hears the caller in a worker thread (`level_dbfs`) while the loop hands out the
    agent's audio: neither may break the other."""
    playout = Playout(sample_rate=8000, chunk_ms=1, lead_s=1e9, clock=lambda: 0.0)  # nothing is ever heard: it piles
    failures: list[BaseException] = []
    done = threading.Event()

    def echo_guard() -> None:
        while not done.is_set():
            try:
                playout.level_dbfs()
            except RuntimeError as error:  # "deque mutated during iteration"
                failures.append(error)
                return

    async def hand_out() -> None:
        deadline = time.monotonic() + 2
        while time.monotonic() < deadline and not failures:
            playout.push("agent", np.full(8000, 1000, dtype=np.int16))
            for _ in range(1000):
                await playout.next_chunk()

    listener = threading.Thread(target=echo_guard)
    listener.start()
    try:
        asyncio.run(hand_out())
    finally:
        done.set()
        listener.join()
    assert failures == []
    assert playout.level_dbfs() > -40  # and it still hears what is playing
