"""The real app in a real browser: headless Chromium calls the voicebot, a scripted fake plays OpenAI.

Each test starts `app.py` as a subprocess on a free localhost port with `OPENAI_BASE_URL` pointing at a
`FakeRealtimeServer` (running in this process), opens the page in Debian's headless Chromium through
Playwright with an espeak-ng WAV as the microphone, presses record, and asserts what a person would see
(and hear): the transcript, the reservation card as it fills, the messages when something is wrong, and the
booking in the SQLite file.

How a conversation is timed: Chromium plays the WAV from its start when the microphone opens and loops it,
so each file is "lead silence, then (utterance, pause) cycles" with a long silent tail (the script is spoken
once). The fake's VAD ends a caller turn after 500 ms of silence; each `on_caller_speech` turn of the script is
one utterance. The agent's replies are short (15 ms of audio per character) and play in real time, and each
pause is long enough for the reply to finish before the next utterance: any speech over the agent's audio
would be a barge-in, which only the barge-in test wants.

These tests never skip: a machine without Chromium, espeak-ng or sox is a broken CI, so they fail instead.
"""

from __future__ import annotations

import json
import re
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Page, sync_playwright

from components.restaurant.config import load_config
from tests import fake_live as live
from tests import fake_openai_http as http
from tests.browser import (
    MIC_ACCESS_BUTTON,
    PHONE,
    START_BUTTON,
    AppProcess,
    call_state,
    chromium_session,
    end_call,
    have_browser_tools,
    open_app,
    output_levels,
    page_time_ms,
    silence_wav,
    snap,
    speech_wav,
    start_call,
    start_output_meter,
    visible_messages,
    wait_for_output,
)
from tests.domain_fixtures import bookable_day
from tests.fake_realtime import FakeRealtimeServer, Script, call_tool, greet, on_caller_speech, say, user_said
from tests.page import (
    APP,
    BOOKING_ID,
    CALL,
    LIVE_CALL,
    LOUD,
    PIPELINE_CALL,
    QUIET,
    app_env,
    card_now,
    clock_offset_ms,
    countdown_s,
    describe,
    fields_of,
    no_traceback,
    press_record,
    record_card,
    settle_and_snap,
    wait_for_card,
    wait_for_idle,
    wait_for_line,
    wait_for_toast,
)

pytestmark = pytest.mark.timeout(180)

KEY = "sk-test-browser-e2e"


@pytest.fixture(autouse=True)
def _browser_tools() -> None:
    if not have_browser_tools():
        pytest.fail("browser tests need /usr/bin/chromium, espeak-ng and sox (apt-get install chromium espeak-ng sox)")


@pytest.fixture
def playwright() -> Iterator[Any]:
    with sync_playwright() as pw:
        yield pw


# --------------------------------------------------------------------------------------------------------------
# 1. A whole booking
# --------------------------------------------------------------------------------------------------------------


