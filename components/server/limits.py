"""One limit for every call: browser calls (fastrtc's peer connections, on the page or the offer route) and
phone calls count against the same `MAX_CONCURRENT_CALLS` (per process)."""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Callable
from typing import Any

import gradio as gr
from fastapi.responses import JSONResponse
from fastrtc import WebRTC
from fastrtc.webrtc_connection_mixin import WebRTCConnectionMixin

RESERVATION_TTL_S = 30.0  # from the webhook's answer to the media stream's `start`


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

    def guard(self, component: WebRTC) -> None:
        """Count a UI's WebRTC component (which answers its own offers) and refuse its offers when all lines are
        in use: fastrtc's own check counts one component at a time, and the page has one per voice engine."""
        self.watch(component)
        handle_offer = component.handle_offer

        async def limited_offer(body: dict[str, Any], set_outputs: Callable) -> Any:
            return self.refusal(component, body) or await handle_offer(body, set_outputs)

        component.handle_offer = limited_offer

    def refusal(self, pool: WebRTCConnectionMixin, body: dict[str, Any]) -> JSONResponse | None:
        """fastrtc's answer to a WebRTC offer when all lines are in use, or None to go ahead."""
        if body.get("type") != "offer" or body.get("webrtc_id") in pool.pcs or not self.full():
            return None
        return JSONResponse(
            status_code=200,
            content={"status": "failed", "meta": {"error": "concurrency_limit_reached", "limit": self.limit}},
        )


def share_call_limit(ui: gr.Blocks, limit: int) -> CallLimiter:
    """One limit for all the calls of a page served by `demo.launch()` (whatever engine each one uses)."""
    limiter = CallLimiter(limit)
    for component in webrtc_components(ui):
        limiter.guard(component)
    return limiter


def webrtc_components(ui: gr.Blocks | None) -> list[WebRTC]:
    """The call widgets of a page (one per voice engine on ours)."""
    return [block for block in (ui.blocks.values() if ui is not None else ()) if isinstance(block, WebRTC)]
