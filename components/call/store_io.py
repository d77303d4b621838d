"""Where a call's blocking store work runs: a small thread pool of its own, never the event loop or the audio's.

The store does blocking I/O (SQLite, or PostgreSQL over the network). Run on the event loop, a slow database would
stall every call's audio; run on the loop's default executor, it would queue behind audio work that fastrtc puts
there. So tools, the draft's snapshots, transcripts and the demo's meter go through `in_store_thread`, a pool of
`STORE_THREADS` threads shared by every call of the process. A `Call` takes the runner as a parameter: tests on a
virtual clock run the store inline.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

T = TypeVar("T")
StoreRunner = Callable[..., Awaitable[Any]]

STORE_THREADS = 4  # a booking holds the database for milliseconds; more threads would only queue on its lock

_pool = ThreadPoolExecutor(STORE_THREADS, thread_name_prefix="store")


async def in_store_thread(work: Callable[..., T], *args: Any) -> T:
    """Run `work(*args)` on the store's threads and wait for it without blocking the loop."""
    return await asyncio.get_running_loop().run_in_executor(_pool, functools.partial(work, *args))
