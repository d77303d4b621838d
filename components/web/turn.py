"""How browsers reach the WebRTC server: TURN relays on a Space, nothing locally.

On a Hugging Face Space the audio must cross NATs and corporate firewalls, which needs a TURN relay.
Credentials expire, so they are fetched when a page is about to call (fastrtc asks `rtc_configuration`), never at
import time; a failure there becomes a clear message instead of a crash. Anyone can ask, so each address gets the
credentials it was last given for `CACHE_S` (it is the same visitor, calling again), and the provider is asked at
most `FETCHES` times a minute in all: past that, the freshest credentials are shared, and no stranger spends the
owner's Twilio or Hugging Face quota.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from fastrtc import get_cloudflare_turn_credentials_async, get_twilio_turn_credentials

from components.settings import Settings
from components.web.guard import Rate, requester

log = logging.getLogger(__name__)

RtcConfiguration = Callable[[], Awaitable[dict[str, Any]]]
CACHE_S = 300.0  # within the providers' credential lifetimes (Cloudflare's 10 min; Twilio's a day)
FETCHES = (30, 60.0)  # provider requests a minute, from every visitor together

NO_TURN_WARNING = (
    "このSpaceにはTURNサーバーの設定がないため、一部のネットワーク（社内ネットワークなど）からは通話がつながらない場合があります。"
    "Spaceの Secrets に TWILIO_ACCOUNT_SID と TWILIO_AUTH_TOKEN、または HF_TOKEN を追加してください。\n"
    "This Space has no TURN server configured, so calls from some networks (e.g. corporate ones) may fail. "
    "Add TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN, or HF_TOKEN, to the Space's secrets."
)


BUSY = (
    "通話の準備が混み合っています。少し待ってからもう一度お試しください。 "
    "Too many calls are being set up right now; please try again in a moment."
)


class TurnUnavailable(RuntimeError):
    """TURN credentials could not be fetched; the message is safe to show (it names no secret)."""


def turn_provider(settings: Settings) -> str | None:
    """Which TURN source this deployment uses: "twilio", "hf", or None (local, or a Space without secrets)."""
    if not settings.on_space:
        return None
    if settings.twilio_account_sid and settings.twilio_auth_token:
        return "twilio"
    if settings.hf_token:
        return "hf"
    return None


def missing_turn_warning(settings: Settings) -> str | None:
    """The notice to show on a Space that has no TURN secrets; None where none is needed."""
    if settings.on_space and turn_provider(settings) is None:
        return NO_TURN_WARNING
    return None


def rtc_configuration(settings: Settings) -> RtcConfiguration | None:
    """The WebRTC `rtc_configuration` for this deployment: a per-connection fetcher, or None for none."""
    provider = turn_provider(settings)
    if provider is None:
        return None

    cache: dict[str, tuple[float, dict[str, Any]]] = {}  # address -> (when fetched, credentials)
    fetches = Rate(*FETCHES)

    async def cached() -> dict[str, Any]:
        now, address = time.monotonic(), requester()
        for key in [key for key, (at, _) in cache.items() if now - at > CACHE_S]:
            del cache[key]
        if address in cache:
            return cache[address][1]
        if not fetches.allow("provider"):  # a flood: share the freshest credentials, never ask the provider more
            if not cache:
                raise TurnUnavailable(BUSY)
            return max(cache.values(), key=lambda held: held[0])[1]
        credentials = await fetch()
        cache[address] = (now, credentials)
        return credentials

    async def fetch() -> dict[str, Any]:
        try:
            if provider == "twilio":
                sid, token = settings.twilio_account_sid, settings.secret("twilio_auth_token")
                return await asyncio.to_thread(get_twilio_turn_credentials, sid, token)
            return await get_cloudflare_turn_credentials_async(hf_token=settings.secret("hf_token"))
        except Exception as failure:  # the provider's message may echo request details: keep only its type
            log.warning("TURN credentials from %s failed: %s", provider, type(failure).__name__)
            raise TurnUnavailable(
                f"TURNサーバーの認証情報を取得できませんでした（{provider}）。 "
                f"Could not get TURN credentials from {provider}; check the Space's secrets."
            ) from None

    return cached
