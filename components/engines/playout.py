"""Real-time pacing of the agent's voice, so we always know what the caller has actually heard.

The Realtime API streams audio faster than real time. If we handed it all to fastrtc at once, seconds of
speech would sit in a queue we cannot see into: barge-in would have to guess how much the caller heard,
and a phone caller's Twilio buffer would fill up. Instead the handler hands over audio only a short lead
ahead of the play-out clock. The position of every item is then known to within that lead, which is what
`conversation.item.truncate` needs (`audio_end_ms` = audio actually played, never more than received).

Barge-in first *pauses* (`pause`): what was handed to the transport but not yet heard is taken back into the
queue, so `resume` plays on from exactly where the caller stopped hearing; a confirmed barge-in then `clear`s.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

SAMPLE_RATE = 24_000


@dataclass
class ItemProgress:
    """How much of one assistant item was received, handed to the transport, and when that part ends."""

    received: int = 0
    emitted: int = 0
    ends_at: float = 0.0


@dataclass(frozen=True)
class Cut:
    """Where the caller interrupted an item: milliseconds actually heard and received."""

    item_id: str
    played_ms: int
    received_ms: int


class Playout:
    """A queue of the agent's audio that releases it at the pace it is played.

    `lead_s` is how far ahead of the listener we hand audio to the transport: enough to absorb event-loop
    jitter without underruns, small enough that clearing it on barge-in silences the bot at once.
    """

    def __init__(
        self,
        sample_rate: int = SAMPLE_RATE,
        chunk_ms: int = 40,
        lead_s: float = 0.12,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.sample_rate = sample_rate
        self.chunk = sample_rate * chunk_ms // 1000
        self.lead_s = lead_s
        self._clock = clock
        self._pending: deque[tuple[str, np.ndarray]] = deque()
        self._handed: deque[tuple[str, np.ndarray, float]] = deque()  # handed over, not yet heard: (item, chunk, end)
        self._items: dict[str, ItemProgress] = {}
        self._current: str | None = None
        self._play_end = 0.0
        self._arrived = asyncio.Event()
        self._paused = False

    def push(self, item_id: str, pcm: np.ndarray) -> None:
        """Queue received audio (int16 mono) of an assistant item."""
        if not pcm.size:
            return
        self._items.setdefault(item_id, ItemProgress()).received += pcm.size
        self._pending.append((item_id, pcm))
        self._arrived.set()

    async def next_chunk(self, timeout: float = 0.05) -> np.ndarray | None:
        """The next slice of audio once it is due, or None if nothing is due within `timeout` seconds."""
        if self._paused:
            await asyncio.sleep(timeout)
            return None
        if not self._pending:
            self._arrived.clear()
            try:
                async with asyncio.timeout(timeout):  # no task per wait, unlike `wait_for`: this runs per frame
                    await self._arrived.wait()
            except TimeoutError:
                return None
            if not self._pending:
                return None
        wait = self._play_end - self.lead_s - self._clock()
        if wait > 0:
            if wait > timeout:
                await asyncio.sleep(timeout)
                return None
            await asyncio.sleep(wait)
            if not self._pending or self._paused:  # cleared or paused by a barge-in while we waited
                return None
        item_id, pcm = self._pending[0]
        chunk, rest = pcm[: self.chunk], pcm[self.chunk :]
        if rest.size:
            self._pending[0] = (item_id, rest)
        else:
            self._pending.popleft()
        now = self._clock()
        self._play_end = max(now, self._play_end) + chunk.size / self.sample_rate
        progress = self._items[item_id]
        progress.emitted += chunk.size
        progress.ends_at = self._play_end
        self._current = item_id
        while self._handed and self._handed[0][2] <= now:
            self._handed.popleft()
        self._handed.append((item_id, chunk, self._play_end))
        return chunk

    def played_ms(self, item_id: str) -> int:
        """Milliseconds of the item the listener has heard by now."""
        progress = self._items.get(item_id)
        if progress is None:
            return 0
        unplayed = max(0.0, progress.ends_at - self._clock()) * self.sample_rate
        played = max(0, min(progress.emitted, round(progress.emitted - unplayed)))
        return played * 1000 // self.sample_rate

    @property
    def speaking(self) -> bool:
        """True while audio is queued (or paused) or still playing out."""
        return bool(self._pending) or self._play_end > self._clock()

    @property
    def paused(self) -> bool:
        return self._paused

    def pause(self) -> None:
        """Stop handing out audio, and take back what the transport has not played yet (the engine clears the
        transport's queue at the same moment), so that `resume` goes on from what the listener last heard."""
        now = self._clock()
        taken: list[tuple[str, np.ndarray]] = []
        for item_id, chunk, ends in tuple(self._handed):  # a copy: see `level_dbfs`
            if ends <= now:
                continue
            unheard = min(chunk.size, round((ends - now) * self.sample_rate))
            taken.append((item_id, chunk[chunk.size - unheard :]))
            progress = self._items[item_id]
            progress.emitted -= unheard
            progress.ends_at = now
        self._handed.clear()
        self._pending.extendleft(reversed(taken))
        self._play_end = min(self._play_end, now)
        self._paused = True

    def resume(self) -> None:
        self._paused = False
        if self._pending:
            self._arrived.set()

    def level_dbfs(self) -> float:
        """How loud what is playing now is (dB below full scale): the echo guard's reference.

        A phone call's pipeline hears the caller in a worker thread while the loop hands out audio: the deque is
        copied in one step (no Python code runs while `tuple` copies it, so no other thread can change it then)
        rather than iterated, which would raise "deque mutated during iteration"."""
        now = self._clock()
        playing = [chunk for _, chunk, ends in tuple(self._handed) if ends > now]
        if not playing:
            return -120.0
        samples = np.concatenate(playing).astype(np.float64)
        rms = float(np.sqrt(np.mean(samples * samples)))
        return 20 * np.log10(rms / 32768) if rms > 0 else -120.0

    def clear(self) -> Cut | None:
        """Drop everything not yet played; say which item was cut and where, if one was audible or queued."""
        queued_item = self._pending[0][0] if self._pending else None
        item_id = queued_item or (self._current if self._play_end > self._clock() else None)
        self._pending.clear()
        self._handed.clear()
        self._paused = False
        cut = None
        if item_id is not None:
            progress = self._items[item_id]
            cut = Cut(item_id, self.played_ms(item_id), progress.received * 1000 // self.sample_rate)
            # What was handed over but not played is gone: the transport queue is cleared with us.
            progress.emitted = cut.played_ms * self.sample_rate // 1000
            progress.ends_at = self._clock()
        self._play_end = min(self._play_end, self._clock())
        return cut
