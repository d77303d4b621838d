"""What the server does once, at start, so that no call pays for it: the resampler warmed up, and the start-up heap
kept out of the garbage collector's way; and what runs beside it until it stops (the texts' reminder round)."""

from __future__ import annotations

import asyncio
import contextlib
import gc
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any


def warm_up_resampler() -> None:
    """Load librosa's resampler now: its first use takes seconds, and on a phone call it would block the loop."""
    import librosa
    import numpy as np

    for rates in ((8000, 24000), (24000, 8000)):
        librosa.resample(np.zeros(480, dtype=np.float32), orig_sr=rates[0], target_sr=rates[1])


def freeze_startup_heap() -> None:
    """Put what start-up built (gradio, fastrtc, numpy, the restaurant) out of the garbage collector's reach: a
    full collection otherwise walks all of it, pausing every call's audio for up to 150 ms."""
    gc.collect()
    gc.freeze()


def warming_up(
    lifespan: Callable[[Any], Any], background: Sequence[Callable[[], Awaitable[None]]] = ()
) -> Callable[[Any], Any]:
    @contextlib.asynccontextmanager
    async def warm_lifespan(app: Any) -> AsyncIterator[Any]:
        async with lifespan(app) as state:
            await asyncio.to_thread(warm_up_resampler)
            freeze_startup_heap()
            tasks = [asyncio.create_task(job()) for job in background]
            try:
                yield state
            finally:
                for task in tasks:
                    task.cancel()

    return warm_lifespan