def test_a_whole_booking_by_voice(tmp_path: Path, playwright: Any) -> None:
    day = bookable_day(load_config())
    caller = [
        "My name is Yamada.",
        "Next Friday at seven, six people.",
        "Then four people, please.",
        "A window seat, please.",
        "Yes, please book it.",
    ]
    agent = [
        "Hello, this is AI-SHIFT. May I have your name?",
        "Thank you, Yamada. Which day, what time, and how many?",
        "Sorry, we seat at most four per booking.",
        "Four guests. Any requests?",
        f"Yamada, four, {day} at 19:00, window seat. Book it?",
    ]
    script = Script(
        greet(agent[0]),
        on_caller_speech(
            user_said(caller[0]), call_tool("update_reservation", {"guest_name": "Yamada"}), say(agent[1])
        ),
        on_caller_speech(
            user_said(caller[1]),
            call_tool("update_reservation", {"date": day, "time": "19:00", "party_size": 6}),
            say(agent[2]),
        ),
        on_caller_speech(user_said(caller[2]), call_tool("update_reservation", {"party_size": 4}), say(agent[3])),
        on_caller_speech(
            user_said(caller[3]), call_tool("update_reservation", {"requests": "window seat"}), say(agent[4])
        ),
        on_caller_speech(
            user_said(caller[4]),
            call_tool("confirm_reservation", {}),
            say(lambda out: f"Booked. Your number is {out['booking_id']}."),
        ),
    )
    # Each reply is at most ~1.1 s of audio and starts ~0.7 s after the caller stops: a 3.5 s pause lets it end
    # before the next utterance. The 3 s lead covers connecting and the greeting.
    wav = speech_wav(caller, tmp_path / "caller.wav", pad_silence_s=3.5, lead_silence_s=3.0, tail_silence_s=90)

    with (
        FakeRealtimeServer(script, api_key=KEY, ms_per_char=15, min_audio_ms=300) as server,
        AppProcess(APP, tmp_path, app_env(tmp_path, server, KEY)) as app,
        chromium_session(playwright, wav, tmp_path) as page,
    ):
        open_app(page, app.url)
        assert page.locator("#key-help").count() == 0, "the key help shows although the Space has a key"
        assert not page.locator("#api-key").is_visible(), "the key box shows although the Space has a key"
        idle = card_now(page)
        assert idle is not None and idle["status"] == "collecting"
        assert all(state == "missing" for name, (_, state) in fields_of(idle).items() if name != "requests")
        record_card(page)
        start_output_meter(page)
        call_started = page_time_ms(page)
        start_call(page, root=CALL)

        # The greeting is heard and shown.
        wait_for_line(page, "bot", agent[0])
        wait_for_output(page, threshold=LOUD, timeout_s=10, since_ms=call_started)
        # The card counts down the call's 5 minutes.
        first_left = countdown_s(page)
        assert 240 < first_left <= 300, first_left

        # Turn 1: the name, and nothing else yet.
        wait_for_line(page, "user", caller[0])
        at, state = wait_for_card(page, lambda s: s["fields"]["guest_name"]["state"] == "filled", "the name")
        assert fields_of(state) == {
            "guest_name": ("Yamada", "filled"),
            "date": ("", "missing"),
            "time": ("", "missing"),
            "party_size": ("", "missing"),
            "requests": ("", "empty"),
        }
        assert state["status"] == "collecting" and state["badge"] == "受付中"
        assert state["problems"] == [] and state["booking_id"] is None
        wait_for_line(page, "bot", agent[1])

        # Turn 2: date and time are taken, six guests are refused with a visible problem.
        wait_for_line(page, "user", caller[1])
        at, state = wait_for_card(page, lambda s: s["fields"]["date"]["state"] == "filled", "the date", since=at)
        assert fields_of(state) == {
            "guest_name": ("Yamada", "filled"),
            "date": (day, "filled"),
            "time": ("19:00", "filled"),
            "party_size": ("", "missing"),
            "requests": ("", "empty"),
        }
        assert state["status"] == "collecting"
        assert [(p["code"], p["field"]) for p in state["problems"]] == [("party_too_large", "party_size")]
        assert state["problems"][0]["visible"], state["problems"]
        assert state["problems"][0]["text"] == "ご予約は1組4名様までです。", state["problems"]  # in the UI's language
        assert page.locator('#reservation-card .problems li[data-code="party_too_large"]').is_visible()
        wait_for_line(page, "bot", agent[2])

        # Turn 3: four guests are accepted, the problem goes, the booking is ready to confirm.
        wait_for_line(page, "user", caller[2])
        at, state = wait_for_card(page, lambda s: s["fields"]["party_size"]["state"] == "filled", "4", since=at)
        assert fields_of(state)["party_size"] == ("4", "filled")
        assert fields_of(state)["requests"] == ("", "empty")
        assert state["problems"] == []
        assert state["status"] == "ready" and state["badge"] == "確認待ち"
        wait_for_line(page, "bot", agent[3])

        # Turn 4: the request.
        wait_for_line(page, "user", caller[3])
        at, state = wait_for_card(page, lambda s: s["fields"]["requests"]["state"] == "filled", "requests", since=at)
        assert fields_of(state)["requests"] == ("window seat", "filled")
        assert state["status"] == "ready" and state["booking_id"] is None
        wait_for_line(page, "bot", agent[4])

        # Turn 5: confirmed, with a booking number on the card and in the agent's words.
        wait_for_line(page, "user", caller[4])
        at, state = wait_for_card(page, lambda s: s["status"] == "confirmed", "the confirmation", since=at)
        assert state["badge"] == "予約確定"
        assert state["booking_id"] is not None, state
        booking_id = state["booking_id"]["attr"]
        assert BOOKING_ID.match(booking_id), booking_id
        assert state["booking_id"]["text"] == booking_id and state["booking_id"]["visible"]
        assert fields_of(state) == {
            "guest_name": ("Yamada", "filled"),
            "date": (day, "filled"),
            "time": ("19:00", "filled"),
            "party_size": ("4", "filled"),
            "requests": ("window seat", "filled"),
        }
        assert state["problems"] == []
        lines = wait_for_line(page, "bot", f"Booked. Your number is {booking_id}.")
        assert countdown_s(page) < first_left, "the time left did not tick down"
        assert page.locator(f'#reservation-card [data-booking-id="{booking_id}"]').is_visible()

        # Both sides, in order, and no notices (a happy call shows no errors or reconnects).
        assert lines == [
            ("bot", agent[0]),
            ("user", caller[0]),
            ("bot", agent[1]),
            ("user", caller[1]),
            ("bot", agent[2]),
            ("user", caller[2]),
            ("bot", agent[3]),
            ("user", caller[3]),
            ("bot", agent[4]),
            ("user", caller[4]),
            ("bot", f"Booked. Your number is {booking_id}."),
        ], lines
        assert not visible_messages(page, kinds=("error", "warning")), visible_messages(page)
        assert max(level.rms for level in output_levels(page, since_ms=call_started)) > LOUD

        snap(page, tmp_path, "booking-confirmed")
        end_call(page, root=CALL)
        assert call_state(page, CALL) == "closed"
        no_traceback(page)
        assert server.problems() == [], server.problems()
        assert server.truncations() == [], "the caller talked over the agent: the pauses are too short"
        assert [out.name for out in server.tool_outputs()] == ["update_reservation"] * 4 + ["confirm_reservation"]
        assert server.session()["audio"]["input"]["transcription"]["language"] == "ja"  # the page's default
        assert "Traceback" not in app.log_text(), app.log_tail()

    # The booking is in the SQLite file, exactly once.
    with sqlite3.connect(tmp_path / "reservations.db") as db:
        rows = db.execute(
            "SELECT booking_id, guest_name, date, time, party_size, requests FROM reservations"
        ).fetchall()
    assert rows == [(booking_id, "Yamada", day, "19:00", 4, "window seat")]


