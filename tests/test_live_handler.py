"""The GPT-Live engine against a strict, scripted fake of the Live API, through the real SDK.

Each test is a call: the caller speaks real espeak-ng audio into the handler as fastrtc would, the fake plays the
voice model and its Responses backend (`tests.fake_live`), and the assertions read what the caller heard, the card,
the transcript, the store and every event the engine sent, which the fake checks against the SDK's own types.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
from pathlib import Path

import holidays
import pytest

from components.call.options import CallRequest
from components.engines.live import LiveHandler
from components.restaurant.config import RestaurantConfig, load_config
from components.restaurant.prompt import goodbye_instruction, greeting_instruction, wrap_up_instruction
from components.restaurant.tools import TOOL_NAMES
from components.settings import AgentSettings
from components.store.reservations import ReservationStore
from tests.call_driver import CallDriver
from tests.domain_fixtures import bookable_day, count, write_config
from tests.fake_live import (
    FakeLiveServer,
    Script,
    call_tool,
    drop,
    greet,
    on_caller_speech,
    on_instructions,
    say,
    send_error,
    stall,
    user_said,
)

KEY = "sk-test-live"
pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def config() -> RestaurantConfig:
    return load_config()


@pytest.fixture
def store(tmp_path: Path) -> ReservationStore:
    return ReservationStore(tmp_path / "reservations.db")


def run_call(
    server: FakeLiveServer,
    config: RestaurantConfig,
    store: ReservationStore,
    conversation,
    *,
    monkeypatch: pytest.MonkeyPatch,
    language: str = "en",
    key: str | None = KEY,
    settings: AgentSettings | None = None,
) -> CallDriver:
    """Start the handler as fastrtc would for a browser call with these page inputs, and run `conversation`."""
    monkeypatch.setenv("OPENAI_BASE_URL", server.base_url)
    handler = LiveHandler(config, store, settings or AgentSettings(response_timeout_s=3)).copy()
    handler.set_args(["webrtc-id", *CallRequest(language, "cedar", key).inputs()])

    async def main() -> CallDriver:
        async with CallDriver(handler) as call:
            await conversation(call)
        return call

    return asyncio.run(main())


def test_a_booking_is_read_back_and_stored_with_the_rules_in_the_backend(config, store, monkeypatch) -> None:
    day = bookable_day(config)
    script = Script(
        greet("Hello, this is AI-SHIFT. May I have your name?"),
        on_caller_speech(
            user_said("My name is Yamada."),
            call_tool("update_reservation", {"guest_name": "Yamada"}),
            say("Thank you, Yamada. Which day and time, for how many?"),
        ),
        on_caller_speech(
            user_said(f"On {day} at seven p.m., four people."),
            call_tool("update_reservation", {"date": day, "time": "19:00", "party_size": 4}),
            say(f"Yamada, four guests on {day} at seven. Shall I book it?"),
        ),
        on_caller_speech(
            user_said("Yes, please."),
            call_tool("confirm_reservation", {}),
            say(lambda out: f"Booked. Your number is {out['booking_id']}."),
        ),
    )

    async def conversation(call: CallDriver) -> None:
        assert "AI-SHIFT" in await call.greeting()
        await call.turn("My name is Yamada.")
        assert call.card["reservation"]["guest_name"] == "Yamada"
        await call.turn("Next Friday at seven, four people.")
        assert call.card["status"] == "ready"
        answer = await call.turn("Yes, please.")
        assert call.card["status"] == "confirmed" and call.card["booking_id"] in answer

    with FakeLiveServer(script, api_key=KEY, ms_per_char=15, min_audio_ms=300) as server:
        call = run_call(server, config, store, conversation, monkeypatch=monkeypatch)
        session, problems = server.session(), server.problems()
        outputs = server.tool_outputs()
        greeting = server.client_events("session.instructions.append")[0]

    assert problems == []  # every event the engine sent was valid by the SDK's own types
    # The voice gets the style and when to delegate; the backend gets the rules and the tools.
    assert session["model"] == "gpt-live-1.1"
    assert session["audio"] == {"format": {"type": "audio/pcm", "rate": 24000}, "output": {"voice": "cedar"}}
    backend = session["delegation"]["responses"]
    assert session["delegation"]["type"] == "responses" and backend["model"] == "gpt-5.4-mini"
    assert [tool["name"] for tool in backend["tools"]] == list(TOOL_NAMES)
    assert "check_availability" in backend["instructions"] and "last seating" in backend["instructions"]
    assert "Delegate" in session["instructions"] and "last seating" not in session["instructions"]
    assert greeting["content"] == greeting_instruction("en") and greeting["delegation_id"] is None
    assert [out.name for out in outputs] == ["update_reservation", "update_reservation", "confirm_reservation"]
    row = store.get(outputs[-1].output["booking_id"])
    assert (row["guest_name"], row["date"], row["time"], row["party_size"]) == ("Yamada", day, "19:00", 4)
    assert [line["text"] for line in call.lines("user")] == [
        "My name is Yamada.",
        f"On {day} at seven p.m., four people.",
        "Yes, please.",
    ]
    roles = [line["role"] for line in call.lines() if line["role"] != "system"]
    assert roles == ["assistant"] + ["user", "assistant"] * 3


@pytest.mark.parametrize(
    ("fields", "code"),
    [
        ({"time": "09:00"}, "outside_hours"),
        ({"time": "21:30"}, "outside_hours"),  # after the last seating (21:00), before closing
        ({"party_size": 6}, "party_too_large"),
        ({"date": "NEW_YEAR"}, "closed_day"),
        ({"date": "HOLIDAY", "time": "10:00"}, None),  # a public holiday keeps weekend hours: 10:00 is fine
        ({"date": "2026-02-30"}, "invalid_date"),
    ],
    ids=["hours", "last-seating", "party-size", "new-year", "holiday-hours", "impossible-date"],
)
def test_each_rule_is_decided_in_code_whatever_the_model_asks(store, monkeypatch, tmp_path, fields, code) -> None:
    config = load_config(write_config(tmp_path, {"max_days_ahead = 60": "max_days_ahead = 400"}))  # a holiday in reach
    day = _plain_weekday(config)
    dates = {"NEW_YEAR": _next_new_year(config), "HOLIDAY": _next_weekday_holiday(config)}
    asked = {"guest_name": "Sato", "date": day, "time": "19:00", "party_size": 2, **fields}
    asked["date"] = dates.get(asked["date"], asked["date"])
    script = Script(
        greet("Hello."),
        on_caller_speech(user_said("Book it anyway, please."), call_tool("update_reservation", asked), say("Hmm.")),
        on_caller_speech(user_said("Go on."), call_tool("confirm_reservation", {}), say("Let me see.")),
    )

    async def conversation(call: CallDriver) -> None:
        await call.greeting()
        await call.turn("Book it anyway, please.")
        await call.turn("Go on.")

    with FakeLiveServer(script, api_key=KEY, ms_per_char=15, min_audio_ms=300) as server:
        run_call(server, config, store, conversation, monkeypatch=monkeypatch)
        update, confirm = (out.output for out in server.tool_outputs())

    codes = [problem["code"] for problem in update["problems"]]
    if code is None:
        assert codes == [] and confirm["booking_id"] and count(store) == 1
    else:
        assert code in codes
        assert confirm["booking_id"] is None and count(store) == 0  # talking the agent round books nothing


def test_malformed_tool_arguments_become_problems_and_the_call_goes_on(config, store, monkeypatch) -> None:
    script = Script(
        greet("Hello."),
        on_caller_speech(
            user_said("Two people."),
            call_tool("update_reservation", '{"party_size": "two", "guest_name": '),  # cut-off JSON
            call_tool("update_reservation", {"party_size": "two", "colour": "blue"}),
            say("Sorry, how many people?"),
        ),
    )

    async def conversation(call: CallDriver) -> None:
        await call.greeting()
        assert await call.turn("Two people.") == "Sorry, how many people?"

    with FakeLiveServer(script, api_key=KEY, ms_per_char=15, min_audio_ms=300) as server:
        call = run_call(server, config, store, conversation, monkeypatch=monkeypatch)
        outputs = [out.output for out in server.tool_outputs()]
        problems = server.problems()

    assert problems == []
    assert "invalid_arguments" in [p["code"] for p in outputs[0]["problems"]]
    assert {"invalid_party_size", "unknown_field"} <= {p["code"] for p in outputs[1]["problems"]}
    assert call.closed is None


def test_the_model_stops_for_the_caller_and_nothing_more_plays(config, store, monkeypatch) -> None:
    long_answer = "We have many tables free on that evening, let me list every single one of them for you. " * 3
    script = Script(
        greet("Hello."),
        on_caller_speech(user_said("What is free on Friday?"), say(long_answer)),
        on_caller_speech(user_said("Stop, seven is fine."), say("Seven it is.")),
    )

    async def conversation(call: CallDriver) -> None:
        await call.greeting()
        await call.say("What is free on Friday?")
        await call.until(lambda: call.audible_ms() > 2500, what="the long answer to be playing")
        await call.say("Stop, seven is fine.")
        await call.until(lambda: "Seven it is." in call.agent_lines(final=True), what="the next answer")

    with FakeLiveServer(script, api_key=KEY, ms_per_char=60, min_audio_ms=300) as server:
        call = run_call(server, config, store, conversation, monkeypatch=monkeypatch)
        (stop,) = server.interrupted()
        problems = server.problems()

    assert problems == []
    # The track turned silent when the model stopped: the caller heard nothing more of the long answer (beyond the
    # playout's 120 ms lead), while still talking and until the next answer.
    after = [heard.at - stop["at"] for heard in call.heard if heard.rms > 100 and heard.at > stop["at"] + 0.2]
    assert not after or min(after) > 0.8, after[:5]
    assert call.cleared == 0  # we added nothing to the model's own stop: no clear, no cut of our own
    assert "Seven it is." in call.agent_lines(final=True)


def test_a_refused_key_ends_the_call_with_a_clear_message_in_either_style(config, store, monkeypatch) -> None:
    async def conversation(call: CallDriver) -> None:
        await call.until(lambda: call.closed, what="the call to end")

    for style in ("http", "event"):
        with FakeLiveServer(Script(greet("Hello.")), api_key=KEY, bad_key_mode=style) as server:
            call = run_call(server, config, store, conversation, monkeypatch=monkeypatch, key="sk-wrong")
        assert "401" in call.closed and "APIキー" in call.closed, style
        assert json.loads(call.channel.messages[-1])["type"] == "error"
        assert call.view["end_reason"] == "key_refused"
        assert "sk-wrong" not in json.dumps(call.views) + call.closed + "".join(call.channel.messages)


def test_an_exhausted_quota_ends_the_call_politely(config, store, monkeypatch) -> None:
    async def conversation(call: CallDriver) -> None:
        await call.until(lambda: call.closed, what="the call to end")

    with FakeLiveServer(Script(greet("Hello.")), api_key=KEY, quota_error=True) as server:
        call = run_call(server, config, store, conversation, monkeypatch=monkeypatch)

    assert "limit" in call.closed and "上限" in call.closed
    assert "quota" not in call.closed.lower()  # the provider's wording stays in the owner's log


def test_any_other_error_event_is_logged_and_the_call_goes_on(config, store, monkeypatch, caplog) -> None:
    script = Script(
        greet("Hello."),
        on_caller_speech(
            user_said("Tomorrow please."),
            send_error("rate_limit_exceeded", "Slow down, org-123456.", "rate_limit_error"),
            say("Tomorrow at what time?"),
        ),
    )

    async def conversation(call: CallDriver) -> None:
        await call.greeting()
        assert await call.turn("Tomorrow please.") == "Tomorrow at what time?"

    with FakeLiveServer(script, api_key=KEY, ms_per_char=15, min_audio_ms=300) as server:
        call = run_call(server, config, store, conversation, monkeypatch=monkeypatch)

    assert call.closed is None
    assert "org-123456" not in json.dumps(call.views)  # provider internals are not shown to the caller
    assert "rate_limit_exceeded" in caplog.text


def test_a_dropped_socket_is_a_new_session_reseeded_with_the_call_and_the_draft(config, store, monkeypatch) -> None:
    script = Script(
        greet("Hello."),
        on_caller_speech(
            user_said("I am Suzuki."),
            call_tool("update_reservation", {"guest_name": "Suzuki"}),
            say("Thank you Suzuki."),
            drop(),
        ),
    )
    resumed = Script(on_caller_speech(user_said("Friday, please."), say("Friday it is, Suzuki.")))

    with FakeLiveServer(script, api_key=KEY, ms_per_char=15, min_audio_ms=300) as server:

        async def conversation(call: CallDriver) -> None:
            await call.greeting()
            await call.say("I am Suzuki.")
            await call.until(server.tool_outputs, what="the name to be recorded")
            server.set_script(resumed)
            await call.until(lambda: "Reconnected" in str(call.lines("system")), timeout=20, what="a new session")
            await call.turn("Friday, please.")

        call = run_call(server, config, store, conversation, monkeypatch=monkeypatch)
        second = server.session(1)
        problems = server.problems()

    assert problems == []
    history = second["input"]
    assert [(item["role"], item["content"][0]) for item in history[:2]] == [
        ("assistant", {"type": "output_text", "text": "Hello."}),
        ("user", {"type": "input_text", "text": "I am Suzuki."}),
    ]
    assert history[-1]["role"] == "developer" and "Suzuki" in history[-1]["content"][0]["text"]  # the draft
    assert call.card["reservation"]["guest_name"] == "Suzuki"
    assert "Friday it is, Suzuki." in call.agent_lines(final=True) and call.closed is None


def test_a_session_that_goes_silent_is_replaced(config, store, monkeypatch) -> None:
    script = Script(greet("Hello."), on_caller_speech(user_said("Hello?"), stall()))

    async def conversation(call: CallDriver) -> None:
        await call.greeting()
        await call.say("Hello?")
        await call.until(lambda: "Reconnected" in str(call.lines("system")), timeout=20, what="a new session")

    with FakeLiveServer(script, api_key=KEY) as server:
        call = run_call(server, config, store, conversation, monkeypatch=monkeypatch)
        assert server.connection_count() == 2

    assert "stopped responding" in "\n".join(line["text"] for line in call.lines("system"))
    assert call.closed is None


def test_the_time_limit_appends_a_wrap_up_then_a_goodbye_and_closes_the_session(config, store, monkeypatch) -> None:
    script = Script(
        greet("Hello."),
        on_instructions("Thirty seconds are left; shall I confirm now?"),
        on_instructions("Thank you for calling, goodbye."),
    )

    async def conversation(call: CallDriver) -> None:
        await call.until(lambda: call.closed, timeout=20, what="the call to end")

    settings = AgentSettings(call_time_limit_s=4, response_timeout_s=3)
    with FakeLiveServer(script, api_key=KEY, ms_per_char=15, min_audio_ms=300) as server:
        call = run_call(server, config, store, conversation, monkeypatch=monkeypatch, settings=settings)
        appended = [event["content"] for event in server.client_events("session.instructions.append")]
        closed = server.sent_events("session.closed")

    assert appended == [greeting_instruction("en"), wrap_up_instruction("en"), goodbye_instruction("en")]
    assert "goodbye" in call.agent_lines(final=True)[-1]  # said before the session was closed
    assert len(closed) == 1 and closed[0]["reason"] == "close_requested"
    assert "time limit" in call.closed and call.view["end_reason"] == "time_up"


def test_the_card_prices_the_sessions_minutes_and_the_backends_tokens(config, store, monkeypatch) -> None:
    script = Script(
        greet("Hello."),
        on_caller_speech(
            user_said("Two people."), call_tool("update_reservation", {"party_size": 2}), say("Two, noted.")
        ),
    )

    async def conversation(call: CallDriver) -> None:
        await call.greeting()
        await call.turn("Two people.")
        await call.until(lambda: server.sent_events("session.usage.updated"), what="a usage report")
        await asyncio.sleep(0.5)

    with FakeLiveServer(script, api_key=KEY, ms_per_char=15, min_audio_ms=300, usage_every_s=2) as server:
        call = run_call(server, config, store, conversation, monkeypatch=monkeypatch)
        seconds = server.sent_events("session.usage.updated")[-1]["usage"]["seconds"]

    session = call.view["turns"][0]
    minutes = seconds / 60 * 0.05
    tokens = 2 * ((900 - 600) * 0.25 + 600 * 0.025) / 1e6  # two backend responses per tool call's delegation
    assert session["cost_usd"] >= minutes + tokens - 1e-9
    assert session["total_tokens"] > 0


def _plain_weekday(config: RestaurantConfig) -> str:
    """A bookable weekday that is no public holiday: weekday hours (11:00-22:00, last seating 21:00)."""
    day = dt.date.fromisoformat(bookable_day(config))
    while day.weekday() >= 5 or day in holidays.country_holidays("JP", years=[day.year]):
        day += dt.timedelta(days=1)
    return day.isoformat()


def _next_new_year(config: RestaurantConfig) -> str:
    today = dt.datetime.now(config.tz).date()
    return dt.date(today.year + (1 if today >= dt.date(today.year, 1, 3) else 0), 1, 2).isoformat()


def _next_weekday_holiday(config: RestaurantConfig) -> str:
    """A public holiday on a weekday, within a year (New Year's days are a closure of their own)."""
    today = dt.datetime.now(config.tz).date()
    days = holidays.country_holidays("JP", years=[today.year, today.year + 1])
    return next(
        day.isoformat()
        for day in sorted(days)
        if today < day <= today + dt.timedelta(days=config.max_days_ahead) and day.weekday() < 5 and day.month > 1
    )
