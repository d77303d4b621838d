"""Who spends the owner's key: the demo's allowances counted in the store, and what a call costs."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
from pathlib import Path

import pytest

from components.call.allowance import Allowance
from components.call.call import Call
from components.call.costs import chat_cost, realtime_cost, speech_cost, transcription_cost
from components.call.options import CallRequest, Visitor
from components.call.state import CloseReason, Turn
from components.restaurant.config import load_config
from components.settings import AgentSettings, DemoLimits, Settings
from components.store.reservations import ReservationStore
from tests.call_driver import FakeVoice, Page

CONFIG = load_config()
NOON = dt.datetime(2026, 12, 1, 3, 0, tzinfo=dt.UTC)  # 12:00 in Tokyo
ALICE = Visitor(id="ip:203.0.113.9", code_ok=True)
KEY = "sk-owner-key"

REALTIME_USAGE = {
    "total_tokens": 3400,
    "input_tokens": 2400,
    "output_tokens": 1000,
    "input_token_details": {
        "text_tokens": 1400,
        "audio_tokens": 1000,
        "cached_tokens": 1200,
        "cached_tokens_details": {"text_tokens": 1000, "audio_tokens": 200},
    },
    "output_token_details": {"text_tokens": 200, "audio_tokens": 800},
}


def allowance(store: ReservationStore, **limits) -> Allowance:
    return Allowance(DemoLimits(**limits), store.usage, CONFIG)


def test_realtime_audio_text_and_cached_tokens_are_priced_apart() -> None:
    # fresh audio in 800 × $32, cached audio 200 × $0.40, fresh text 400 × $4, cached text 1000 × $0.40,
    # audio out 800 × $64, text out 200 × $16, per million tokens
    expected = (800 * 32 + 200 * 0.4 + 400 * 4 + 1000 * 0.4 + 800 * 64 + 200 * 16) / 1e6
    assert realtime_cost(REALTIME_USAGE, "gpt-realtime") == pytest.approx(expected)
    assert realtime_cost(REALTIME_USAGE, "gpt-realtime-2025-08-28") == pytest.approx(expected)  # a dated snapshot
    assert realtime_cost(REALTIME_USAGE, "some-local-model") == 0.0


def test_the_pipelines_three_services_are_priced_from_what_each_reports() -> None:
    chat = {"prompt_tokens": 2000, "completion_tokens": 100, "prompt_tokens_details": {"cached_tokens": 1500}}
    assert chat_cost(chat, "gpt-5.4-mini") == pytest.approx((500 * 0.25 + 1500 * 0.025 + 100 * 2.0) / 1e6)
    by_tokens = {
        "type": "tokens",
        "input_tokens": 120,
        "output_tokens": 20,
        "input_token_details": {"audio_tokens": 100, "text_tokens": 20},
    }
    assert transcription_cost(by_tokens, "gpt-4o-mini-transcribe", 3.0) == pytest.approx(
        (100 * 3 + 20 * 1.25 + 20 * 5) / 1e6
    )
    by_duration = {"type": "duration", "seconds": 30}
    assert transcription_cost(by_duration, "whisper-1", 99.0) == pytest.approx(0.5 * 0.006)
    assert transcription_cost(None, "gpt-4o-mini-transcribe", 60.0) == pytest.approx(0.003)
    assert speech_cost(400, 30.0, "gpt-4o-mini-tts") == pytest.approx(100 * 0.6 / 1e6 + 0.5 * 0.015)


def test_prices_can_be_overridden_and_added(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_PRICES", json.dumps({"gpt-realtime": {"audio_out": 0}, "my-model": {"text_out": 1e6}}))
    prices = Settings.load().price_table  # parsed once, at start
    assert realtime_cost({"output_token_details": {"audio_tokens": 1000}}, "gpt-realtime", prices) == 0.0
    assert chat_cost({"completion_tokens": 3}, "my-model", prices) == pytest.approx(3.0)
    monkeypatch.setenv("OPENAI_PRICES", "[1, 2]")
    with pytest.raises(ValueError, match="OPENAI_PRICES"):
        Settings.load()


def test_one_call_per_visitor_a_day_survives_a_restart_and_comes_back_tomorrow(tmp_path: Path) -> None:
    store = ReservationStore(tmp_path / "reservations.db")
    first = allowance(store, calls_per_visitor=1).admit(ALICE, "realtime", NOON)
    assert first.refusal is None

    restarted = allowance(ReservationStore(tmp_path / "reservations.db"), calls_per_visitor=1)
    second = restarted.admit(ALICE, "realtime", NOON + dt.timedelta(hours=2))
    assert second.refusal is not None
    assert "本日のデモ通話（1回）はご利用済み" in second.refusal and "2026-12-02 0:00 JST" in second.refusal
    assert "own OpenAI API key" in second.refusal
    someone_else = Visitor(id="ip:198.51.100.7", code_ok=True)
    assert restarted.admit(someone_else, "realtime", NOON).refusal is None
    assert restarted.admit(None, "realtime", NOON).refusal is None  # the phone line has no visitor allowance
    tomorrow = NOON + dt.timedelta(hours=13)  # 01:00 the next day in Tokyo
    assert restarted.admit(ALICE, "realtime", tomorrow).refusal is None


def test_the_days_minutes_and_budget_refuse_new_calls_and_say_when_they_come_back(tmp_path: Path) -> None:
    store = ReservationStore(tmp_path / "reservations.db")
    limits = allowance(store, daily_minutes=5, daily_budget_usd=1.0)
    admitted = limits.admit(ALICE, "realtime", NOON)
    assert admitted.seconds == pytest.approx(300)
    store.usage.record(admitted.call_id, seconds=200, cost_usd=0.4)
    assert limits.admit(ALICE, "pipeline", NOON).seconds == pytest.approx(100)  # what is left of the 5 minutes
    store.usage.record(admitted.call_id, seconds=300, cost_usd=0.4)
    refused = limits.refusal(ALICE, NOON)
    assert "5 minutes of demo calls are used up" in refused and "2026-12-02 0:00 JST" in refused
    budget = allowance(store, daily_budget_usd=0.3)
    assert budget.over_budget(NOON) and "demo budget ($0.30) is used up" in budget.refusal(None, NOON)
    assert store.usage.day(limits.day(NOON)).calls == 2


def test_without_the_access_code_the_owners_key_is_not_used(tmp_path: Path) -> None:
    limits = allowance(ReservationStore(tmp_path / "reservations.db"), access_code="let-me-in")
    refused = limits.admit(Visitor(id="ip:203.0.113.9", code_ok=False), "realtime", NOON).refusal
    assert "?code=" in refused and "own OpenAI API key" in refused
    assert limits.admit(ALICE, "realtime", NOON).refusal is None


def run(call: Call, request: CallRequest | None, seconds: float) -> None:
    async def main() -> None:
        if await call.begin(request):
            await asyncio.sleep(seconds)
            await call.end(CloseReason.HUNG_UP)

    asyncio.run(main())


def new_call(store: ReservationStore, **limits) -> tuple[Call, FakeVoice, Page]:
    """A call on the owner's key (`OPENAI_API_KEY`), held to the demo's `limits`."""
    voice, page = FakeVoice(), Page()
    settings = AgentSettings(call_time_limit_s=300, demo=DemoLimits(**limits), api_key=KEY)
    return Call(CONFIG, store, settings, voice, page.send), voice, page


def test_a_call_on_the_visitors_own_key_counts_against_nothing(tmp_path: Path, monkeypatch) -> None:
    store = ReservationStore(tmp_path / "reservations.db")
    for _ in range(2):
        call, _, page = new_call(store, calls_per_visitor=1)
        run(call, CallRequest("en", "marin", "sk-visitors-own", ALICE), 0.1)
        assert page.messages == []
    assert store.usage.day(dt.datetime.now(CONFIG.tz).date()).calls == 0

    owner, _, _ = new_call(store, calls_per_visitor=1)
    run(owner, CallRequest("en", "marin", "", ALICE), 0.1)
    refused, _, page = new_call(store, calls_per_visitor=1)
    run(refused, CallRequest("en", "marin", "", ALICE), 0.1)
    assert page.messages[0]["type"] == "error" and "demo call" in page.messages[0]["message"]
    assert refused.session is None  # nothing of the call started


def test_a_page_that_sent_no_visitor_is_held_to_the_access_code(tmp_path: Path, monkeypatch) -> None:
    call, _, page = new_call(ReservationStore(tmp_path / "reservations.db"), access_code="let-me-in")
    run(call, CallRequest("en", "marin", ""), 0.1)  # an API client skipping the page's load
    assert "?code=" in page.messages[0]["message"]


@pytest.mark.timeout(60)
def test_a_call_that_runs_the_budget_out_says_goodbye_after_what_it_is_saying(tmp_path: Path, monkeypatch) -> None:
    store = ReservationStore(tmp_path / "reservations.db")
    call, voice, page = new_call(store, daily_budget_usd=0.05)

    async def conversation() -> None:
        assert await call.begin(CallRequest("en", "marin", "", ALICE))
        voice.speaking = True  # the agent is in the middle of a sentence
        call.state.turns.append(Turn(cost_usd=0.06))  # this call has now spent $0.06; the next check sees it
        while not voice.said:
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.5)
        assert call.close_message is None  # the goodbye waits for the sentence to finish
        voice.speaking = False
        while call.close_message is None:
            await asyncio.sleep(0.05)
        await call.end(CloseReason.HUNG_UP)

    asyncio.run(conversation())
    assert "goodbye" in voice.said[-1].lower() or "お別れ" in voice.said[-1]
    assert "budget ran out" in call.close_message
    assert store.usage.day(dt.datetime.now(CONFIG.tz).date()).cost_usd == pytest.approx(0.06)
