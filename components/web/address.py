"""The address the world reached this server by, for links that must point back at it: Twilio's media stream
and callbacks, and the page's link-preview image."""

from __future__ import annotations

import re

from starlette.requests import Request

HOST = re.compile(r"^(?:[A-Za-z0-9.-]{1,253}|\[[0-9A-Fa-f:.]{2,45}\])(?::\d{1,5})?$")
LOCAL_HOSTS = ("localhost", "127.0.0.1", "[::1]")


def public_base(request: Request, configured: str | None = None) -> str:
    """The address the caller used to reach us, e.g. `https://owner-space.hf.space` (no trailing slash).

    `configured` (`PUBLIC_URL`) wins; otherwise the proxy's `X-Forwarded-Host`/`-Proto` or the `Host` header.
    Twilio and link previews need HTTPS, so plain HTTP is kept only for a loopback host (local tests).
    """
    configured = (configured or "").strip().rstrip("/")
    if configured.startswith(("https://", "http://")) and HOST.match(configured.split("://", 1)[1]):
        return configured
    host = (request.headers.get("x-forwarded-host") or request.headers.get("host") or "").split(",")[0].strip()
    if not HOST.match(host):
        host = request.url.netloc if HOST.match(request.url.netloc) else "localhost"
    proto = (request.headers.get("x-forwarded-proto") or request.url.scheme).split(",")[0].strip().lower()
    hostname = host.rsplit(":", 1)[0] if not host.endswith("]") else host
    if proto != "https" and hostname not in LOCAL_HOSTS:
        proto = "https"
    return f"{'https' if proto == 'https' else 'http'}://{host}"
