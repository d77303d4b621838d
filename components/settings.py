"""Deployment settings read from the environment, so an owner tunes a Space with Secrets and Variables only."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

# List prices in US dollars per million tokens (and per minute of audio where a service bills by duration), as
# OpenAI published them for these models (checked 2026-12; README "What a call costs"). `OPENAI_PRICES` (JSON, the
# same shape: {"model": {"audio_in": 32, ...}}) overrides or adds models; unknown models cost 0.
PRICES: dict[str, dict[str, float]] = {
    "gpt-realtime": {
        "text_in": 4.0, "text_in_cached": 0.4, "text_out": 16.0,
        "audio_in": 32.0, "audio_in_cached": 0.4, "audio_out": 64.0,
    },
    "gpt-realtime-mini": {
        "text_in": 0.6, "text_in_cached": 0.06, "text_out": 2.4,
        "audio_in": 10.0, "audio_in_cached": 0.3, "audio_out": 20.0,
    },
    "gpt-4o-mini-transcribe": {"text_in": 1.25, "text_out": 5.0, "audio_in": 3.0, "audio_minute": 0.003},
    "gpt-4o-transcribe": {"text_in": 2.5, "text_out": 10.0, "audio_in": 6.0, "audio_minute": 0.006},
    "whisper-1": {"audio_minute": 0.006},
    "gpt-5.4-mini": {"text_in": 0.25, "text_in_cached": 0.025, "text_out": 2.0},
    "gpt-4o-mini-tts": {"text_in": 0.6, "audio_minute": 0.015},
}  # fmt: skip

VOICES = ("marin", "cedar", "alloy", "ash", "ballad", "coral", "echo", "sage", "shimmer", "verse")
LANGUAGES = ("ja", "en")  # the caller's choice; the restaurant's default is in its config
ENGINES = ("realtime", "pipeline")  # speech-to-speech, or VAD → speech-to-text → chat model → text-to-speech


def _int(name: str, default: int, minimum: int = 1) -> int:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ValueError(f"{name} must be a whole number, got {raw!r}") from None
    if value < minimum:
        raise ValueError(f"{name} must be at least {minimum}, got {value}")
    return value


def prices() -> dict[str, dict[str, float]]:
    """The price table, with `OPENAI_PRICES` (a JSON object) merged over it."""
    raw = os.environ.get("OPENAI_PRICES", "").strip()
    if not raw:
        return PRICES
    try:
        extra = json.loads(raw)
        merged = {model: dict(fields) for model, fields in PRICES.items()}
        for model, fields in extra.items():
            merged.setdefault(model, {}).update({key: float(value) for key, value in fields.items()})
    except (ValueError, TypeError, AttributeError) as error:
        raise ValueError(f"OPENAI_PRICES must be a JSON object of models to prices: {error}") from None
    return merged


def _choice(name: str, choices: tuple[str, ...], default: str) -> str:
    raw = os.environ.get(name, "").strip().lower()
    if not raw:
        return default
    if raw not in choices:
        raise ValueError(f"{name} must be one of {', '.join(choices)}, got {raw!r}")
    return raw


def _optional_int(name: str) -> int | None:
    return _int(name, 0, minimum=0) if os.environ.get(name, "").strip() else None


def _optional_money(name: str) -> float | None:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return None
    try:
        value = float(raw)
    except ValueError:
        raise ValueError(f"{name} must be an amount of US dollars, got {raw!r}") from None
    if value < 0:
        raise ValueError(f"{name} must not be negative, got {raw!r}")
    return value


@dataclass(frozen=True)
class DemoLimits:
    """Who may spend the owner's OpenAI key, and how much of it a day (README "Share the demo safely").

    `CALLS_PER_VISITOR_PER_DAY`, `DAILY_CALL_MINUTES`, `DAILY_BUDGET_USD`: unset means no limit. The secret
    `DEMO_ACCESS_CODE` lets only visitors who open the link with `?code=…` use the owner's key. A day is the
    restaurant's day (its time zone); calls made with a visitor's own key count against none of these.
    """

    calls_per_visitor: int | None = None
    daily_minutes: int | None = None
    daily_budget_usd: float | None = None
    access_code: str | None = field(default=None, repr=False)

    @property
    def active(self) -> bool:
        return any(value is not None for value in vars(self).values())

    @classmethod
    def from_env(cls) -> DemoLimits:
        return cls(
            calls_per_visitor=_optional_int("CALLS_PER_VISITOR_PER_DAY"),
            daily_minutes=_optional_int("DAILY_CALL_MINUTES"),
            daily_budget_usd=_optional_money("DAILY_BUDGET_USD"),
            access_code=os.environ.get("DEMO_ACCESS_CODE", "").strip() or None,
        )


@dataclass(frozen=True)
class AgentSettings:
    """How the voice agent runs: models, voice, and the limits a shared demo needs.

    Defaults: a booking takes one to three minutes, so a call may last 5 minutes (the cookbook's 90 s
    cut people off mid read-back); 10 calls at once keep a free 2-vCPU Space responsive while bounding
    what a public demo can spend of the owner's OpenAI budget. `engine` is the voice engine a call starts
    with (`VOICE_ENGINE`): the page lets a visitor switch, the phone line always uses it.
    """

    model: str = "gpt-realtime"
    transcription_model: str = "gpt-4o-mini-transcribe"
    voice: str = "marin"
    call_time_limit_s: int = 300
    max_concurrent_calls: int = 10
    idle_reprompt_ms: int = 8000
    response_timeout_s: int = 20
    engine: str = "realtime"
    demo: DemoLimits = field(default_factory=DemoLimits)

    @property
    def hard_time_limit_s(self) -> int:
        """When transport cuts a call off: the handler ends it politely at `call_time_limit_s` (a goodbye that
        may still be playing), so this backstop only catches a call the handler could not end."""
        return self.call_time_limit_s + 15

    @classmethod
    def from_env(cls) -> AgentSettings:
        return cls(
            model=os.environ.get("OPENAI_REALTIME_MODEL", "").strip() or cls.model,
            transcription_model=os.environ.get("OPENAI_TRANSCRIBE_MODEL", "").strip() or cls.transcription_model,
            voice=os.environ.get("OPENAI_VOICE", "").strip() or cls.voice,
            call_time_limit_s=_int("CALL_TIME_LIMIT", cls.call_time_limit_s, minimum=30),
            max_concurrent_calls=_int("MAX_CONCURRENT_CALLS", cls.max_concurrent_calls),
            idle_reprompt_ms=_int("IDLE_REPROMPT_MS", cls.idle_reprompt_ms, minimum=1000),
            response_timeout_s=_int("RESPONSE_TIMEOUT", cls.response_timeout_s, minimum=2),
            engine=_choice("VOICE_ENGINE", ENGINES, cls.engine),
            demo=DemoLimits.from_env(),
        )


@dataclass
class CallOptions:
    """One call's choices: from the page's Settings on the web, the defaults on the phone. The key is never
    shown or logged (`repr=False`). `own_key` says the visitor typed one (their own money); `visitor` is who the
    page says is calling (`{"id": …, "code_ok": …}`, see `call.allowance`), or None on the phone."""

    language: str
    voice: str
    api_key: str | None = field(default=None, repr=False)
    own_key: bool = False
    visitor: dict[str, Any] | None = None

    @classmethod
    def from_inputs(cls, inputs: Sequence[Any] | None, default_language: str, settings: AgentSettings) -> CallOptions:
        """`inputs` are the call's UI inputs `[call, language, voice, key, visitor]` (fastrtc may put a marker
        before the call's id; an older page may send no visitor), or None on the phone. A key typed in the page
        wins over the environment's `OPENAI_API_KEY`; an unknown language or voice falls back to the default
        rather than failing the call."""
        values = list(inputs or [])
        visitor = values.pop() if values and isinstance(values[-1], dict) else None
        language, voice, key = ([None, None, None] + values)[-3:]
        typed = (key or "").strip() if isinstance(key, str) else ""
        return cls(
            language=language if language in LANGUAGES else default_language,
            voice=voice if voice in VOICES else settings.voice,
            api_key=typed or os.environ.get("OPENAI_API_KEY", "").strip() or None,
            own_key=bool(typed),
            visitor=visitor,
        )
