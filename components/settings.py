"""Deployment settings: every variable README lists, read from the environment once, at start, and checked.

An owner tunes a Space with Secrets and Variables only, so a mistyped value must stop the app with the variable's
name rather than surface mid-call. `Settings.load()` reads and validates them all (pydantic-settings); the rest of
the app receives the small typed objects built here (`AgentSettings` for a call, `DemoLimits`, `BargeInSettings`,
`PipelineModels`) or the `Settings` object itself, and never reads the environment again.

This module imports nothing else of ours: every layer may use it.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    AliasChoices,
    BeforeValidator,
    Field,
    FilePath,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
)
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

PROJECT_ROOT = Path(__file__).resolve().parents[1]

# List prices in US dollars per million tokens (and per minute of audio where a service bills by duration), as
# OpenAI published them for these models (checked 2026-12; README "What a call costs"). `OPENAI_PRICES` (JSON, the
# same shape: {"model": {"audio_in": 32, ...}}) overrides or adds models; unknown models cost 0.
PRICES: dict[str, dict[str, float]] = {
    "gpt-realtime-2.1": {
        "text_in": 4.0, "text_in_cached": 0.4, "text_out": 24.0,
        "audio_in": 32.0, "audio_in_cached": 0.4, "audio_out": 64.0,
    },
    "gpt-realtime": {
        "text_in": 4.0, "text_in_cached": 0.4, "text_out": 16.0,
        "audio_in": 32.0, "audio_in_cached": 0.4, "audio_out": 64.0,
    },
    "gpt-realtime-2.1-mini": {
        "text_in": 0.6, "text_in_cached": 0.06, "text_out": 2.4,
        "audio_in": 10.0, "audio_in_cached": 0.3, "audio_out": 20.0,
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
    # GPT-Live bills the session's time, per second: active and (WebRTC only) standby minutes.
    "gpt-live-1.1": {"active_minute": 0.05, "standby_minute": 0.02},
    "gpt-live-1": {"active_minute": 0.05, "standby_minute": 0.02},
}  # fmt: skip

VOICES = ("marin", "cedar", "alloy", "ash", "ballad", "coral", "echo", "sage", "shimmer", "verse")
LANGUAGES = ("ja", "en")  # the caller's choice; the restaurant's default is in its config
# full duplex with delegation (GPT-Live), speech-to-speech (Realtime), or VAD → STT → chat model → TTS
ENGINES = ("live", "realtime", "pipeline")
REASONING_EFFORTS = ("none", "minimal", "low", "medium", "high", "off")

Prices = Mapping[str, Mapping[str, float]]
LOOPBACK = ("127.0.0.1", "::1")
PRIVATE_NETWORKS = ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "fc00::/7")


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


@dataclass(frozen=True)
class Caps:
    """What one caller may ask of the restaurant (`restaurant.caps`): new bookings a day, callback requests a call
    and a day, lookup misses a day. Defaults suit a guest booking for themselves and a friend."""

    bookings_per_caller_per_day: int = 3
    callbacks_per_call: int = 2
    callbacks_per_caller_per_day: int = 3
    lookup_misses_per_caller_per_day: int = 10


@dataclass(frozen=True)
class BargeInSettings:
    """How quickly and how surely the agent yields (`BARGE_IN_ONSET_MS`, `BARGE_IN_CONFIRM_MS`,
    `BARGE_IN_RESUME_MS`, `BARGE_IN_THRESHOLD_DBFS`).

    The threshold sits well above a quiet room (-60 dBFS) and a phone line's hiss, and well below speech into
    a headset or handset (-30 to -15 dBFS). On the phone, echo comes back at least `echo_loss_db` below the
    agent's own level (a handset's echo return loss), and speech must clear it by `echo_margin_db`.
    """

    onset_ms: int = 40
    confirm_ms: int = 250
    resume_ms: int = 500
    threshold_dbfs: float = -40.0
    echo_loss_db: float = 20.0
    echo_margin_db: float = 8.0


@dataclass(frozen=True)
class PipelineModels:
    """Models of the pipeline engine (speech-to-text reuses `AgentSettings.transcription_model`).

    `OPENAI_CHAT_MODEL` (default `gpt-5.4-mini`, the small current model with tool calling),
    `OPENAI_TTS_MODEL` (default `gpt-4o-mini-tts`, which streams PCM and takes a speaking style),
    `OPENAI_CHAT_REASONING_EFFORT`: sent to the chat model as `reasoning_effort`; by default `none` for the
    GPT-5 family (a phone turn cannot wait for deliberation) and not sent to other models (a local model on
    an OpenAI-compatible server may not know the parameter); `off` never sends it.
    """

    chat_model: str = "gpt-5.4-mini"
    tts_model: str = "gpt-4o-mini-tts"
    reasoning_effort: str | None = None
    max_tool_rounds: int = 6


@dataclass(frozen=True)
class TextSettings:
    """Text messages on the Twilio account (`TWILIO_ACCOUNT_SID`, `TWILIO_AUTH_TOKEN`) from `TWILIO_SMS_FROM`, and
    the restaurant-local hour of the day before a booking at which its reminder goes (`SMS_REMINDER_HOUR`)."""

    account_sid: str
    auth_token: str = field(repr=False)
    sender: str
    reminder_hour: int | None = None


@dataclass(frozen=True)
class StaffSettings:
    """Handing a phone caller over to a person: the number to ring (`STAFF_PHONE`), the restaurant-local window in
    which someone is there to answer (`STAFF_HOURS`, default: the day's opening hours), and the Twilio account
    whose live call is redirected."""

    phone: str
    hours: tuple[dt.time, dt.time] | None
    account_sid: str
    auth_token: str = field(repr=False)


@dataclass(frozen=True)
class LineSettings:
    """What the server and the phone line know of the deployment: the token that signs Twilio's webhooks
    (`TWILIO_AUTH_TOKEN`, unless `TWILIO_VALIDATE_SIGNATURE` is off), the public address (`PUBLIC_URL`), the voice
    of Twilio's own `<Say>` (`TWILIO_SAY_VOICE`), and whether this is a Space (behind its proxy)."""

    signing_token: str | None = field(default=None, repr=False)
    public_url: str | None = None
    say_voice: str | None = None
    on_space: bool = False
    unsigned_allowed: bool = False  # `TWILIO_VALIDATE_SIGNATURE=false`: a local test, or FastPhone's own account
    texts: TextSettings | None = None  # text messages to phone callers, when `TWILIO_SMS_FROM` is set
    staff: StaffSettings | None = None  # hand-over to a person, when `STAFF_PHONE` is set

    @property
    def served(self) -> bool:
        """The phone routes exist only where Twilio's signatures are checked, or where the owner said they cannot
        be: anyone can post to a webhook, so an unsigned line would spend the owner's key for strangers."""
        return self.signing_token is not None or self.unsigned_allowed


@dataclass(frozen=True)
class AgentSettings:
    """How the voice agent runs a call: models, voice, limits, the owner's key and its allowances.

    Defaults: a booking takes one to three minutes, so a call may last 5 minutes (the cookbook's 90 s
    cut people off mid read-back); 10 calls at once keep a free 2-vCPU Space responsive while bounding
    what a public demo can spend of the owner's OpenAI budget. `engine` is the voice engine a call starts
    with (`VOICE_ENGINE`): the page lets a visitor switch, the phone line always uses it. `api_key` is the
    owner's (`OPENAI_API_KEY`), never shown or logged.
    """

    model: str = "gpt-realtime-2.1"
    live_model: str = "gpt-live-1.1"
    live_backend_model: str = "gpt-5.4-mini"
    transcription_model: str = "gpt-4o-mini-transcribe"
    voice: str = "marin"
    call_time_limit_s: int = 300
    max_concurrent_calls: int = 10
    idle_reprompt_ms: int = 8000
    response_timeout_s: int = 20
    engine: str = "live"
    api_key: str | None = field(default=None, repr=False)
    demo: DemoLimits = field(default_factory=DemoLimits)
    caps: Caps = field(default_factory=Caps)
    barge_in: BargeInSettings = field(default_factory=BargeInSettings)
    pipeline: PipelineModels = field(default_factory=PipelineModels)
    prices: Prices = field(default_factory=lambda: PRICES, repr=False)

    @property
    def hard_time_limit_s(self) -> int:
        """When transport cuts a call off: the handler ends it politely at `call_time_limit_s` (a goodbye that
        may still be playing), so this backstop only catches a call the handler could not end."""
        return self.call_time_limit_s + 15


def _lower(value: Any) -> Any:
    return value.strip().lower() if isinstance(value, str) else value


def _names(value: Any) -> Any:
    """A comma-separated list of names, lower-cased (Hugging Face user names compare case-insensitively)."""
    if isinstance(value, str):
        return frozenset(name.strip().lower() for name in value.split(",") if name.strip())
    return value


def _token(value: SecretStr) -> SecretStr:
    """A key or token goes into an HTTP header: one word, no spaces or line breaks (a common paste mistake)."""
    text = value.get_secret_value()
    if not text.strip() or any(character.isspace() or not character.isprintable() for character in text):
        raise ValueError("must be one word, with no spaces or line breaks (check what was pasted)")
    return value


def _phrase(value: SecretStr) -> SecretStr:
    """A password or access code someone types: not blank, and on one line."""
    text = value.get_secret_value()
    if not text.strip() or any(character in text for character in "\r\n\0"):
        raise ValueError("must not be blank or span several lines")
    return value


def _not_a_folder(value: Path) -> Path:
    if value.is_dir():
        raise ValueError(f"must be a file path, not the folder {str(value)!r}")
    return value


Lowered = BeforeValidator(_lower)
Token = Annotated[SecretStr, AfterValidator(_token)]
Phrase = Annotated[SecretStr, AfterValidator(_phrase)]
Model = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._:/-]{0,127}$")]


