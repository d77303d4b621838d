"""One limit for every call: browser calls (fastrtc's peer connections, on the page or the offer route) and
phone calls count against the same `MAX_CONCURRENT_CALLS` (per process).

A stranger cannot hold the lines without calling: one address may hold at most `CALLS_PER_ADDRESS` browser calls at
once, and a peer that does not start its call within `STREAM_START_S` of its offer is hung up on, freeing its line.
An offer may also have to pass a gate (the page's: it came from a page load that may call, see
`web.visitor.PageSessions`) before any peer connection is made for it.
"""

from __future__ import annotations

import asyncio
import secrets
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any

import gradio as gr
from fastapi.responses import JSONResponse
from fastrtc import WebRTC
from fastrtc.webrtc_connection_mixin import WebRTCConnectionMixin

from components.adapters.fastrtc import calls, hang_up, screen_offers, started
from components.web.guard import requester

RESERVATION_TTL_S = 30.0  # from the webhook's answer to the media stream's `start`
CALLS_PER_ADDRESS = 2  # a visitor with a second tab open; not a script holding every line
STREAM_START_S = 10.0  # from an answered offer to the call starting (the page starts it at once)

OfferGate = Callable[[], Awaitable[str | None]]  # why the offer being served may not call, or None


class CallLimiter:
    """Counts browser calls (fastrtc's peer connections, UI and offer route) and phone calls against one limit.

    A phone call holds its slot from the webhook's answer (a reservation, redeemed by the media stream's
    `start` with the token the TwiML carried) to its end, so a browser cannot take it in between.
    """

    def __init__(self, limit: int, reservation_ttl_s: float = RESERVATION_TTL_S) -> None:
        self.limit = limit
        self.reservation_ttl_s = reservation_ttl_s
        self._pools: list[WebRTCConnectionMixin] = []
        self._phone: set[str] = set()
        self._reserved: dict[str, tuple[float, str | None]] = {}  # token -> (expiry, CallSid)
        self._addresses: dict[str, str] = {}  # webrtc id -> the address its offer came from
        self._watching: set[asyncio.Task] = set()
        self._lock = threading.Lock()

    def watch(self, pool: WebRTCConnectionMixin) -> None:
        self._pools.append(pool)

    def active(self) -> int:
        with self._lock:
            now = time.monotonic()
            for token, (expiry, _) in list(self._reserved.items()):
                if expiry < now:
                    del self._reserved[token]
            return sum(len(pool.pcs) for pool in self._pools) + len(self._phone) + len(self._reserved)

    def full(self) -> bool:
        return self.active() >= self.limit

    def reserve(self, call_sid: str | None) -> str | None:
        if self.full():
            return None
        token = secrets.token_urlsafe(24)
        with self._lock:
            self._reserved[token] = (time.monotonic() + self.reservation_ttl_s, call_sid)
        return token

    def redeem(self, token: str, call_sid: str | None) -> bool:
        with self._lock:
            held = self._reserved.get(token)
            if held is None or held[0] < time.monotonic() or (held[1] is not None and held[1] != call_sid):
                return False
            del self._reserved[token]
            return True

    def add_phone(self, stream_sid: str) -> None:
        with self._lock:
            self._phone.add(stream_sid)

    def release_phone(self, stream_sid: str) -> None:
        with self._lock:
            self._phone.discard(stream_sid)

    def guard(self, component: WebRTC, gate: OfferGate | None = None) -> None:
        """Count a UI's WebRTC component (which answers its own offers) and refuse its offers when all lines are
        in use (fastrtc's own check counts one component at a time, and the page has one per voice engine) or
        `gate` says no."""
        self.watch(component)
        screen_offers(component, lambda body, answer: self.offer(component, body, answer, gate))

    async def offer(
        self, pool: WebRTCConnectionMixin, body: dict[str, Any], answer: Callable, gate: OfferGate | None = None
    ) -> Any:
        """Answer a WebRTC offer (`answer()`) unless the lines are full, its address holds its share of them, or
        `gate` refuses it (the refusal goes back as the failure's `message`); a call that does not start soon
        after is hung up on."""
        refused = self.refusal(pool, body)
        if refused is not None:
            return refused
        if gate is not None and body.get("type") == "offer" and body.get("webrtc_id") not in pool.pcs:
            message = await gate()
            if message is not None:
                content = {"status": "failed", "meta": {"error": "not_admitted", "message": message}}
                return JSONResponse(status_code=200, content=content)
        result = await answer()
        webrtc_id = body.get("webrtc_id")
        if body.get("type") == "offer" and isinstance(webrtc_id, str) and webrtc_id in calls(pool):
            with self._lock:
                self._addresses[webrtc_id] = requester()
            task = asyncio.get_running_loop().create_task(self._hang_up_unless_started(pool, webrtc_id))
            self._watching.add(task)
            task.add_done_callback(self._watching.discard)
        return result

    async def _hang_up_unless_started(self, pool: WebRTCConnectionMixin, webrtc_id: str) -> None:
        await asyncio.sleep(STREAM_START_S)
        if webrtc_id in calls(pool) and not started(pool, webrtc_id):
            await hang_up(pool, webrtc_id)

    def refusal(self, pool: WebRTCConnectionMixin, body: dict[str, Any]) -> JSONResponse | None:
        """fastrtc's answer to a WebRTC offer when all lines are in use, or this address already holds its share,
        or None to go ahead."""
        if body.get("type") != "offer" or body.get("webrtc_id") in pool.pcs:
            return None
        if self.full():
            meta = {"error": "concurrency_limit_reached", "limit": self.limit}
        elif self.held_by(requester()) >= CALLS_PER_ADDRESS:
            meta = {"error": "concurrency_limit_reached", "limit": CALLS_PER_ADDRESS}
        else:
            return None
        return JSONResponse(status_code=200, content={"status": "failed", "meta": meta})

    def held_by(self, address: str) -> int:
        """Browser calls (answered offers) that came from `address` and still hold a line."""
        live = {webrtc_id for pool in self._pools for webrtc_id in calls(pool)}
        with self._lock:
            for webrtc_id in [known for known in self._addresses if known not in live]:
                del self._addresses[webrtc_id]
            return sum(1 for webrtc_id, owner in self._addresses.items() if owner == address)


def share_call_limit(ui: gr.Blocks, limit: int, gate: OfferGate | None = None) -> CallLimiter:
    """One limit for all the calls of a page served by `demo.launch()` (whatever engine each one uses), and the
    page's gate on its offers."""
    limiter = CallLimiter(limit)
    for component in webrtc_components(ui):
        limiter.guard(component, gate)
    return limiter


def webrtc_components(ui: gr.Blocks | None) -> list[WebRTC]:
    """The call widgets of a page (one per voice engine on ours)."""
    return [block for block in (ui.blocks.values() if ui is not None else ()) if isinstance(block, WebRTC)]
