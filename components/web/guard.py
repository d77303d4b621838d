"""The door every request comes through: who is asking, as the platform vouches for it, and how much a stranger may
start.

`Guard` is an ASGI middleware in front of the whole app (`demo.launch()` and `--server` alike):

* **Who is asking.** Behind proxies we trust (`TRUSTED_PROXIES`: on a Space, the private ranges its own proxies
  connect from), the client is the rightmost `X-Forwarded-For` entry that is not one of them, never the first one
  (which is whatever the client wrote): uvicorn's own proxy-header logic decides. The address is kept for the
  request in a context variable, for what fastrtc and Gradio call without a request (`requester()`).
* **How much a stranger may start.** Per address: queue jobs (`queue/join`), component calls (WebRTC offers, TURN),
  the offer route and the phone webhooks each have a rate (`LIMITS`); over it the answer is HTTP 429, at once.
* **No uploads.** The app takes no files, so Gradio's upload route is refused: nobody fills the disk the bookings
  live on.
* **Which page asks.** A component call (a WebRTC offer comes this way) names its Gradio session in its body; the
  guard reads it (bodies over `COMPONENT_BODY_MAX` are refused) and keeps it for the request (`page_session()`), so
  an offer can be checked against the page load that made it before any peer connection exists.
"""

from __future__ import annotations

import contextvars
import json
import threading
import time
from collections import OrderedDict, deque

from starlette.types import ASGIApp, Receive, Scope, Send
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

from components.settings import Settings

_CLIENT: contextvars.ContextVar[str] = contextvars.ContextVar("client", default="unknown")
_SESSION: contextvars.ContextVar[str | None] = contextvars.ContextVar("session", default=None)
UPLOADS = ("/gradio_api/upload", "/upload")
COMPONENT_SERVER = ("/gradio_api/component_server", "/gradio_api/component_server/")
COMPONENT_BODY_MAX = 256 * 1024  # a WebRTC offer's SDP is a few kilobytes
# path suffix -> (requests, per seconds) from one address
# (a page load joins about ten events; a call's offer trickles its ICE candidates through the component server)
LIMITS = {
    "/gradio_api/queue/join": (60, 10.0),
    "/gradio_api/component_server": (60, 10.0),
    "/gradio_api/component_server/": (60, 10.0),
    "/webrtc/offer": (6, 10.0),
    "/telephone/incoming": (6, 10.0),
    "/telephone/transferred": (6, 10.0),
    "/telephone/sms": (6, 10.0),
    "/outputs": (10, 10.0),
}
QUEUE_MAX_SIZE = 256  # Gradio events waiting at once, from every address together (more are turned away)
# Gradio keeps a copy of the page's config for every session id a client names (about 130 KB here), 10,000 by
# default: a flood of made-up session ids would hold over a gigabyte. The oldest sessions beyond this are dropped
# (a visitor who comes back after a flood may have to reload the page).
SESSIONS_MAX = 300
MAX_TRACKED = 20_000  # addresses remembered at once (the oldest are forgotten first)


def requester() -> str:
    """The address of the client whose request is being served (as `Guard` saw it)."""
    return _CLIENT.get()


def page_session() -> str | None:
    """The Gradio session the component call being served names (as `Guard` read it), if any."""
    return _SESSION.get()


class Rate:
    """At most `count` events per `per_s` seconds for each key; thread-safe, with bounded memory."""

    def __init__(self, count: int, per_s: float) -> None:
        self.count, self.per_s = count, per_s
        self._seen: OrderedDict[str, deque[float]] = OrderedDict()
        self._lock = threading.Lock()

    def full(self, key: str) -> bool:
        """Whether `key` has used its rate (nothing is counted)."""
        now = time.monotonic()
        with self._lock:
            return sum(1 for t in self._seen.get(key, ()) if t > now - self.per_s) >= self.count

    def allow(self, key: str) -> bool:
        """Count one event for `key`; False (and not counted) when the key is over its rate."""
        now = time.monotonic()
        with self._lock:
            times = self._seen.pop(key, None) or deque()
            while times and times[0] <= now - self.per_s:
                times.popleft()
            allowed = len(times) < self.count
            if allowed:
                times.append(now)
            self._seen[key] = times
            while len(self._seen) > MAX_TRACKED:
                self._seen.popitem(last=False)
            return allowed


class Guard:
    """ASGI middleware: the trusted client address, per-address rates, and no uploads (see the module docstring)."""

    def __init__(self, app: ASGIApp, *, trusted_proxies: str) -> None:
        self.app = app
        self._proxied = ProxyHeadersMiddleware(self._guarded, trusted_hosts=trusted_proxies)  # type: ignore[arg-type]
        self._rates = {path: Rate(count, per_s) for path, (count, per_s) in LIMITS.items()}

    @classmethod
    def options(cls, settings: Settings) -> dict[str, str]:
        return {"trusted_proxies": settings.trusted_proxies}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self._proxied(scope, receive, send)  # type: ignore[arg-type]

    async def _guarded(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        client = scope.get("client")
        address = client[0] if client else "unknown"
        token = _CLIENT.set(address)
        try:
            path = scope["path"][len(scope.get("root_path", "")) :] if scope.get("root_path") else scope["path"]
            if scope["type"] == "http":
                if path in UPLOADS and scope["method"] == "POST":
                    await _refuse(send, 403, b'{"error": "this app takes no uploads"}')
                    return
                rate = self._rates.get(path)
                if rate is not None and not rate.allow(address):
                    await _refuse(send, 429, b'{"error": "too many requests, try again in a moment"}')
                    return
                if path in COMPONENT_SERVER and scope["method"] == "POST":
                    await self._component_call(scope, receive, send)
                    return
            await self.app(scope, receive, send)
        finally:
            _CLIENT.reset(token)

    async def _component_call(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Read the component call's body (bounded), note its session, and hand the same body on."""
        body = b""
        more = True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            body += message.get("body", b"")
            more = message.get("more_body", False)
            if len(body) > COMPONENT_BODY_MAX:
                await _refuse(send, 413, b'{"error": "request too large"}')
                return
        try:
            session = json.loads(body).get("session_hash")
        except (ValueError, AttributeError):
            session = None
        token = _SESSION.set(session if isinstance(session, str) else None)
        sent = False

        async def replay() -> dict:
            nonlocal sent
            if sent:
                return await receive()
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}

        try:
            await self.app(scope, replay, send)
        finally:
            _SESSION.reset(token)


async def _refuse(send: Send, status: int, body: bytes) -> None:
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    if status == 429:
        headers.append((b"retry-after", b"10"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