# --------------------------------------------------------------------------------------------------------------
# 2. Barge-in
# --------------------------------------------------------------------------------------------------------------


def test_barge_in_silences_the_agent_and_marks_the_cut(tmp_path: Path, playwright: Any) -> None:
    long_answer = "We have many tables free on that evening, let me list every single one of them for you. " * 3
    question = "What times are free on Friday?"
    interruption = "Stop, stop. Seven o'clock is fine for us."
    script = Script(
        greet("Hello, this is AI-SHIFT."),
        on_caller_speech(user_said(question), say(long_answer, audio_ms=8000)),
        on_caller_speech(user_said(interruption), say("Seven it is.")),
    )
    # The answer starts ~0.7 s after the question ends (500 ms of VAD silence, then the reply); the 2.5 s pause
    # puts the interruption ~2 s into the 8 s answer.
    wav = speech_wav(
        [question, interruption], tmp_path / "caller.wav", pad_silence_s=2.5, lead_silence_s=3.0, tail_silence_s=90
    )

    with (
        FakeRealtimeServer(script, api_key=KEY, ms_per_char=15, min_audio_ms=300) as server,
        AppProcess(APP, tmp_path, app_env(tmp_path, server, KEY)) as app,
        chromium_session(playwright, wav, tmp_path) as page,
    ):
        open_app(page, app.url)
        # English this time, picked in the Settings (closed when the Space has a key): the radio switches the
        # idle card at once, and the call uses it.
        page.get_by_text("設定 / Settings").click()
        page.get_by_label("English").check()
        page.wait_for_function("() => document.querySelector('#reservation-card .reservation-card[lang=en]')")
        start_output_meter(page)
        offset = clock_offset_ms(page)
        call_started = page_time_ms(page)
        start_call(page, root=CALL)

        wait_for_line(page, "user", question)
        try:
            truncation = server.wait_until(server.truncations, timeout=15)[0]
        except TimeoutError:
            raise AssertionError(f"the agent was never cut short (no truncate){describe(page)}") from None
        wait_for_line(page, "user", interruption)
        lines = wait_for_line(page, "bot", "Seven it is.")
        page.wait_for_timeout(500)  # the meter keeps sampling after the last line

        # The caller's speech onset as the fake's VAD saw it, on the page's clock.
        starts = server.sent_events("input_audio_buffer.speech_started")
        assert len(starts) == 2, starts
        onset = starts[1]["_t"] * 1000 - offset
        truncate_sent = server.client_events("conversation.item.truncate")[0]["_t"] * 1000 - offset
        levels = output_levels(page, since_ms=call_started)

        def window(start: float, end: float) -> list[float]:
            return [level.rms for level in levels if onset + start <= level.t_ms <= onset + end]

        before, after = window(-1200, -100), window(600, 1800)
        loud_before = sum(rms > LOUD for rms in before) / max(1, len(before))
        timeline = [
            (round(level.t_ms - onset), round(level.rms, 3)) for level in levels if -1500 < level.t_ms - onset < 2500
        ]
        # The long answer was playing when the caller spoke ...
        assert len(before) >= 15 and loud_before >= 0.8, f"the answer was not playing: {timeline}"
        # ... and went quiet at once: well before the caller finished, let alone the 6 s left of the answer.
        assert len(after) >= 15 and max(after) < QUIET, f"the answer kept playing after the barge-in: {timeline}"
        quiet_from = next((level.t_ms - onset for level in levels if level.t_ms > onset and level.rms < QUIET), None)
        assert quiet_from is not None and quiet_from < 600, f"silence came {quiet_from} ms after onset: {timeline}"
        assert truncate_sent - onset < 500, "the truncate reached the server late"

        # The model is told what the caller heard: about as much as was played, never more than was sent.
        sent_ms = server.sent_audio_ms(truncation["item_id"])
        assert sent_ms >= 7900, sent_ms
        assert 800 <= truncation["audio_end_ms"] <= min(sent_ms, 4000), truncation

        # The transcript shows the cut: the answer as far as heard, marked, then the conversation goes on.
        agent_lines = [text for role, text in lines if role == "bot"]
        cut = [text for text in agent_lines if text.endswith("(interrupted)")]
        assert len(cut) == 1, lines
        assert cut[0].startswith("We have many tables") and len(cut[0]) < len(long_answer) * 0.6, cut
        assert lines.index(("bot", cut[0])) < lines.index(("user", interruption)) < lines.index(("bot", "Seven it is."))
        assert not visible_messages(page, kinds=("error", "warning")), visible_messages(page)
        assert server.session()["audio"]["input"]["transcription"]["language"] == "en"  # the radio reached the call
        assert card_now(page)["badge"] == "Taking details"

        snap(page, tmp_path, "barge-in")
        end_call(page, root=CALL)
        no_traceback(page)
        assert "Traceback" not in app.log_text(), app.log_tail()


