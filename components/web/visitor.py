"""Who is on the page, as well as the platform can tell: the Hugging Face user signed in with Gradio's OAuth,
else the client address behind the Space's proxy; and whether they opened the demo link with its access code.

What this can and cannot tell apart is in README "Share the demo safely": an address is shared by everyone
behind one office or mobile network, and changes when a phone moves; a signed-in user is one person.

`PageSessions` remembers the page loads this process served, so that a WebRTC offer is answered only for a page
that was loaded.
"""

from __future__ import annotations

import hashlib
import hmac
import threading
from collections import OrderedDict
from typing import Any

from components.call.notices import notice
from components.call.options import Visitor
from components.settings import DemoLimits
from components.web.guard import Rate, page_session

WRONG_CODES = Rate(5, 3600.0)  # wrong access codes one address may try in an hour; after them, none is right


def signed_in_user(request: Any) -> str | None:
    """The Hugging Face user Gradio's OAuth keeps in the page's session, if any (only on a Space with OAuth)."""
    if request is None:
        return None
    try:
        session = request.session  # Gradio's signed session cookie (its SessionMiddleware is installed)
    except (AssertionError, AttributeError):
        return None
    userinfo = (session.get("oauth_info") or {}).get("userinfo") or {}
    username = userinfo.get("preferred_username")
    return username if isinstance(username, str) else None


def client_address(request: Any) -> str:
    """The visitor's address, as `web.guard` established it from the trusted proxies' own hop (never from the
    first `X-Forwarded-For` entry, which is whatever the client wrote)."""
    client = getattr(request, "client", None)
    return getattr(client, "host", None) or "unknown"


def page_visitor(request: Any, limits: DemoLimits, code: str | None = None) -> Visitor:
    """The visitor a call will be counted as: `hf:<user>` or `ip:<address>`, and whether they came with the access
    code. `code` is the one they came with (default: the page's `?code=`)."""
    if code is None:
        code = str((getattr(request, "query_params", None) or {}).get("code", ""))
    user, address = signed_in_user(request), client_address(request)
    return Visitor(id=f"hf:{user}" if user else f"ip:{address}", code_ok=code_accepted(code, limits, address))


def code_accepted(code: str, limits: DemoLimits, address: str) -> bool:
    """Whether `code` is the demo's access code (or none is needed). Compared as digests in constant time, so the
    answer takes as long whatever was guessed; an address that guessed wrong `WRONG_CODES.count` times in the hour
    is told no whatever it sends, so the code cannot be found by trying."""
    expected = limits.access_code
    if expected is None:
        return True
    if not code or WRONG_CODES.full(address):
        return False
    right = hmac.compare_digest(hashlib.sha256(code.encode()).digest(), hashlib.sha256(expected.encode()).digest())
    if not right:
        WRONG_CODES.allow(address)  # counts the wrong guess
    return right


class PageSessions:
    """The page loads this process served, by Gradio session, so that an offer to the page's call widget is answered
    only for a page that was loaded (a script that never loaded it gets no peer connection).

    The access code and the allowances are checked when the call starts, before any model is reached, and the
    call then ends at once with the reason: at offer time the page has not yet said whether the visitor brings
    their own key, and fastrtc's widget shows only fixed texts for a refused offer, so a refusal there could not
    say why. The newest `kept` sessions are remembered (Gradio itself keeps fewer).
    """

    def __init__(self, kept: int = 10_000) -> None:
        self.kept = kept
        self._sessions: OrderedDict[str, None] = OrderedDict()
        self._lock = threading.Lock()

    def loaded(self, session: str | None) -> None:
        if not session:
            return
        with self._lock:
            self._sessions.pop(session, None)
            self._sessions[session] = None
            while len(self._sessions) > self.kept:
                self._sessions.popitem(last=False)

    async def offer_refusal(self) -> str | None:
        """Why the offer being served may not be answered (both languages), or None."""
        with self._lock:
            known = (page_session() or "") in self._sessions
        return None if known else notice("reload_page")
