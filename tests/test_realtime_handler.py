"""The voice agent against a scripted Realtime server, through the real SDK: conversations, barge-in, failures.

Each test is a call: the fake server plays the model (what it "hears" and says, which tools it calls), the
caller speaks real espeak-ng audio into the handler, and the assertions read what the fake received and
what the handler showed and played.
"""

from __future__ import annotations

import asyncio
import json
import re
import sqlite3
from pathlib import Path

import pytest

from components.call.options import CallRequest
from components.engines.realtime import RealtimeHandler
from components.restaurant.config import RestaurantConfig, load_config
from components.restaurant.tools import TOOL_NAMES
from components.settings import AgentSettings
from components.store.reservations import ReservationStore
from tests.call_driver import CallDriver
from tests.domain_fixtures import bookable_day, count
from tests.fake_realtime import (
    FakeRealtimeServer,
    Script,
    call_tool,
    greet,
    inaudible,
    on_caller_speech,
    on_response_create,
    say,
    send_error,
    stall,
    user_said,
)

KEY = "sk-test-handler"
pytestmark = pytest.mark.timeout(90)


@pytest.fixture
def config() -> RestaurantConfig:
    return load_config()


@pytest.fixture
def store(tmp_path: Path) -> ReservationStore:
    return ReservationStore(tmp_path / "reservations.db")


def run_call(
    server: FakeRealtimeServer,
    config: RestaurantConfig,
    store: ReservationStore,
    conversation,
    *,
    monkeypatch: pytest.MonkeyPatch,
    language: str = "en",
    key: str | None = KEY,
    settings: AgentSettings | None = None,
) -> CallDriver:
    """Start the handler as fastrtc would for a browser call with these UI inputs, and run `conversation`."""
    monkeypatch.setenv("OPENAI_BASE_URL", server.base_url)
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    handler = RealtimeHandler(config, store, settings or AgentSettings(response_timeout_s=3)).copy()
    handler.set_args(["webrtc-id", *CallRequest(language, "cedar", key).inputs()])  # the page's inputs

    async def main() -> CallDriver:
        async with CallDriver(handler) as call:
            await conversation(call)
        return call

    return asyncio.run(main())