# --------------------------------------------------------------------------------------------------------------
# 3 and 4. No key; a refused key
# --------------------------------------------------------------------------------------------------------------


def test_no_key_shows_how_to_add_one(tmp_path: Path, playwright: Any) -> None:
    wav = silence_wav(tmp_path / "silence.wav", seconds=30)
    with (
        FakeRealtimeServer(Script(greet("Hello.")), api_key=KEY) as server,
        AppProcess(APP, tmp_path, app_env(tmp_path, server, key=None)) as app,
        chromium_session(playwright, wav, tmp_path) as page,
    ):
        open_app(page, app.url)
        help_text = page.locator("#key-help").inner_text()
        assert "OPENAI_API_KEY" in help_text, help_text
        assert page.locator("#api-key input, #api-key textarea").first.is_visible(), "no key box on a keyless Space"

        press_record(page)
        messages = wait_for_toast(page, "OPENAI_API_KEY")
        notice = next(message for message in messages if "OPENAI_API_KEY" in message)
        assert "APIキー" in notice and "No OpenAI API key is set" in notice, notice  # both languages
        wait_for_idle(page)
        lines = wait_for_line(page, "bot", re.compile("OPENAI_API_KEY"))
        assert any("No OpenAI API key is set" in text for _, text in lines), lines
        assert server.connection_count == 0
        no_traceback(page)
        settle_and_snap(page, tmp_path, "no-key")
        assert "Traceback" not in app.log_text(), app.log_tail()