def _env(name: str, *more: str) -> Any:
    return AliasChoices(name, *more) if more else name


class SettingsError(ValueError):
    """A variable has a value the app cannot run with; the message names each one and says what it must be."""


class Settings(BaseSettings):
    """The environment, read once (README "Duplicate it with your own key" lists every variable).

    Empty values count as unset. Secrets are `SecretStr`, so printing the settings never shows them.
    """

    model_config = SettingsConfigDict(env_ignore_empty=True, extra="ignore", frozen=True)

    # The OpenAI key and models
    openai_api_key: Token | None = Field(None, validation_alias="OPENAI_API_KEY")
    realtime_model: Model = Field(AgentSettings.model, validation_alias="OPENAI_REALTIME_MODEL")
    live_model: Model = Field(AgentSettings.live_model, validation_alias="OPENAI_LIVE_MODEL")
    live_backend_model: Model = Field(AgentSettings.live_backend_model, validation_alias="OPENAI_LIVE_BACKEND_MODEL")
    transcribe_model: Model = Field(AgentSettings.transcription_model, validation_alias="OPENAI_TRANSCRIBE_MODEL")
    voice: Annotated[Literal[*VOICES], Lowered] = Field(AgentSettings.voice, validation_alias="OPENAI_VOICE")
    chat_model: Model = Field(PipelineModels.chat_model, validation_alias="OPENAI_CHAT_MODEL")
    tts_model: Model = Field(PipelineModels.tts_model, validation_alias="OPENAI_TTS_MODEL")
    reasoning_effort: Annotated[Literal[*REASONING_EFFORTS] | None, Lowered] = Field(
        None, validation_alias="OPENAI_CHAT_REASONING_EFFORT"
    )
    prices: Annotated[dict[str, dict[str, float]], NoDecode] = Field(
        default_factory=dict, validation_alias="OPENAI_PRICES"
    )
    engine: Annotated[Literal[*ENGINES], Lowered] = Field(AgentSettings.engine, validation_alias="VOICE_ENGINE")

    # Calls
    call_time_limit: int = Field(AgentSettings.call_time_limit_s, ge=30, validation_alias="CALL_TIME_LIMIT")
    max_concurrent_calls: int = Field(AgentSettings.max_concurrent_calls, ge=1, validation_alias="MAX_CONCURRENT_CALLS")
    idle_reprompt_ms: int = Field(AgentSettings.idle_reprompt_ms, ge=1000, validation_alias="IDLE_REPROMPT_MS")
    response_timeout: int = Field(AgentSettings.response_timeout_s, ge=2, validation_alias="RESPONSE_TIMEOUT")
    barge_in_onset_ms: int = Field(BargeInSettings.onset_ms, ge=10, le=1000, validation_alias="BARGE_IN_ONSET_MS")
    barge_in_confirm_ms: int = Field(BargeInSettings.confirm_ms, ge=20, le=3000, validation_alias="BARGE_IN_CONFIRM_MS")
    barge_in_resume_ms: int = Field(BargeInSettings.resume_ms, ge=50, le=5000, validation_alias="BARGE_IN_RESUME_MS")
    barge_in_threshold_dbfs: float = Field(
        BargeInSettings.threshold_dbfs, ge=-90, le=0, validation_alias="BARGE_IN_THRESHOLD_DBFS"
    )

    # The demo link's allowances
    calls_per_visitor_per_day: int | None = Field(None, ge=0, validation_alias="CALLS_PER_VISITOR_PER_DAY")
    daily_call_minutes: int | None = Field(None, ge=0, validation_alias="DAILY_CALL_MINUTES")
    daily_budget_usd: float | None = Field(None, ge=0, validation_alias="DAILY_BUDGET_USD")
    demo_access_code: Phrase | None = Field(None, validation_alias="DEMO_ACCESS_CODE")

    # What one caller may ask of the restaurant
    bookings_per_caller_per_day: int = Field(
        Caps.bookings_per_caller_per_day, ge=0, validation_alias="BOOKINGS_PER_CALLER_PER_DAY"
    )
    callbacks_per_call: int = Field(Caps.callbacks_per_call, ge=0, validation_alias="CALLBACKS_PER_CALL")
    callbacks_per_caller_per_day: int = Field(
        Caps.callbacks_per_caller_per_day, ge=0, validation_alias="CALLBACKS_PER_CALLER_PER_DAY"
    )

    # Where things are
    restaurant_config: FilePath | None = Field(None, validation_alias="RESTAURANT_CONFIG")
    database_url: Token | None = Field(None, validation_alias="DATABASE_URL")
    reservations_db: Annotated[Path, AfterValidator(_not_a_folder)] | None = Field(
        None, validation_alias="RESERVATIONS_DB"
    )
    public_url: str | None = Field(None, pattern=r"^https?://[^\s/]+/?$", validation_alias="PUBLIC_URL")
    server_name: str = Field("127.0.0.1", validation_alias="GRADIO_SERVER_NAME")
    server_port: int = Field(7860, ge=1, le=65535, validation_alias=_env("GRADIO_SERVER_PORT", "PORT"))
    voicebot_server: bool = Field(False, validation_alias="VOICEBOT_SERVER")
    trusted_proxies_given: str | None = Field(None, validation_alias="TRUSTED_PROXIES")

    # The Space, its owner and the console
    space_id: str | None = Field(None, validation_alias="SPACE_ID")
    space_author_name: str | None = Field(None, validation_alias="SPACE_AUTHOR_NAME")
    owner_users: Annotated[frozenset[Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9._-]*$")]], NoDecode] = Field(
        frozenset(), validation_alias="OWNER_USERS"
    )
    owner_password: Phrase | None = Field(None, validation_alias="OWNER_PASSWORD")
    oauth_client_id: str | None = Field(None, validation_alias="OAUTH_CLIENT_ID")
    oauth_client_secret: Token | None = Field(None, validation_alias="OAUTH_CLIENT_SECRET")
    hf_token: Token | None = Field(None, validation_alias="HF_TOKEN")

    # Twilio: the TURN relay, and the phone line
    twilio_account_sid: str | None = Field(None, pattern=r"^AC[0-9a-fA-F]{32}$", validation_alias="TWILIO_ACCOUNT_SID")
    twilio_auth_token: Token | None = Field(None, validation_alias="TWILIO_AUTH_TOKEN")
    twilio_validate_signature: bool = Field(True, validation_alias="TWILIO_VALIDATE_SIGNATURE")
    twilio_say_voice: str | None = Field(None, pattern=r"^[A-Za-z0-9._-]{1,64}$", validation_alias="TWILIO_SAY_VOICE")
    twilio_sms_from: str | None = Field(
        None, pattern=r"^(\+[1-9][0-9]{6,14}|MG[0-9a-fA-F]{32})$", validation_alias="TWILIO_SMS_FROM"
    )
    sms_reminder_hour: int | None = Field(None, ge=0, le=23, validation_alias="SMS_REMINDER_HOUR")
    staff_phone: str | None = Field(None, pattern=r"^\+[1-9][0-9]{6,14}$", validation_alias="STAFF_PHONE")
    staff_hours: str | None = Field(None, pattern=r"^\d{1,2}:\d{2}-\d{1,2}:\d{2}$", validation_alias="STAFF_HOURS")

    @field_validator("staff_phone")
    @classmethod
    def _hand_over_needs_the_account(cls, value: str | None, info: ValidationInfo) -> str | None:
        return _on_the_twilio_account(value, info, "the live call is redirected")

    @field_validator("staff_hours")
    @classmethod
    def _a_window(cls, value: str | None) -> str | None:
        if value is not None:
            start, end = _window(value)
            if end <= start:
                raise ValueError("must end after it starts, like 11:00-21:00")
        return value

    @field_validator("twilio_sms_from")
    @classmethod
    def _texts_need_the_account(cls, value: str | None, info: ValidationInfo) -> str | None:
        return _on_the_twilio_account(value, info, "texts are sent on that account")

    @field_validator("trusted_proxies_given")
    @classmethod
    def _networks(cls, value: str | None) -> str | None:
        if value is None or value.strip() == "*":  # "*": every hop is trusted (one proxy of your own in front)
            return value
        for entry in value.split(","):
            try:
                ipaddress.ip_network(entry.strip(), strict=False)
            except ValueError:
                raise ValueError(f"must be addresses or networks like 10.0.0.0/8, comma-separated: {entry!r}") from None
        return value

    @field_validator("owner_users", mode="before")
    @classmethod
    def _owner_names(cls, value: Any) -> Any:
        return _names(value)

    @field_validator("database_url")
    @classmethod
    def _postgres(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and not value.get_secret_value().startswith(("postgres://", "postgresql://")):
            raise ValueError("must be a postgresql:// URL")
        return value

    @field_validator("prices", mode="before")
    @classmethod
    def _prices(cls, value: Any) -> Any:
        if isinstance(value, str):
            try:
                return json.loads(value)
            except json.JSONDecodeError as error:
                raise ValueError(f"must be a JSON object of models to prices (not JSON: {error.msg})") from None
        return value

    @classmethod
    def load(cls) -> Settings:
        """The settings from the environment, or a `SettingsError` naming every bad variable."""
        try:
            return cls()
        except ValidationError as invalid:
            raise SettingsError("\n".join(_explain(error) for error in invalid.errors())) from None

    # ---- what the rest of the app receives ----------------------------------------------------------

    @property
    def demo(self) -> DemoLimits:
        code = self.demo_access_code.get_secret_value().strip() if self.demo_access_code else ""
        return DemoLimits(self.calls_per_visitor_per_day, self.daily_call_minutes, self.daily_budget_usd, code or None)

    @property
    def price_table(self) -> dict[str, dict[str, float]]:
        """The price table, with `OPENAI_PRICES` merged over it."""
        merged = {model: dict(rates) for model, rates in PRICES.items()}
        for model, rates in self.prices.items():
            merged.setdefault(model, {}).update(rates)
        return merged

    @property
    def agent(self) -> AgentSettings:
        key = self.openai_api_key.get_secret_value().strip() if self.openai_api_key else ""
        return AgentSettings(
            model=self.realtime_model,
            live_model=self.live_model,
            live_backend_model=self.live_backend_model,
            transcription_model=self.transcribe_model,
            voice=self.voice,
            call_time_limit_s=self.call_time_limit,
            max_concurrent_calls=self.max_concurrent_calls,
            idle_reprompt_ms=self.idle_reprompt_ms,
            response_timeout_s=self.response_timeout,
            engine=self.engine,
            api_key=key or None,
            demo=self.demo,
            caps=Caps(self.bookings_per_caller_per_day, self.callbacks_per_call, self.callbacks_per_caller_per_day),
            barge_in=BargeInSettings(
                onset_ms=self.barge_in_onset_ms,
                confirm_ms=self.barge_in_confirm_ms,
                resume_ms=self.barge_in_resume_ms,
                threshold_dbfs=self.barge_in_threshold_dbfs,
            ),
            pipeline=PipelineModels(self.chat_model, self.tts_model, self.reasoning_effort),
            prices=self.price_table,
        )

    @property
    def on_space(self) -> bool:
        return bool(self.space_id)

    @property
    def trusted_proxies(self) -> str:
        """Who may say who the client is (`X-Forwarded-For`): `TRUSTED_PROXIES`, else on a Space the private ranges
        its proxies connect from, else this machine only."""
        if self.trusted_proxies_given:
            return self.trusted_proxies_given
        return ",".join([*PRIVATE_NETWORKS, *LOOPBACK]) if self.on_space else ",".join(LOOPBACK)

    @property
    def owners(self) -> frozenset[str]:
        """Who may open the console with Hugging Face: the Space's author and `OWNER_USERS`."""
        author = (self.space_author_name or "").strip().lower()
        return self.owner_users | ({author} if author else set())

    @property
    def line(self) -> LineSettings:
        token = self.secret("twilio_auth_token") if self.twilio_validate_signature else None
        public_url = (self.public_url or "").rstrip("/") or None
        unsigned = not self.twilio_validate_signature
        texts = None
        if self.twilio_sms_from and self.twilio_account_sid:
            account_token = (self.secret("twilio_auth_token") or "").strip()
            texts = TextSettings(self.twilio_account_sid, account_token, self.twilio_sms_from, self.sms_reminder_hour)
        staff = None
        if self.staff_phone and self.twilio_account_sid:
            hours = None
            if self.staff_hours:
                hours = _window(self.staff_hours)
            account_token = (self.secret("twilio_auth_token") or "").strip()
            staff = StaffSettings(self.staff_phone, hours, self.twilio_account_sid, account_token)
        signing = (token or "").strip() or None
        return LineSettings(signing, public_url, self.twilio_say_voice, self.on_space, unsigned, texts, staff)

    def secret(self, name: str) -> str | None:
        """A secret's value where it is needed (a client, a comparison), never for printing."""
        value = getattr(self, name)
        return value.get_secret_value() if isinstance(value, SecretStr) else value


_KINDS = {
    "int_parsing": "must be a whole number",
    "int_from_float": "must be a whole number",
    "float_parsing": "must be a number",
    "bool_parsing": "must be true or false (1/0, yes/no)",
    "greater_than_equal": "must be at least {ge}",
    "less_than_equal": "must be at most {le}",
    "string_pattern_mismatch": "is not in the expected form",
    "path_not_file": "must be the path of an existing file",
    "literal_error": "must be one of {choices}",
    "dict_type": "must be a JSON object of models to prices",
    "model_type": "must be a JSON object of models to prices",
}


_FORMS = {  # what a variable with a pattern must look like, in the owner's words
    "TWILIO_ACCOUNT_SID": "must be AC followed by 32 hexadecimal digits (Twilio console, Account Info)",
    "OWNER_USERS": "must be Hugging Face user names, separated by commas",
    "PUBLIC_URL": "must be an address like https://owner-space.hf.space",
    "TWILIO_SAY_VOICE": "must be a Twilio voice name like Polly.Mizuki",
    "TWILIO_SMS_FROM": "must be your Twilio number like +815012345678, or a messaging service id MG…",
    "STAFF_PHONE": "must be a number in international form like +815012345678",
    "STAFF_HOURS": "must be a window like 11:00-21:00",
}


def _on_the_twilio_account(value: str | None, info: ValidationInfo, why: str) -> str | None:
    """A Twilio feature's setting, refused unless the account it acts on is set too."""
    if value and not (info.data.get("twilio_account_sid") and info.data.get("twilio_auth_token")):
        raise ValueError(f"needs TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN as well ({why})")
    return value


def _window(text: str) -> tuple[dt.time, dt.time]:
    """`"11:00-21:00"` as two times; an end of `24:00` is the end of the day."""
    start, end = text.split("-")
    return dt.time.fromisoformat(start.zfill(5)), dt.time.max if end == "24:00" else dt.time.fromisoformat(end.zfill(5))


def _explain(error: Mapping[str, Any]) -> str:
    """One bad variable, said plainly: its name, what it must be, and what it was (secrets are not repeated)."""
    location = [str(part) for part in error.get("loc", ())]
    name = location[0] if location else "a setting"
    inner = [part for part in location[1:] if not part.isdigit()]
    where = f" ({'.'.join(inner)})" if inner else ""
    kind = _KINDS.get(error.get("type", ""))
    if error.get("type") == "string_pattern_mismatch":
        kind = _FORMS.get(name, "must be a model name like gpt-realtime" if "MODEL" in name else kind)
    context = {key: str(value).replace("'", "") for key, value in (error.get("ctx") or {}).items()}
    context["choices"] = context.get("expected", "").replace(" or ", ", ")
    said = kind.format(**context) if kind else str(error.get("msg", "is not valid")).removeprefix("Value error, ")
    secret = any(word in name for word in ("KEY", "TOKEN", "PASSWORD", "SECRET", "CODE", "DATABASE_URL"))
    given = "" if secret or isinstance(error.get("input"), dict | list) else f", got {error.get('input')!r}"
    return f"{name}{where} {said}{given}"
