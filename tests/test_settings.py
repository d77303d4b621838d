"""An owner tunes a Space with variables; a mistyped one stops the app with its name, not a silent default."""

from __future__ import annotations

import pytest

from components.settings import AgentSettings, CallOptions


def test_defaults_and_overrides(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("CALL_TIME_LIMIT", "MAX_CONCURRENT_CALLS", "OPENAI_REALTIME_MODEL", "OPENAI_VOICE"):
        monkeypatch.delenv(name, raising=False)
    assert AgentSettings.from_env() == AgentSettings()
    monkeypatch.setenv("CALL_TIME_LIMIT", "120")
    monkeypatch.setenv("MAX_CONCURRENT_CALLS", "3")
    monkeypatch.setenv("OPENAI_REALTIME_MODEL", "gpt-realtime-mini")
    settings = AgentSettings.from_env()
    assert (settings.call_time_limit_s, settings.max_concurrent_calls, settings.model) == (120, 3, "gpt-realtime-mini")
    assert settings.hard_time_limit_s > settings.call_time_limit_s  # the polite ending comes before the cut-off


@pytest.mark.parametrize(
    ("name", "value", "says"),
    [("MAX_CONCURRENT_CALLS", "ten", "whole number"), ("CALL_TIME_LIMIT", "10", "at least 30")],
)
def test_bad_values_name_the_variable(monkeypatch: pytest.MonkeyPatch, name: str, value: str, says: str) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ValueError, match=f"{name}.*{says}"):
        AgentSettings.from_env()


def test_the_voice_engine_is_chosen_by_name(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("VOICE_ENGINE", raising=False)
    assert AgentSettings.from_env().engine == "realtime"
    monkeypatch.setenv("VOICE_ENGINE", "Pipeline")
    assert AgentSettings.from_env().engine == "pipeline"
    monkeypatch.setenv("VOICE_ENGINE", "cascade")
    with pytest.raises(ValueError, match="VOICE_ENGINE must be one of realtime, pipeline"):
        AgentSettings.from_env()


def test_a_calls_options_come_from_the_page_or_fall_back(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-from-the-space")
    settings = AgentSettings(voice="cedar")
    page = CallOptions.from_inputs(["__webrtc_value__", "call-id", "en", "sage", " sk-pasted "], "ja", settings)
    assert (page.language, page.voice, page.api_key) == ("en", "sage", "sk-pasted")
    assert "sk-pasted" not in repr(page)
    odd = CallOptions.from_inputs(["call-id", "fr", "no-such-voice", ""], "ja", settings)
    assert (odd.language, odd.voice, odd.api_key) == ("ja", "cedar", "sk-from-the-space")
    phone = CallOptions.from_inputs(None, "ja", settings)
    assert (phone.language, phone.voice, phone.api_key) == ("ja", "cedar", "sk-from-the-space")
    monkeypatch.delenv("OPENAI_API_KEY")
    assert CallOptions.from_inputs(None, "ja", settings).api_key is None
