"""The live feed of every call (`GET /outputs`): each follower gets the newest view of the call it follows.

fastrtc keeps one queue per call that a single reader drains, so a dashboard next to the UI would steal the
UI's updates, and fastrtc drops a phone call's updates altogether. `CallFeed` keeps the latest view of each
call for any number of followers, as server-sent events.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

from fastrtc import AdditionalOutputs

from components.call.state import CallView

KEEPALIVE_S = 15.0
KEEP_ENDED_S = 300.0  # an ended call's last view stays available this long
FEED_IDLE_S = 3600.0
MAX_FEEDS = 500


@dataclass
class _Feed:
    view: Any = None
    version: int = 0
    updated: float = field(default_factory=time.monotonic)
    closed_at: float | None = None
    restricted: bool = False  # a phone call: only the owner may follow it
    waiters: set[tuple[asyncio.AbstractEventLoop, asyncio.Event]] = field(default_factory=set)


def _payload(outputs: Any) -> Any:
    """The JSON-able value of one `AdditionalOutputs`: its single argument (the call's view), else the list."""
    if isinstance(outputs, AdditionalOutputs):
        outputs = outputs.args[0] if len(outputs.args) == 1 else list(outputs.args)
    return outputs.model_dump(mode="json") if isinstance(outputs, CallView) else outputs


class CallFeed:
    """The latest view of every live call, for any number of followers (`/outputs`).

    fastrtc keeps one queue per call that a single reader drains; a dashboard next to the UI would steal the
    UI's updates. Here each follower gets every view that is newer than the last it got: views are complete
    snapshots, so one that is slow to read skips straight to the newest. Thread-safe.
    """

    def __init__(self, keep_ended_s: float = KEEP_ENDED_S, max_feeds: int = MAX_FEEDS) -> None:
        self.keep_ended_s = keep_ended_s
        self.max_feeds = max_feeds
        self._feeds: dict[str, _Feed] = {}
        self._lock = threading.Lock()

    def open(self, call_id: str, *, restricted: bool = False) -> None:
        """Start a call's feed; a `restricted` one (a phone call) is for the owner only."""
        with self._lock:
            self._prune()
            self._feeds.setdefault(call_id, _Feed()).restricted = restricted

    def restricted(self, call_id: str) -> bool:
        with self._lock:
            feed = self._feeds.get(call_id)
            return feed is not None and feed.restricted

    def publish(self, call_id: str, outputs: Any) -> None:
        view = _payload(outputs)
        with self._lock:
            feed = self._feeds.get(call_id)
            if feed is None:
                self._prune()
                feed = self._feeds[call_id] = _Feed()
            feed.view, feed.version, feed.updated = view, feed.version + 1, time.monotonic()
            self._notify(feed)

    def publisher(self, call_id: str) -> Callable[[AdditionalOutputs], None]:
        return lambda outputs: self.publish(call_id, outputs)

    def close(self, call_id: str) -> None:
        with self._lock:
            feed = self._feeds.get(call_id)
            if feed is not None and feed.closed_at is None:
                feed.closed_at = time.monotonic()
                self._notify(feed)

    def known(self, call_id: str) -> bool:
        with self._lock:
            return call_id in self._feeds

    async def wait_known(self, call_id: str, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while not self.known(call_id):
            if time.monotonic() >= deadline:
                return False
            await asyncio.sleep(0.1)
        return True

    async def events(self, call_id: str, keepalive_s: float = KEEPALIVE_S) -> AsyncIterator[str]:
        """Server-sent events: `data: <view JSON>` per update, `event: end` when the call is over."""
        waiter = (asyncio.get_running_loop(), asyncio.Event())
        with self._lock:
            feed = self._feeds.get(call_id)
            if feed is None:
                return
            feed.waiters.add(waiter)
        seen = 0
        try:
            yield f"retry: {int(keepalive_s * 1000)}\n\n"
            while True:
                waiter[1].clear()
                with self._lock:
                    version, view, closed = feed.version, feed.view, feed.closed_at is not None
                if version != seen and view is not None:
                    seen = version
                    yield f"data: {json.dumps(view, ensure_ascii=False, separators=(',', ':'), default=str)}\n\n"
                if closed:
                    yield "event: end\ndata: {}\n\n"
                    return
                try:
                    await asyncio.wait_for(waiter[1].wait(), keepalive_s)
                except TimeoutError:
                    yield ": keepalive\n\n"
        finally:
            with self._lock:
                feed.waiters.discard(waiter)

    def subscribers(self, call_id: str) -> int:
        with self._lock:
            feed = self._feeds.get(call_id)
            return len(feed.waiters) if feed else 0

    @staticmethod
    def _notify(feed: _Feed) -> None:
        for loop, event in list(feed.waiters):
            try:
                loop.call_soon_threadsafe(event.set)
            except RuntimeError:  # that follower's loop is gone
                feed.waiters.discard((loop, event))

    def _prune(self) -> None:
        now = time.monotonic()
        for call_id, feed in list(self._feeds.items()):
            ended = feed.closed_at is not None and now - feed.closed_at > self.keep_ended_s
            if (ended or now - feed.updated > FEED_IDLE_S) and not feed.waiters:
                del self._feeds[call_id]
        if len(self._feeds) >= self.max_feeds:
            oldest = sorted(self._feeds, key=lambda key: (self._feeds[key].closed_at is None, self._feeds[key].updated))
            for call_id in oldest[: len(self._feeds) - self.max_feeds + 1]:
                del self._feeds[call_id]