def test_a_refused_key_says_401(tmp_path: Path, playwright: Any) -> None:
    wav = silence_wav(tmp_path / "silence.wav", seconds=30)
    with (
        FakeRealtimeServer(Script(greet("Hello.")), api_key=KEY) as server,
        AppProcess(APP, tmp_path, app_env(tmp_path, server, key=None)) as app,
        chromium_session(playwright, wav, tmp_path) as page,
    ):
        open_app(page, app.url)
        key_box = page.locator("#api-key input, #api-key textarea").first
        key_box.fill("sk-wrong-key-pasted-by-a-visitor")
        press_record(page)

        messages = wait_for_toast(page, "401")
        notice = next(message for message in messages if "401" in message)
        assert "OpenAI refused the API key (401)" in notice and "APIキー" in notice, notice
        wait_for_idle(page)
        lines = wait_for_line(page, "bot", re.compile("401"))
        # The pasted key reached the server (the per-session key box works) and was refused there.
        refused = [info for info in server.connections if info.status == 401]
        assert len(refused) == 1 and refused[0].api_key_present and refused[0].api_key_last4 == "itor", refused
        assert server.connection_count == 0
        assert "sk-wrong-key-pasted-by-a-visitor" not in json.dumps(lines) + json.dumps(messages)
        no_traceback(page)
        settle_and_snap(page, tmp_path, "refused-key")
        assert "Traceback" not in app.log_text(), app.log_tail()


# --------------------------------------------------------------------------------------------------------------
# 5. A phone
# --------------------------------------------------------------------------------------------------------------


def test_phone_layout_fits_without_sideways_scrolling(tmp_path: Path, playwright: Any) -> None:
    wav = silence_wav(tmp_path / "silence.wav", seconds=10)
    with (
        AppProcess(APP, tmp_path, app_env(tmp_path, None, key=None)) as app,
        chromium_session(playwright, wav, tmp_path, viewport=PHONE, mobile=True) as page,
    ):
        open_app(page, app.url)
        width, height = page.evaluate("() => [window.innerWidth, window.innerHeight]")
        assert (width, height) == (PHONE["width"], PHONE["height"])

        def check_fits(name: str, selector: str, first_screen: bool = False) -> None:
            element = page.locator(selector).first
            assert element.is_visible(), f"the {name} is not shown on a phone"
            box = element.bounding_box()
            assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= width + 1, f"{name}: {box}"
            if first_screen:
                assert box["y"] + box["height"] <= height, f"the {name} is below the first screen: {box}"

        # First the component asks for the microphone, then shows the record button, in the same place.
        check_fits("microphone button", f"{LIVE_CALL} {MIC_ACCESS_BUTTON}", first_screen=True)
        page.locator(f"{LIVE_CALL} {MIC_ACCESS_BUTTON}").click()
        page.wait_for_selector(f"{LIVE_CALL} {START_BUTTON}", state="visible", timeout=10_000)
        page.wait_for_timeout(500)  # layout settles
        check_fits("record button", f"{LIVE_CALL} {START_BUTTON}", first_screen=True)
        check_fits("card", "#reservation-card .reservation-card")
        check_fits("transcript", "#transcript")
        check_fits("key box", "#api-key input, #api-key textarea")
        scroll_width = page.evaluate("() => document.scrollingElement.scrollWidth")
        assert scroll_width <= width + 1, f"the page scrolls sideways: {scroll_width} px wide in a {width} px screen"
        snap(page, tmp_path, "phone")


