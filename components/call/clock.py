"""Time as a call sees it, behind one small interface, so the call's mechanics run on virtual time in tests.

`Call` (its push throttle, the time limit, the goodbye) and `BargeIn` (its resume timer) read the time and wait only
through a `Clock`. In production that is the event loop's own clock (`LoopClock`); a test hands them a clock it
advances by hand, and nothing sleeps.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Protocol


class Timer(Protocol):
    def cancel(self) -> None: ...


class Clock(Protocol):
    def now(self) -> float:
        """Seconds on a monotonic clock."""
        ...

    def wall(self) -> float:
        """Seconds since the epoch: what a page's countdown compares a deadline with."""
        ...

    async def sleep(self, seconds: float) -> None: ...

    def call_later(self, delay: float, callback: Callable[[], None]) -> Timer:
        """Run `callback` on the event loop after `delay` seconds, unless the timer is cancelled first."""
        ...


class LoopClock:
    """Real time: the monotonic clock the event loop uses (readable from any thread), and the loop's timers."""

    def now(self) -> float:
        return time.monotonic()

    def wall(self) -> float:
        return time.time()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)

    def call_later(self, delay: float, callback: Callable[[], None]) -> Timer:
        return asyncio.get_running_loop().call_later(delay, callback)
