"""Which TURN relay a deployment uses, what happens when fetching credentials fails, and who may make us fetch."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from components.settings import Settings
from components.web.guard import Guard
from components.web.turn import TurnUnavailable, missing_turn_warning, rtc_configuration, turn_provider
from tests.fake_turn import FakeTurnService


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


def test_credentials_go_to_a_visitor_once_and_no_flood_of_addresses_spends_the_quota(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Through the app's own guard (which tells visitors apart by the proxy's hop) to a local stand-in for Hugging
    Face's TURN service over real HTTPS: one visitor asking again gets the credentials it was given, and 100
    addresses asking at once cause at most 30 requests to the provider, though every one of them is answered."""
    with FakeTurnService(tmp_path, token="hf_visitor_test_token") as turn:
        monkeypatch.setenv("SPACE_ID", "owner/space")
        monkeypatch.setenv("HF_TOKEN", "hf_visitor_test_token")
        monkeypatch.setenv("HTTPS_PROXY", turn.proxy_url)
        monkeypatch.setenv("SSL_CERT_FILE", str(turn.ca_file))
        monkeypatch.delenv("TWILIO_ACCOUNT_SID", raising=False)
        fetch = rtc_configuration(Settings.load())
        assert fetch is not None

        async def credentials(request: Request) -> JSONResponse:
            return JSONResponse(await fetch())

        app = Guard(Starlette(routes=[Route("/turn", credentials)]), trusted_proxies="127.0.0.1")

        async def visitors() -> tuple[list[dict], list[dict]]:
            transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 50000))
            async with httpx.AsyncClient(transport=transport, base_url="http://space") as http:

                async def ask(address: str) -> dict:
                    answer = await http.get("/turn", headers={"x-forwarded-for": address})
                    return answer.json()

                same = [await ask("198.51.100.7") for _ in range(5)]
                flood = await asyncio.gather(*(ask(f"203.0.113.{n}") for n in range(100)))
                return same, list(flood)

        same, flood = asyncio.run(visitors())

    assert all(answer == same[0] for answer in same) and same[0]["iceServers"][0]["username"] == "user1"
    assert all(answer["iceServers"][0]["urls"] == "turn:turn.example:3478" for answer in flood)
    assert 2 <= len(turn.requests) <= 1 + 30  # the visitor's one, then at most 30 a minute for everyone else
    assert all(request["authorization"] == "Bearer hf_visitor_test_token" for request in turn.requests)