# --------------------------------------------------------------------------------------------------------------
# 6. The pipeline engine, picked in Settings, and one call limit for both engines
# --------------------------------------------------------------------------------------------------------------


def test_a_whole_booking_with_the_pipeline_engine(tmp_path: Path, playwright: Any) -> None:
    """The same booking through VAD → speech-to-text → chat model with tools → text-to-speech: the packaged VAD
    hears the browser's microphone, the fake OpenAI HTTP server plays the three services."""
    day = bookable_day(load_config())
    caller = [
        "My name is Suzuki.",
        "Next Friday at seven, six people.",
        "Then four people, please.",
        "Yes, please book it.",
    ]
    agent = [
        "Hello, this is AI-SHIFT. May I have your name?",
        "Thank you, Suzuki. Which day, what time, and how many?",
        "Sorry, we seat at most four per booking.",
        f"Suzuki, four guests, {day} at 19:00. Shall I book it?",
    ]
    script = http.Script(
        http.greet(agent[0]),
        http.on_caller_speech(
            http.user_said(caller[0]), http.call_tool("update_reservation", {"guest_name": "Suzuki"}), agent[1]
        ),
        http.on_caller_speech(
            http.user_said(caller[1]),
            http.call_tool("update_reservation", {"date": day, "time": "19:00", "party_size": 6}),
            agent[2],
        ),
        http.on_caller_speech(
            http.user_said(caller[2]), http.call_tool("update_reservation", {"party_size": 4}), agent[3]
        ),
        http.on_caller_speech(
            http.user_said(caller[3]),
            http.call_tool("confirm_reservation", {}),
            http.say(lambda out: f"Booked. Your number is {out['booking_id']}."),
        ),
    )
    # The VAD ends a turn after ~0.55 s of silence; each reply (15 ms of audio per character, at most ~1 s)
    # follows within about a second: a 4 s pause lets it finish before the next utterance.
    wav = speech_wav(caller, tmp_path / "caller.wav", pad_silence_s=4.0, lead_silence_s=4.0, tail_silence_s=90)
    env = app_env(tmp_path, None, KEY) | {"HF_HUB_OFFLINE": "1"}  # the VAD ships in a wheel: nothing to download

    with (
        http.FakeOpenAIServer(script, api_key=KEY, ms_per_char=15, min_audio_ms=300, max_audio_ms=1200) as server,
        AppProcess(APP, tmp_path, env | {"OPENAI_BASE_URL": server.base_url}) as app,
        chromium_session(playwright, wav, tmp_path) as page,
    ):
        open_app(page, app.url)
        assert page.locator(PIPELINE_CALL).is_hidden(), "both engines' call widgets show at once"
        pick_engine(page, "パイプライン / Pipeline", PIPELINE_CALL)
        assert page.locator(CALL).is_hidden(), "the Realtime call widget still shows"
        record_card(page)
        start_output_meter(page)
        call_started = page_time_ms(page)
        start_call(page, root=PIPELINE_CALL)

        wait_for_line(page, "bot", agent[0])
        wait_for_output(page, threshold=LOUD, timeout_s=10, since_ms=call_started)

        wait_for_line(page, "user", caller[0], timeout_s=30)
        at, state = wait_for_card(page, lambda s: s["fields"]["guest_name"]["state"] == "filled", "the name")
        assert fields_of(state)["guest_name"] == ("Suzuki", "filled") and state["status"] == "collecting"
        wait_for_line(page, "bot", agent[1])

        wait_for_line(page, "user", caller[1], timeout_s=30)
        at, state = wait_for_card(page, lambda s: s["fields"]["date"]["state"] == "filled", "the date", since=at)
        assert fields_of(state)["time"] == ("19:00", "filled") and fields_of(state)["party_size"] == ("", "missing")
        assert [(p["code"], p["field"]) for p in state["problems"]] == [("party_too_large", "party_size")]
        assert state["problems"][0]["visible"] and state["problems"][0]["text"] == "ご予約は1組4名様までです。"
        wait_for_line(page, "bot", agent[2])

        wait_for_line(page, "user", caller[2], timeout_s=30)
        at, state = wait_for_card(page, lambda s: s["status"] == "ready", "ready to confirm", since=at)
        assert fields_of(state)["party_size"] == ("4", "filled") and state["problems"] == []
        wait_for_line(page, "bot", agent[3])

        wait_for_line(page, "user", caller[3], timeout_s=30)
        at, state = wait_for_card(page, lambda s: s["status"] == "confirmed", "the confirmation", since=at)
        booking_id = state["booking_id"]["attr"]
        assert BOOKING_ID.match(booking_id) and state["booking_id"]["visible"], state
        lines = wait_for_line(page, "bot", f"Booked. Your number is {booking_id}.")

        # Both sides in order, no notices, and the pipeline's own figures on the card.
        assert lines == [
            ("bot", agent[0]),
            ("user", caller[0]),
            ("bot", agent[1]),
            ("user", caller[1]),
            ("bot", agent[2]),
            ("user", caller[2]),
            ("bot", agent[3]),
            ("user", caller[3]),
            ("bot", f"Booked. Your number is {booking_id}."),
        ], lines
        assert not visible_messages(page, kinds=("error", "warning")), visible_messages(page)
        stages = page.locator("#reservation-card .stages")
        assert stages.is_visible(), describe(page)
        transcript_ms, first_token_ms, first_audio_ms = map(int, stages.get_attribute("data-stages").split(","))
        assert 0 <= transcript_ms <= first_token_ms <= first_audio_ms, (transcript_ms, first_token_ms, first_audio_ms)

        snap(page, tmp_path, "pipeline-booking-confirmed")
        end_call(page, root=PIPELINE_CALL)
        no_traceback(page)
        assert server.problems() == [], server.problems()
        transcriptions = server.transcriptions()
        assert len(transcriptions) == 4 and all(t["language"] == "ja" for t in transcriptions), transcriptions
        assert all(s["voice"] == "marin" for s in server.speech_requests())  # the page's default voice
        assert [out.name for out in server.tool_outputs()] == ["update_reservation"] * 3 + ["confirm_reservation"]
        assert "Traceback" not in app.log_text(), app.log_tail()

    with sqlite3.connect(tmp_path / "reservations.db") as db:
        rows = db.execute("SELECT booking_id, guest_name, date, time, party_size FROM reservations").fetchall()
    assert rows == [(booking_id, "Suzuki", day, "19:00", 4)]


