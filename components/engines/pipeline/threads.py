"""Enough threads for the pipeline's calls: fastrtc plays a `ReplyOnPause` handler from the loop's executor.

fastrtc calls a sync handler's `emit` through `loop.run_in_executor(None, ...)`, and `ReplyOnPause.emit` holds
that thread while it waits for the reply's next chunk to be due (our playout paces the voice in real time).
asyncio's default executor has `min(32, cores + 4)` threads: six on a 2-core Space, so from the seventh call on
the callers' audio waited for a free thread (the benchmark showed underruns and answers late by seconds at 10
calls). The store's `asyncio.to_thread` work shares that executor too.
"""

from __future__ import annotations

import asyncio
import weakref
from concurrent.futures import ThreadPoolExecutor

SPARE_THREADS = 8  # the store, the VAD's tail check and fastrtc's own work, besides one thread per call

_sized: weakref.WeakSet[asyncio.AbstractEventLoop] = weakref.WeakSet()


def make_room(loop: asyncio.AbstractEventLoop, calls: int) -> None:
    """Give `loop` a default executor with a thread for each of `calls` calls and some to spare (once per loop)."""
    if loop in _sized:
        return
    _sized.add(loop)
    loop.set_default_executor(ThreadPoolExecutor(calls + SPARE_THREADS, thread_name_prefix="voicebot"))
