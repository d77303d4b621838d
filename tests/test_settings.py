"""An owner tunes a Space with variables; a mistyped one stops the app at start with its name, not a silent default
or a failure mid-call. Everything is read once (`Settings.load`), and a call's options come from the page or fall
back to the settings."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
from pathlib import Path

import pytest

from components.call.options import CallOptions, CallRequest
from components.settings import AgentSettings, Settings, SettingsError

ROOT = Path(__file__).resolve().parents[1]

# A bad value for every variable README lists, and what the message must say about it.
BAD_VALUES = [
    ("OPENAI_API_KEY", "sk-abc def", "one word"),
    ("TWILIO_ACCOUNT_SID", "AC123", "32 hexadecimal digits"),
    ("TWILIO_AUTH_TOKEN", "token with spaces", "one word"),
    ("HF_TOKEN", "hf_abc\ndef", "one word"),
    ("CALL_TIME_LIMIT", "10", "at least 30"),
    ("MAX_CONCURRENT_CALLS", "ten", "whole number"),
    ("VOICE_ENGINE", "cascade", "one of live, realtime, pipeline"),
    ("OPENAI_REALTIME_MODEL", "gpt realtime", "model name"),
    ("OPENAI_VOICE", "robot", "one of marin"),
    ("OPENAI_TRANSCRIBE_MODEL", "whisper 1", "model name"),
    ("OPENAI_CHAT_MODEL", "gpt-5.4-mini?", "model name"),
    ("OPENAI_TTS_MODEL", "", None),  # empty is unset, so the default: not an error
    ("OPENAI_CHAT_REASONING_EFFORT", "extreme", "one of none"),
    ("DATABASE_URL", "mysql://owner:pw@db/bookings", "postgresql://"),
    ("RESERVATIONS_DB", "/tmp", "not the folder"),
    ("RESTAURANT_CONFIG", "/no/such/restaurant.toml", "existing file"),
    ("CALLS_PER_VISITOR_PER_DAY", "-1", "at least 0"),
    ("DAILY_CALL_MINUTES", "1.5", "whole number"),
    ("DAILY_BUDGET_USD", "five", "number"),
    ("DEMO_ACCESS_CODE", "   ", "blank"),
    ("OPENAI_PRICES", '{"gpt-realtime": {"audio_out": "cheap"}}', "number"),
    ("OWNER_PASSWORD", "line\nbreak", "several lines"),
    ("OWNER_USERS", "alice, bob smith", "user names"),
    ("BARGE_IN_ONSET_MS", "soon", "whole number"),
    ("BARGE_IN_CONFIRM_MS", "0", "at least"),
    ("BARGE_IN_RESUME_MS", "99999", "at most"),
    ("BARGE_IN_THRESHOLD_DBFS", "loud", "number"),
    ("PUBLIC_URL", "voicebot.example.com", "https://"),
    ("VOICEBOT_SERVER", "maybe", "true or false"),
    ("TWILIO_VALIDATE_SIGNATURE", "sometimes", "true or false"),
    ("TWILIO_SAY_VOICE", "Polly Mizuki", "voice name"),
    ("GRADIO_SERVER_PORT", "70000", "at most"),
    ("IDLE_REPROMPT_MS", "100", "at least"),
    ("RESPONSE_TIMEOUT", "1", "at least"),
    ("TRUSTED_PROXIES", "10.0.0.0/8, proxy.example", "addresses or networks"),
    ("BOOKINGS_PER_CALLER_PER_DAY", "-1", "at least 0"),
    ("CALLBACKS_PER_CALL", "two", "whole number"),
    ("CALLBACKS_PER_CALLER_PER_DAY", "1.5", "whole number"),
    ("TWILIO_SMS_FROM", "050-1234-5678", "your Twilio number like +815012345678"),
    ("SMS_REMINDER_HOUR", "25", "at most 23"),
    ("STAFF_PHONE", "03-1234-5678", "international form like +815012345678"),
    ("STAFF_HOURS", "evenings", "a window like 11:00-21:00"),
]
SECRETS = ("OPENAI_API_KEY", "TWILIO_AUTH_TOKEN", "HF_TOKEN", "DATABASE_URL", "DEMO_ACCESS_CODE", "OWNER_PASSWORD")


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, _, _ in BAD_VALUES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.delenv("PORT", raising=False)


def test_defaults_and_overrides(monkeypatch: pytest.MonkeyPatch) -> None:
    assert Settings.load().agent == AgentSettings()
    monkeypatch.setenv("CALL_TIME_LIMIT", "120")
    monkeypatch.setenv("MAX_CONCURRENT_CALLS", "3")
    monkeypatch.setenv("OPENAI_REALTIME_MODEL", "gpt-realtime-mini")
    settings = Settings.load().agent
    assert (settings.call_time_limit_s, settings.max_concurrent_calls, settings.model) == (120, 3, "gpt-realtime-mini")
    assert settings.hard_time_limit_s > settings.call_time_limit_s  # the polite ending comes before the cut-off


@pytest.mark.parametrize(("name", "value", "says"), BAD_VALUES, ids=[name for name, _, _ in BAD_VALUES])
def test_a_bad_value_names_the_variable(monkeypatch: pytest.MonkeyPatch, name: str, value: str, says: str) -> None:
    monkeypatch.setenv(name, value)
    if says is None:
        Settings.load()
        return
    with pytest.raises(SettingsError, match=name) as refused:
        Settings.load()
    assert says in str(refused.value)
    if name in SECRETS and value.strip():
        assert value not in str(refused.value)  # a secret is never repeated


def test_texts_need_the_twilio_account_they_are_sent_on(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TWILIO_SMS_FROM", "+815012345678")
    with pytest.raises(SettingsError, match="TWILIO_SMS_FROM needs TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN"):
        Settings.load()
    monkeypatch.setenv("TWILIO_ACCOUNT_SID", "AC" + "0" * 32)
    monkeypatch.setenv("TWILIO_AUTH_TOKEN", "auth-token")
    monkeypatch.setenv("SMS_REMINDER_HOUR", "18")
    texts = Settings.load().line.texts
    assert texts is not None and (texts.sender, texts.reminder_hour) == ("+815012345678", 18)
    assert "auth-token" not in repr(texts)


def test_the_hand_over_to_staff_needs_the_account_and_a_window_that_ends_after_it_starts(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("STAFF_PHONE", "+81312345678")
    with pytest.raises(SettingsError, match="STAFF_PHONE needs TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN"):
        Settings.load()
    monkeypatch.setenv("TWILIO_ACCOUNT_SID", "AC" + "0" * 32)
    monkeypatch.setenv("TWILIO_AUTH_TOKEN", "auth-token")
    monkeypatch.setenv("STAFF_HOURS", "21:00-11:00")
    with pytest.raises(SettingsError, match="STAFF_HOURS must end after it starts"):
        Settings.load()
    monkeypatch.setenv("STAFF_HOURS", "11:30-24:00")
    staff = Settings.load().line.staff
    assert staff is not None and staff.hours == (dt.time(11, 30), dt.time.max) and staff.phone == "+81312345678"


def test_a_bad_value_stops_the_app_at_start_with_its_name() -> None:
    env = {**os.environ, "MAX_CONCURRENT_CALLS": "ten", "OPENAI_API_KEY": "sk-not-used"}
    done = subprocess.run([sys.executable, "app.py"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode != 0
    assert "MAX_CONCURRENT_CALLS must be a whole number, got 'ten'" in done.stderr
    assert "Traceback" not in done.stderr and "sk-not-used" not in done.stdout + done.stderr


def test_the_voice_engine_is_chosen_by_name(monkeypatch: pytest.MonkeyPatch) -> None:
    assert Settings.load().agent.engine == "live"  # GPT-Live, the Space's default
    monkeypatch.setenv("VOICE_ENGINE", "Pipeline")
    assert Settings.load().agent.engine == "pipeline"
    monkeypatch.setenv("VOICE_ENGINE", "cascade")
    with pytest.raises(ValueError, match="VOICE_ENGINE must be one of live, realtime, pipeline"):
        Settings.load()


def test_secrets_never_show_in_the_settings_printed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-very-secret")
    monkeypatch.setenv("OWNER_PASSWORD", "hunter2-owner")
    settings = Settings.load()
    assert "sk-very-secret" not in repr(settings) + str(settings) + repr(settings.agent)
    assert "hunter2-owner" not in repr(settings)
    assert settings.agent.api_key == "sk-very-secret" and settings.secret("owner_password") == "hunter2-owner"


def test_a_calls_options_come_from_the_page_or_fall_back(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-from-the-space")
    monkeypatch.setenv("OPENAI_VOICE", "cedar")
    settings = Settings.load().agent
    inputs = ["__webrtc_value__", "call-id", "en", "sage", " sk-pasted ", None]  # as fastrtc hands them over
    page = CallOptions.resolve(CallRequest.from_inputs(inputs), "ja", settings)
    assert (page.language, page.voice, page.api_key) == ("en", "sage", "sk-pasted")
    assert "sk-pasted" not in repr(page)
    odd = CallOptions.resolve(CallRequest("fr", "no-such-voice", ""), "ja", settings)
    assert (odd.language, odd.voice, odd.api_key) == ("ja", "cedar", "sk-from-the-space")
    phone = CallOptions.resolve(None, "ja", settings)
    assert (phone.language, phone.voice, phone.api_key) == ("ja", "cedar", "sk-from-the-space")
    monkeypatch.delenv("OPENAI_API_KEY")
    assert CallOptions.resolve(None, "ja", Settings.load().agent).api_key is None