def test_a_whole_booking_on_gpt_live_the_spaces_default(tmp_path: Path, playwright: Any) -> None:
    """The page starts on the GPT-Live engine: its full-duplex session hears the browser's microphone, the fake Live
    API plays the voice and its Responses backend, and the rules and the booking are our code's."""
    day = bookable_day(load_config())
    caller = ["My name is Kato, two people.", "Yes, please."]
    agent = ["Hello, this is AI-SHIFT. How may I help you?", f"Kato, two guests on {day} at seven. Shall I book it?"]
    script = live.Script(
        live.greet(agent[0]),
        live.on_caller_speech(
            live.user_said(caller[0]),
            live.call_tool("update_reservation", {"guest_name": "Kato", "date": day, "time": "19:00", "party_size": 2}),
            agent[1],
        ),
        live.on_caller_speech(
            live.user_said(caller[1]),
            live.call_tool("confirm_reservation", {}),
            live.say(lambda out: f"Booked. Your number is {out['booking_id']}."),
        ),
    )
    wav = speech_wav(caller, tmp_path / "caller.wav", pad_silence_s=4.0, lead_silence_s=4.0, tail_silence_s=90)

    with (
        live.FakeLiveServer(script, api_key=KEY, ms_per_char=15, min_audio_ms=300) as server,
        AppProcess(APP, tmp_path, app_env(tmp_path, server, KEY)) as app,
        chromium_session(playwright, wav, tmp_path) as page,
    ):
        open_app(page, app.url)
        assert page.locator(CALL).is_hidden() and page.locator(PIPELINE_CALL).is_hidden()
        record_card(page)
        start_call(page, root=LIVE_CALL)
        wait_for_line(page, "bot", agent[0])
        wait_for_line(page, "user", caller[0], timeout_s=30)
        at, state = wait_for_card(page, lambda s: s["status"] == "ready", "ready to confirm")
        assert fields_of(state)["guest_name"] == ("Kato", "filled") and fields_of(state)["party_size"] == (
            "2",
            "filled",
        )
        wait_for_line(page, "bot", agent[1])
        wait_for_line(page, "user", caller[1], timeout_s=30)
        at, state = wait_for_card(page, lambda s: s["status"] == "confirmed", "the confirmation", since=at)
        booking_id = state["booking_id"]["attr"]
        assert BOOKING_ID.match(booking_id) and state["booking_id"]["visible"], state
        lines = wait_for_line(page, "bot", f"Booked. Your number is {booking_id}.")
        assert lines == [
            ("bot", agent[0]),
            ("user", caller[0]),
            ("bot", agent[1]),
            ("user", caller[1]),
            ("bot", f"Booked. Your number is {booking_id}."),
        ], lines
        assert not visible_messages(page, kinds=("error", "warning")), visible_messages(page)
        snap(page, tmp_path, "live-booking-confirmed")
        end_call(page, root=LIVE_CALL)
        no_traceback(page)
        assert server.problems() == [], server.problems()
        assert server.session()["audio"]["format"] == {"type": "audio/pcm", "rate": 24000}
        assert "Traceback" not in app.log_text(), app.log_tail()

    with sqlite3.connect(tmp_path / "reservations.db") as db:
        rows = db.execute("SELECT booking_id, guest_name, date, time, party_size FROM reservations").fetchall()
    assert rows == [(booking_id, "Kato", day, "19:00", 2)]


