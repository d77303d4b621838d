"""Who is on the page, as well as the platform can tell: the Hugging Face user signed in with Gradio's OAuth,
else the client address behind the Space's proxy; and whether they opened the demo link with its access code.

What this can and cannot tell apart is in README "Share the demo safely": an address is shared by everyone
behind one office or mobile network, and changes when a phone moves; a signed-in user is one person.
"""

from __future__ import annotations

import hmac
from typing import Any

from components.call.options import Visitor
from components.settings import DemoLimits


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


def client_address(request: Any, behind_proxy: bool) -> str:
    """The visitor's address: behind a Space's proxy, the first hop of `X-Forwarded-For` (the socket is the
    proxy's); elsewhere, the socket's, since anyone can send that header."""
    headers = getattr(request, "headers", None) or {}
    forwarded = headers.get("x-forwarded-for", "") if behind_proxy else ""
    if forwarded.split(",")[0].strip():
        return forwarded.split(",")[0].strip()
    client = getattr(request, "client", None)
    return getattr(client, "host", None) or "unknown"


def page_visitor(request: Any, limits: DemoLimits, behind_proxy: bool, code: str | None = None) -> Visitor:
    """The visitor a call will be counted as: `hf:<user>` or `ip:<address>`, and whether they came with the access
    code. `code` is the one they came with (default: the page's `?code=`)."""
    if code is None:
        code = str((getattr(request, "query_params", None) or {}).get("code", ""))
    expected = limits.access_code
    code_ok = expected is None or hmac.compare_digest(code.encode(), expected.encode())
    user = signed_in_user(request)
    return Visitor(id=f"hf:{user}" if user else f"ip:{client_address(request, behind_proxy)}", code_ok=code_ok)
