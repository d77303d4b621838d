"""The page's `<head>` as the server sends it: link-preview tags (Open Graph, Twitter card) and the countdown
script from `assets/head.html`, and the preview image `assets/og-image.png` at `/og-image.png`.

Gradio 5.50 adds a Blocks' `head` in the browser once the page has loaded, so the crawlers that build a link
preview (Slack, LINE, mail) never see it, and its own HTML carries generic "Gradio" preview tags. This small
ASGI middleware, the same for `demo.launch()` (through `app_kwargs`) and `--server`, writes ours into the page
itself in place of Gradio's. It touches nothing else: any other path, and the WebSockets, pass straight through.
"""

from __future__ import annotations

import re
from html import escape
from pathlib import Path
from typing import Any

from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from components.restaurant.config import RestaurantConfig
from components.web.address import public_base

IMAGE_PATH = "/og-image.png"
_PREVIEW_TAGS = re.compile(rb"<meta\s+(?:property=\"og:[^\"]*\"|name=\"twitter:[^\"]*\")[^>]*>\s*", re.IGNORECASE)
_HEAD = re.compile(rb"<head[^>]*>", re.IGNORECASE)


class PageHead:
    """ASGI middleware: our `<head>` markup in the page, Gradio's preview tags out, the preview image served."""

    def __init__(self, app: ASGIApp, *, config: RestaurantConfig, assets: Path, public_url: str | None) -> None:
        self.app = app
        self.public_url = public_url
        self.template = (assets / "head.html").read_text(encoding="utf-8")
        self.image = (assets / "og-image.png").read_bytes()
        self.names = {"{name_ja}": escape(config.name("ja")), "{name_en}": escape(config.name("en"))}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in ("GET", "HEAD"):
            await self.app(scope, receive, send)
            return
        path = scope["path"][len(scope.get("root_path", "")) :] if scope.get("root_path") else scope["path"]
        if path == IMAGE_PATH:
            await self._image(send)
        elif path in ("", "/"):
            await self.app(scope, receive, _Rewriter(send, self._head(Request(scope))))
        else:
            await self.app(scope, receive, send)

    def _head(self, request: Request) -> bytes:
        markup = self.template.replace("{origin}", escape(public_base(request, self.public_url)))
        for placeholder, value in self.names.items():
            markup = markup.replace(placeholder, value)
        return markup.encode("utf-8")

    async def _image(self, send: Send) -> None:
        headers = [
            (b"content-type", b"image/png"),
            (b"content-length", str(len(self.image)).encode()),
            (b"cache-control", b"public, max-age=3600"),
        ]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": self.image})


class _Rewriter:
    """Collects an HTML response, then sends it with our markup after `<head>` (other responses go as they are)."""

    def __init__(self, send: Send, head: bytes) -> None:
        self.send = send
        self.head = head
        self.start: Message | None = None
        self.chunks: list[bytes] = []

    async def __call__(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            self.start = message
            if not self._html(message):
                await self.send(message)
            return
        if message["type"] != "http.response.body" or self.start is None or not self._html(self.start):
            await self.send(message)
            return
        self.chunks.append(message.get("body", b""))
        if message.get("more_body"):
            return
        page = b"".join(self.chunks)
        match = _HEAD.search(page)
        if match:
            rest = _PREVIEW_TAGS.sub(b"", page[match.end() :])
            page = page[: match.end()] + b"\n" + self.head + rest
        headers = [(key, value) for key, value in self.start["headers"] if key.lower() != b"content-length"]
        await self.send({**self.start, "headers": [*headers, (b"content-length", str(len(page)).encode())]})
        await self.send({"type": "http.response.body", "body": page})

    @staticmethod
    def _html(start: Message) -> bool:
        headers: dict[bytes, Any] = {key.lower(): value for key, value in start.get("headers", [])}
        return bytes(headers.get(b"content-type", b"")).startswith(b"text/html")
