"""Who may open the owner's console, and the credentials derived from theirs.

Two ways in, either or both:

* **Sign in with Hugging Face** on a Space whose README front matter has `hf_oauth: true`: Gradio's own OAuth
  puts the signed-in user in its session cookie, and the users allowed are the Space's owner
  (`SPACE_AUTHOR_NAME`, set by the Space) and those listed in `OWNER_USERS` (comma-separated).
* **A password** from the secret `OWNER_PASSWORD`, compared in constant time; each wrong attempt from an
  address makes the next answer wait twice as long (up to a minute), so it cannot be guessed by brute force.

A password sign-in gives the page a random session token, kept server-side in a `gr.State` (the browser never
holds it, and an API client with a fresh session has none); a Hugging Face sign-in is read from Gradio's OAuth
session. Every console function asks `owner` first and returns nothing personal without an owner. With
neither way configured, the console explains how to turn it on. `feed_token` is the bearer token that opens
`/outputs` for a phone call: derived from the password (or the Space's OAuth secret), so it is the same on every
replica and changes when the credential does.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import secrets
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from gradio.utils import get_space

from components.settings import Settings
from components.web.visitor import signed_in_user

SESSION_S = 12 * 3600
MAX_WAIT_S = 60.0
_FEED_LABEL = b"reservation-voicebot /outputs"


@dataclass
class OwnerAccess:
    """The owner's credentials and the console sessions signed in with them (see the module docstring)."""

    password: str | None = field(default=None, repr=False)
    users: frozenset[str] = frozenset()
    oauth: bool = False  # Gradio's Hugging Face OAuth is set up (a Space with `hf_oauth: true`)
    oauth_secret: str | None = field(default=None, repr=False)
    _sessions: dict[str, tuple[str, float]] = field(default_factory=dict, repr=False)
    _failures: dict[str, int] = field(default_factory=dict, repr=False)  # wrong attempts in a row, per address
    _gates: dict[str, asyncio.Lock] = field(default_factory=dict, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @classmethod
    def from_settings(cls, settings: Settings) -> OwnerAccess:
        return cls(
            password=settings.secret("owner_password"),
            users=settings.owners,
            # Gradio attaches the Hub's real OAuth only on a Space (its own test); elsewhere it would mock it
            oauth=bool(settings.oauth_client_id) and get_space() is not None,
            oauth_secret=(settings.secret("oauth_client_secret") or "").strip() or None,
        )

    @property
    def configured(self) -> bool:
        return bool(self.password) or (self.oauth and bool(self.users))

    async def sign_in(self, attempt: str | None, client: str) -> str | None:
        """A session token for the right password, else None. Attempts from one address are answered one at a
        time, each after a wait that doubles with every wrong one before it (0.5 s, 1 s, … up to a minute)."""
        if not self.password:
            return None
        async with self._gate(client):
            failures = self._failures.get(client, 0)
            if failures:
                await asyncio.sleep(min(MAX_WAIT_S, 0.5 * 2 ** (failures - 1)))
            given = hashlib.sha256((attempt or "").encode()).digest()
            if hmac.compare_digest(given, hashlib.sha256(self.password.encode()).digest()):
                self._failures.pop(client, None)
                return self._new_session("password")
            self._failures[client] = failures + 1
            while len(self._failures) > 10_000:
                self._failures.pop(next(iter(self._failures)))
            return None

    def _gate(self, client: str) -> asyncio.Lock:
        with self._lock:
            gate = self._gates.get(client)
            if gate is None:
                if len(self._gates) > 10_000:
                    self._gates.clear()
                gate = self._gates[client] = asyncio.Lock()
            return gate

    def sign_out(self, token: str | None) -> None:
        with self._lock:
            self._sessions.pop(token or "", None)

    def owner(self, token: str | None, request: Any = None) -> str | None:
        """Who is at the console ("password" for a password sign-in, else the allowed Hugging Face user), or None.

        `request` is the event's `gr.Request`: with OAuth on, Gradio keeps the signed-in user in its session.
        """
        if token:
            with self._lock:
                held = self._sessions.get(token)
                if held and held[1] > time.monotonic():
                    return held[0]
                self._sessions.pop(token, None)
        username = self._oauth_user(request)
        return username if username and username.lower() in self.users else None

    def _oauth_user(self, request: Any) -> str | None:
        return signed_in_user(request) if self.oauth else None

    def feed_token(self) -> str | None:
        """The bearer token for `/outputs` of phone calls, or None when no credential is configured."""
        key = self.password or self.oauth_secret
        if not key:
            return None
        return hmac.new(key.encode(), _FEED_LABEL, hashlib.sha256).hexdigest()

    def opens_feed(self, presented: str | None) -> bool:
        expected = self.feed_token()
        return bool(expected and presented) and hmac.compare_digest(expected, presented or "")

    def _new_session(self, who: str) -> str:
        token = secrets.token_urlsafe(32)
        now = time.monotonic()
        with self._lock:
            for key, (_, expiry) in list(self._sessions.items()):
                if expiry < now:
                    del self._sessions[key]
            self._sessions[token] = (who, now + SESSION_S)
        return token
