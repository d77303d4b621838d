"""Who may open the owner's console, and the credentials derived from theirs.

Two ways in, either or both:

* **Sign in with Hugging Face** on a Space whose README front matter has `hf_oauth: true`: Gradio's own OAuth
  puts the signed-in user in its session cookie, and the users allowed are the Space's owner
  (`SPACE_AUTHOR_NAME`, set by the Space) and those listed in `OWNER_USERS` (comma-separated).
* **A password** from the secret `OWNER_PASSWORD`, compared in constant time. Guessing it is slowed without ever
  holding a slot: after a wrong attempt, an address must wait before its next one is even checked (1 s, doubling
  to 5 min; each failure is forgotten after 15 min), and the password as a whole takes at most `ACCOUNT_RATE`
  attempts a minute from everywhere. The owner, from an address of their own, is not kept waiting by strangers.

A password sign-in gives the page a random session token, kept server-side in a `gr.State` (the browser never
holds it, and an API client with a fresh session has none); a Hugging Face sign-in is read from Gradio's OAuth
session. Every console function asks `owner` first and returns nothing personal without an owner. With
neither way configured, the console explains how to turn it on. `feed_token` is the bearer token that opens
`/outputs` for a phone call: signed with the password (or the Space's OAuth secret), so every replica accepts it,
valid for `FEED_TOKEN_S`, and only ever sent in a header (a link would end up in logs).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from gradio.utils import get_space

from components.settings import Settings
from components.web.visitor import signed_in_user

SESSION_S = 12 * 3600
FIRST_WAIT_S, MAX_WAIT_S = 1.0, 300.0  # after a wrong password, per address
FORGET_FAILURE_S = 900.0
ACCOUNT_RATE = (60, 60.0)  # password attempts checked at all, from every address together, per minute
FEED_TOKEN_S = 12 * 3600
_FEED_LABEL = b"reservation-voicebot /outputs"


@dataclass(frozen=True)
class SignIn:
    """A password attempt's answer: a session `token`, or nothing; `retry_in_s` > 0 when it was not checked at all
    (too soon after a wrong one from the same address, or too many attempts from everywhere)."""

    token: str | None = None
    retry_in_s: float = 0.0


@dataclass
class OwnerAccess:
    """The owner's credentials and the console sessions signed in with them (see the module docstring)."""

    password: str | None = field(default=None, repr=False)
    users: frozenset[str] = frozenset()
    oauth: bool = False  # Gradio's Hugging Face OAuth is set up (a Space with `hf_oauth: true`)
    oauth_secret: str | None = field(default=None, repr=False)
    _sessions: dict[str, tuple[str, float]] = field(default_factory=dict, repr=False)
    clock: Callable[[], float] = field(default=time.monotonic, repr=False)
    wall: Callable[[], float] = field(default=time.time, repr=False)
    _failures: dict[str, list[float]] = field(default_factory=dict, repr=False)  # recent wrong attempts, per address
    _checked: deque[float] = field(default_factory=deque, repr=False)  # password checks, every address together
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

    def sign_in(self, attempt: str | None, client: str) -> SignIn:
        """A session for the right password; a wrong one makes this address wait before its next is checked.
        While an address (or the password as a whole) must wait, nothing is compared: the answer says how long."""
        if not self.password:
            return SignIn()
        now = self.clock()
        with self._lock:
            recent = [t for t in self._failures.get(client, []) if now - t < FORGET_FAILURE_S]
            self._failures.pop(client, None)
            if recent:
                self._failures[client] = recent
                ready_at = recent[-1] + min(MAX_WAIT_S, FIRST_WAIT_S * 2 ** (len(recent) - 1))
                if now < ready_at:
                    return SignIn(retry_in_s=ready_at - now)
            count, per_s = ACCOUNT_RATE
            while self._checked and self._checked[0] <= now - per_s:
                self._checked.popleft()
            if len(self._checked) >= count:
                return SignIn(retry_in_s=self._checked[0] + per_s - now)
            self._checked.append(now)
        given = hashlib.sha256((attempt or "").encode()).digest()
        if hmac.compare_digest(given, hashlib.sha256(self.password.encode()).digest()):
            with self._lock:
                self._failures.pop(client, None)
            return SignIn(token=self._new_session("password"))
        with self._lock:
            self._failures[client] = [*recent, now]
            while len(self._failures) > 10_000:
                self._failures.pop(next(iter(self._failures)))
        return SignIn()

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

    def _feed_key(self) -> bytes | None:
        key = self.password or self.oauth_secret
        return key.encode() if key else None

    def feed_token(self) -> str | None:
        """A bearer token for `/outputs` of phone calls, valid `FEED_TOKEN_S` from now; None with no credential."""
        key = self._feed_key()
        if key is None:
            return None
        expires = str(int(self.wall() + FEED_TOKEN_S))
        return f"{expires}.{hmac.new(key, _FEED_LABEL + expires.encode(), hashlib.sha256).hexdigest()}"

    def opens_feed(self, presented: str | None) -> bool:
        """Whether `presented` is a feed token this credential signed that has not expired (constant time)."""
        key = self._feed_key()
        expires, _, signature = (presented or "").partition(".")
        if key is None or not expires.isdigit() or int(expires) < self.wall():
            return False
        expected = hmac.new(key, _FEED_LABEL + expires.encode(), hashlib.sha256).hexdigest()
        return hmac.compare_digest(expected, signature)

    def _new_session(self, who: str) -> str:
        token = secrets.token_urlsafe(32)
        now = time.monotonic()
        with self._lock:
            for key, (_, expiry) in list(self._sessions.items()):
                if expiry < now:
                    del self._sessions[key]
            self._sessions[token] = (who, now + SESSION_S)
        return token
