"""Which TURN relay a deployment uses, and what happens when fetching credentials fails."""

from __future__ import annotations

import asyncio

import pytest

from components.settings import Settings
from components.web.turn import TurnUnavailable, missing_turn_warning, rtc_configuration, turn_provider


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("SPACE_ID", "TWILIO_ACCOUNT_SID", "TWILIO_AUTH_TOKEN", "HF_TOKEN"):
        monkeypatch.delenv(name, raising=False)


def test_locally_there_is_no_turn_and_no_warning() -> None:
    settings = Settings.load()
    assert turn_provider(settings) is None and rtc_configuration(settings) is None
    assert missing_turn_warning(settings) is None


def test_on_a_space_twilio_wins_over_hf_and_no_secret_means_a_warning(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SPACE_ID", "owner/space")
    assert turn_provider(Settings.load()) is None
    assert "TURN" in missing_turn_warning(Settings.load())
    monkeypatch.setenv("HF_TOKEN", "hf_dummy")
    assert turn_provider(Settings.load()) == "hf" and missing_turn_warning(Settings.load()) is None
    monkeypatch.setenv("TWILIO_ACCOUNT_SID", "AC" + "0123456789abcdef" * 2)
    monkeypatch.setenv("TWILIO_AUTH_TOKEN", "secret-token")
    assert turn_provider(Settings.load()) == "twilio"


def test_credentials_are_fetched_per_connection_and_a_failure_is_a_clear_message(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SPACE_ID", "owner/space")
    monkeypatch.setenv("HF_TOKEN", "hf_not_a_real_token")
    monkeypatch.setenv("HTTPS_PROXY", "http://127.0.0.1:9")  # nothing listens: the fetch fails fast, offline
    fetch = rtc_configuration(Settings.load())
    assert fetch is not None  # a function: nothing was fetched at import or build time
    with pytest.raises(TurnUnavailable) as refused:
        asyncio.run(fetch())
    assert "TURN" in str(refused.value) and "hf_not_a_real_token" not in str(refused.value)