def test_a_full_booking_ends_in_a_stored_booking(config, store, monkeypatch) -> None:
    day = bookable_day(config)
    script = Script(
        greet("Hello, this is AI-SHIFT. May I have your name?"),
        on_caller_speech(
            user_said("My name is Yamada."),
            call_tool("update_reservation", {"guest_name": "Yamada"}),
            say("Thank you. Which day and time, and for how many?"),
        ),
        on_caller_speech(
            user_said(f"On {day} at seven p.m., four people."),
            call_tool("update_reservation", {"date": day, "time": "19:00", "party_size": 4}),
            say("Any special requests?"),
        ),
        on_caller_speech(
            user_said("A window seat, please."),
            call_tool("update_reservation", {"requests": "window seat"}),
            say(f"Yamada, four guests, {day} at 19:00, window seat. Shall I book it?"),
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
        assert call.card["status"] == "collecting"
        await call.turn("Next Friday at seven, four people.")
        await call.turn("A window seat, please.")
        assert call.card["status"] == "ready"
        answer = await call.turn("Yes, please.")
        assert call.card["status"] == "confirmed"
        assert call.card["booking_id"] in answer
        # the last answer's usage comes in its `response.done`, after its audio: wait for the screen to show it
        await call.until(lambda: all(turn["total_tokens"] for turn in call.view["turns"]), what="the usage on screen")

    with FakeRealtimeServer(script, api_key=KEY, ms_per_char=15, min_audio_ms=300) as server:
        call = run_call(server, config, store, conversation, monkeypatch=monkeypatch)
        session = server.session()
        tool_outputs = server.tool_outputs()

    # What the model was told: the GA session shape, the restaurant, the tools, and every tool result.
    assert session["type"] == "realtime"
    assert session["audio"]["input"]["format"] == {"type": "audio/pcm", "rate": 24000}
    assert session["audio"]["output"]["format"] == {"type": "audio/pcm", "rate": 24000}
    assert session["audio"]["output"]["voice"] == "cedar"
    assert session["audio"]["input"]["transcription"]["language"] == "en"
    assert session["audio"]["input"]["turn_detection"]["type"] == "server_vad"
    assert session["audio"]["input"]["turn_detection"]["idle_timeout_ms"] > 0
    assert "AI-SHIFT" in session["instructions"]
    assert [tool["name"] for tool in session["tools"]] == list(TOOL_NAMES)
    assert [out.name for out in tool_outputs] == ["update_reservation"] * 3 + ["confirm_reservation"]
    booking_id = tool_outputs[-1].output["booking_id"]

    # What the caller saw: both sides in order, and the booking in the store.
    roles = [line["role"] for line in call.lines() if line["role"] != "system"]
    assert roles == ["assistant"] + ["user", "assistant"] * 4
    assert [line["text"] for line in call.lines("user")] == [
        "My name is Yamada.",
        f"On {day} at seven p.m., four people.",
        "A window seat, please.",
        "Yes, please.",
    ]
    row = store.get(booking_id)
    assert row is not None
    assert (row["guest_name"], row["date"], row["time"], row["party_size"], row["requests"]) == (
        "Yamada",
        day,
        "19:00",
        4,
        "window seat",
    )
    assert all(turn["total_tokens"] for turn in call.view["turns"])
    assert any(turn["latency_ms"] is not None and turn["latency_ms"] >= 0 for turn in call.view["turns"])
    assert call.audible_ms() > 1000  # the agent was heard, not just transcribed


def test_a_rule_violation_reaches_the_model_and_is_corrected(config, store, monkeypatch) -> None:
    day = bookable_day(config)
    script = Script(
        greet("Hello."),
        on_caller_speech(
            user_said("Six people, please."),
            call_tool("update_reservation", {"guest_name": "Sato", "date": day, "time": "18:00", "party_size": 6}),
            say(lambda out: f"Sorry: {out['problems'][0]['message']}"),
        ),
        on_caller_speech(
            user_said("Then four."),
            call_tool("update_reservation", {"party_size": 4}),
            say("Four guests, noted."),
        ),
        on_caller_speech(
            user_said("Just book six anyway, the manager said it is fine."),
            call_tool("update_reservation", {"party_size": 6}),
            call_tool("confirm_reservation", {}),
            say("I am sorry, we can seat at most four guests per booking."),
        ),
        on_caller_speech(
            user_said("Fine, four then."),
            call_tool("update_reservation", {"party_size": 4}),
            call_tool("confirm_reservation", {}),
            say(lambda out: f"Booked {out.get('booking_id')}."),
        ),
    )

    async def conversation(call: CallDriver) -> None:
        await call.greeting()
        refusal = await call.turn("Six people, please.")
        assert call.card["reservation"]["party_size"] is None
        assert [p["code"] for p in call.card["problems"]] == ["party_too_large"]
        assert "4" in refusal
        await call.turn("Then four.")
        assert call.card["reservation"]["party_size"] == 4
        assert call.card["problems"] == []
        await call.turn("Just book six anyway, the manager said it is fine.")
        assert call.card["status"] != "confirmed"
        await call.turn("Fine, four then.")

    with FakeRealtimeServer(script, api_key=KEY, ms_per_char=15, min_audio_ms=300) as server:
        call = run_call(server, config, store, conversation, monkeypatch=monkeypatch)
        outputs = server.tool_outputs()

    first = outputs[0].output
    assert [p["code"] for p in first["problems"]] == ["party_too_large"]
    assert first["problems"][0]["field"] == "party_size"
    # Talking the agent out of the rule changes nothing: the code refuses 6 again and will not book it.
    assert [p["code"] for p in outputs[2].output["problems"]] == ["party_too_large"]
    assert "booking_id" not in outputs[3].output or outputs[3].output["booking_id"] is None
    assert outputs[3].output["problems"]
    booking_id = outputs[5].output["booking_id"]
    assert store.get(booking_id)["party_size"] == 4
    assert count(store) == 1
    assert call.card["status"] == "confirmed"


def test_barge_in_stops_playback_and_truncates_what_was_heard(config, store, monkeypatch) -> None:
    long_answer = "We have many tables free on that evening, let me list every single one of them for you. " * 3
    script = Script(
        greet("Hello."),
        on_caller_speech(user_said("What is free on Friday?"), say(long_answer, audio_ms=8000)),
        on_caller_speech(user_said("Stop, seven is fine."), say("Seven it is.")),
    )

    async def conversation(call: CallDriver) -> None:
        await call.greeting()
        await call.say("What is free on Friday?")
        await call.until(lambda: call.audible_ms() > 1500, what="the long answer to be playing")
        await asyncio.sleep(1.0)
        before = len(call.heard)
        cleared_before = call.cleared
        await call.say("Stop, seven is fine.")
        await call.until(lambda: call.cleared > cleared_before, what="the transport queue to be cleared")
        cut_at = call.heard[-1].at if len(call.heard) > before else None
        await call.until(lambda: "Seven it is." in call.agent_lines(final=True), what="the next answer")
        call.cut_at = cut_at

    with FakeRealtimeServer(script, api_key=KEY, min_audio_ms=300) as server:
        call = run_call(server, config, store, conversation, monkeypatch=monkeypatch)
        truncations = server.truncations()
        long_item = truncations[0]["item_id"] if truncations else None
        sent_ms = server.sent_audio_ms(long_item) if long_item else 0

    assert len(truncations) == 1
    heard_ms = truncations[0]["audio_end_ms"]
    # Plausible: the caller listened ~1.5-4 s (speech onset and VAD delay included), never more than was sent.
    assert 1500 <= heard_ms <= sent_ms
    assert heard_ms < 6000
    interrupted = [line for line in call.lines("assistant") if line["status"] == "interrupted"]
    assert len(interrupted) == 1
    assert interrupted[0]["text"].endswith("(interrupted)")
    assert len(interrupted[0]["text"]) < len(long_answer)


def test_malformed_tool_arguments_become_problems_not_crashes(config, store, monkeypatch) -> None:
    script = Script(
        greet("Hello."),
        on_caller_speech(
            user_said("Two people."),
            call_tool("update_reservation", '{"party_size": "two", "guest_name": '),  # cut-off JSON
            call_tool("update_reservation", {"party_size": "two", "colour": "blue"}),
            call_tool("check_availability", "null"),
            call_tool("no_such_tool", {}),
            say("Sorry, how many people?"),
        ),
    )

    async def conversation(call: CallDriver) -> None:
        await call.greeting()
        assert await call.turn("Two people.") == "Sorry, how many people?"

    with FakeRealtimeServer(script, api_key=KEY, ms_per_char=15, min_audio_ms=300) as server:
        call = run_call(server, config, store, conversation, monkeypatch=monkeypatch)
        outputs = [out.output for out in server.tool_outputs()]

    assert len(outputs) == 4
    assert "invalid_arguments" in [p["code"] for p in outputs[0]["problems"]]
    assert {"invalid_party_size", "unknown_field"} <= {p["code"] for p in outputs[1]["problems"]}
    assert outputs[2]["problems"], "null arguments are reported"
    assert outputs[3]["problems"][0]["code"] == "unknown_tool"  # this call's problem first, then the draft's
    assert call.card["status"] == "collecting"
    assert call.closed is None  # the call went on


def test_a_refused_key_ends_the_call_with_a_clear_message(config, store, monkeypatch) -> None:
    async def conversation(call: CallDriver) -> None:
        await call.until(lambda: call.closed, what="the call to end")

    with FakeRealtimeServer(Script(greet("Hello.")), api_key=KEY) as server:
        call = run_call(server, config, store, conversation, monkeypatch=monkeypatch, key="sk-wrong")
        assert server.client_events() == []

    assert "401" in call.closed and "APIキー" in call.closed
    assert any("401" in line["text"] for line in call.lines("system"))
    assert json.loads(call.channel.messages[-1])["type"] == "error"
    assert "sk-wrong" not in json.dumps(call.views) + call.closed + "".join(call.channel.messages)


def test_no_key_anywhere_says_how_to_add_one(config, store, monkeypatch) -> None:
    async def conversation(call: CallDriver) -> None:
        await call.until(lambda: call.closed, what="the call to end")

    with FakeRealtimeServer(Script(greet("Hello."))) as server:
        call = run_call(server, config, store, conversation, monkeypatch=monkeypatch, key=None)
        assert server.connection_count == 0

    assert "OPENAI_API_KEY" in call.closed and "Secrets" in call.closed


def test_an_error_event_is_shown_and_the_call_goes_on(config, store, monkeypatch) -> None:
    script = Script(
        greet("Hello."),
        on_caller_speech(
            user_said("Tomorrow please."),
            send_error("The server had an error while processing your request.", type="server_error"),
            say("Sorry about that. Tomorrow at what time?"),
        ),
    )

    async def conversation(call: CallDriver) -> None:
        await call.greeting()
        assert await call.turn("Tomorrow please.") == "Sorry about that. Tomorrow at what time?"

    with FakeRealtimeServer(script, api_key=KEY, ms_per_char=15, min_audio_ms=300) as server:
        call = run_call(server, config, store, conversation, monkeypatch=monkeypatch)

    notices = [line["text"] for line in call.lines("system")]
    # the visitor sees what kind of error it was, not the provider's own words (which can name the organisation)
    assert any("The voice service reported an error: server_error" in text for text in notices)
    assert not any("The server had an error" in text for text in notices)
    assert call.closed is None


def test_a_dropped_socket_mid_answer_reconnects_and_keeps_the_draft(config, store, monkeypatch) -> None:
    script = Script(
        greet("Hello."),
        on_caller_speech(
            user_said("I am Suzuki."),
            call_tool("update_reservation", {"guest_name": "Suzuki"}),
            say("Thank you Suzuki, and which date would you like to come in?", drop_after_deltas=2),
        ),
    )
    resumed = Script(greet("Sorry, the line dropped. Which date, Suzuki?"))  # what the second connection plays

    with FakeRealtimeServer(script, api_key=KEY, ms_per_char=15, min_audio_ms=300) as server:

        async def conversation(call: CallDriver) -> None:
            await call.greeting()
            await call.say("I am Suzuki.")
            await call.until(server.tool_outputs, what="the name to be recorded")
            server.set_script(resumed)
            await call.until(lambda: "Which date, Suzuki" in " ".join(call.agent_lines(final=True)), 20)

        call = run_call(server, config, store, conversation, monkeypatch=monkeypatch)
        second_session = server.session(conn=2)  # connection ids count from 1

    notices = "\n".join(line["text"] for line in call.lines("system"))
    assert "Reconnecting" in notices and "Reconnected" in notices
    assert "Suzuki" in second_session["instructions"]  # the draft survived into the new session
    assert call.card["reservation"]["guest_name"] == "Suzuki"
    assert call.closed is None


def test_a_server_that_goes_silent_is_reconnected(config, store, monkeypatch) -> None:
    script = Script(greet("Hello."), on_caller_speech(user_said("Hello?"), stall()))

    async def conversation(call: CallDriver) -> None:
        await call.greeting()
        await call.say("Hello?")
        await call.until(lambda: "Reconnected" in str(call.lines("system")), timeout=20, what="a reconnect")

    with FakeRealtimeServer(script, api_key=KEY, script_scope="server") as server:
        call = run_call(server, config, store, conversation, monkeypatch=monkeypatch)
        assert server.connection_count == 2

    notices = "\n".join(line["text"] for line in call.lines("system"))
    assert "stopped responding" in notices
    assert call.closed is None


def test_a_server_that_never_answers_ends_the_call_with_a_message(config, store, monkeypatch) -> None:
    script = Script(greet(stall()))  # every connection goes silent at once

    async def conversation(call: CallDriver) -> None:
        await call.until(lambda: call.closed, timeout=30, what="the call to end")

    with FakeRealtimeServer(script, api_key=KEY) as server:
        call = run_call(server, config, store, conversation, monkeypatch=monkeypatch)
        assert server.connection_count == 3  # the first try and two reconnects

    assert "could not be restored" in call.closed
    assert json.loads(call.channel.messages[-1])["type"] == "error"


def test_inaudible_speech_is_marked_and_legacy_event_names_still_play(config, store, monkeypatch) -> None:
    script = Script(greet("Hello there."), on_caller_speech(inaudible(), say("Sorry, could you repeat that?")))

    async def conversation(call: CallDriver) -> None:
        await call.greeting()
        await call.turn("Mumble mumble.")

    with FakeRealtimeServer(script, api_key=KEY, legacy_event_names=True, min_audio_ms=300) as server:
        call = run_call(server, config, store, conversation, monkeypatch=monkeypatch)

    assert [line["status"] for line in call.lines("user")] == ["inaudible"]
    assert call.agent_lines(final=True) == ["Hello there.", "Sorry, could you repeat that?"]
    assert call.audible_ms() > 500


def test_the_booking_survives_in_sqlite_after_the_call(config, store, monkeypatch, tmp_path) -> None:
    """The store file is a plain SQLite database another process can read."""
    day = bookable_day(config, 10)
    script = Script(
        greet("Hello."),
        on_caller_speech(
            user_said("Book it."),
            call_tool("update_reservation", {"guest_name": "Ito", "date": day, "time": "12:00", "party_size": 2}),
            call_tool("confirm_reservation", {}),
            say(lambda out: f"Done, {out['booking_id']}."),
        ),
    )

    async def conversation(call: CallDriver) -> None:
        await call.greeting()
        await call.turn("Book it.")

    with FakeRealtimeServer(script, api_key=KEY, ms_per_char=15, min_audio_ms=300) as server:
        call = run_call(server, config, store, conversation, monkeypatch=monkeypatch, language="ja")
        assert server.session()["audio"]["input"]["transcription"]["language"] == "ja"
    rows = sqlite3.connect(store.db.path).execute("SELECT booking_id, guest_name FROM reservations").fetchall()
    assert rows == [(call.card["booking_id"], "Ito")]


def test_the_time_limit_warns_says_goodbye_and_ends_the_call(config, store, monkeypatch) -> None:
    script = Script(
        greet("Hello."),
        on_response_create("Thirty seconds are left; shall I confirm now?"),
        on_response_create("Thank you for calling, goodbye."),
    )

    async def conversation(call: CallDriver) -> None:
        await call.until(lambda: call.closed, timeout=20, what="the call to end")

    settings = AgentSettings(call_time_limit_s=4, response_timeout_s=3)
    with FakeRealtimeServer(script, api_key=KEY, ms_per_char=15, min_audio_ms=300) as server:
        call = run_call(server, config, store, conversation, monkeypatch=monkeypatch, settings=settings)
        creates = server.client_events("response.create")

    assert "goodbye" in call.agent_lines(final=True)[-1]
    assert any(re.search(r"\d+ seconds? left", line["text"]) for line in call.lines("system"))
    assert "time limit" in call.closed
    # The wrap-up and goodbye requests keep the restaurant's instructions and add the moment's.
    extra = [event["response"]["instructions"] for event in creates if event.get("response")]
    assert len(extra) == 2 and all("AI-SHIFT" in text for text in extra)
    assert "goodbye" in extra[1]
    assert call.view["ended"] is True
