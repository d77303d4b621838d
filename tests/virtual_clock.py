"""A clock the test moves by hand (`components.call.clock.Clock`), so the call's timings run without sleeping.

`advance(seconds)` moves time forward in order through every timer and sleep due on the way, letting the event loop
run what each one wakes before going on, so a 2.2 s wait costs a few loop iterations instead of 2.2 s.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
from collections.abc import Callable

EPOCH = 1_800_000_000.0  # the wall clock at virtual time zero


class _Timer:
    def __init__(self, callback: Callable[[], None]) -> None:
        self.callback = callback
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class VirtualClock:
    """Virtual time for one event loop: starts at 0 and moves only when the test calls `advance`."""

    def __init__(self) -> None:
        self._now = 0.0
        self._due: list[tuple[float, int, _Timer]] = []
        self._order = itertools.count()

    def now(self) -> float:
        return self._now

    def wall(self) -> float:
        return EPOCH + self._now

    def call_later(self, delay: float, callback: Callable[[], None]) -> _Timer:
        timer = _Timer(callback)
        heapq.heappush(self._due, (self._now + max(0.0, delay), next(self._order), timer))
        return timer

    async def sleep(self, seconds: float) -> None:
        woken = asyncio.get_running_loop().create_future()
        self.call_later(seconds, lambda: woken.done() or woken.set_result(None))
        await woken

    async def advance(self, seconds: float) -> None:
        """Move time forward by `seconds`, firing what falls due on the way, in order."""
        until = self._now + seconds
        await _settle()
        while self._due and self._due[0][0] <= until:
            due, _, timer = heapq.heappop(self._due)
            self._now = max(self._now, due)
            if not timer.cancelled:
                timer.callback()
                await _settle()
        self._now = until
        await _settle()


async def _settle() -> None:
    """Let the loop run everything that is ready (a woken task may wake another, or start a short thread job)."""
    for _ in range(20):
        await asyncio.sleep(0)