def pick_engine(page: Page, label: str, root: str) -> None:
    """Choose a voice engine in Settings (opening them if closed) and wait for its call widget."""
    if not page.get_by_label(label, exact=False).is_visible():
        page.get_by_text("設定 / Settings").click()
    page.get_by_label(label, exact=False).check()
    page.wait_for_selector(f"{root} {START_BUTTON}, {root} {MIC_ACCESS_BUTTON}", timeout=10_000)


def test_calls_on_both_engines_share_one_limit(tmp_path: Path, playwright: Any) -> None:
    wav = silence_wav(tmp_path / "silence.wav", seconds=60)
    greeting = "Hello, this is AI-SHIFT."
    with (
        FakeRealtimeServer(Script(greet(greeting)), api_key=KEY, min_audio_ms=300) as server,
        AppProcess(APP, tmp_path, app_env(tmp_path, server, KEY) | {"MAX_CONCURRENT_CALLS": "1"}) as app,
        chromium_session(playwright, wav, tmp_path) as first,
    ):
        second = first.context.new_page()
        open_app(first, app.url)
        open_app(second, app.url)
        start_call(first, root=CALL)
        wait_for_line(first, "bot", greeting)

        # The only line is in use: a call on the other engine is refused, with a message.
        pick_engine(second, "パイプライン / Pipeline", PIPELINE_CALL)
        press_record(second, PIPELINE_CALL)
        wait_for_toast(second, "Too many concurrent connections")
        settle_and_snap(second, tmp_path, "all-lines-busy")
        assert call_state(second, PIPELINE_CALL) != "open"

        # Once the first caller hangs up, the line is free again.
        end_call(first, root=CALL)
        pick_engine(second, "リアルタイム音声 / Realtime", CALL)
        start_call(second, root=CALL)
        wait_for_line(second, "bot", greeting)
        end_call(second, root=CALL)
        assert server.connection_count == 2
        assert "Traceback" not in app.log_text(), app.log_tail()
