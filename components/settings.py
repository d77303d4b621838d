"""Deployment settings read from the environment, so an owner tunes a Space with Secrets and Variables only."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

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


def _choice(name: str, choices: tuple[str, ...], default: str) -> str:
    raw = os.environ.get(name, "").strip().lower()
    if not raw:
        return default
    if raw not in choices:
        raise ValueError(f"{name} must be one of {', '.join(choices)}, got {raw!r}")
    return raw


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
        )


@dataclass
class CallOptions:
    """One call's choices: from the page's Settings on the web, the defaults on the phone. The key is never
    shown or logged (`repr=False`)."""

    language: str
    voice: str
    api_key: str | None = field(default=None, repr=False)

    @classmethod
    def from_inputs(cls, inputs: Sequence[Any] | None, default_language: str, settings: AgentSettings) -> CallOptions:
        """`inputs` are the call's UI inputs `[call, language, voice, key]` (fastrtc may put a marker before the
        call's id), or None on the phone. A key typed in the page wins over the environment's `OPENAI_API_KEY`;
        an unknown language or voice falls back to the default rather than failing the call."""
        language, voice, key = ([None, None, None] + list(inputs or []))[-3:]
        return cls(
            language=language if language in LANGUAGES else default_language,
            voice=voice if voice in VOICES else settings.voice,
            api_key=(key or "").strip() or os.environ.get("OPENAI_API_KEY", "").strip() or None,
        )
