"""A guest changes one booking and cancels another by voice in the real app and a real browser, and takes the
changed booking away as a calendar file.

The app runs as a subprocess on a SQLite file that already holds the guest's two bookings; headless Chromium
speaks the caller's lines (an espeak-ng WAV as its microphone) and the scripted Realtime fake plays the model.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from icalendar import Calendar
from playwright.sync_api import sync_playwright

from components.restaurant.config import load_config
from components.restaurant.fields import Reservation
from components.store.reservations import ReservationStore
from tests.browser import (
    AppProcess,
    chromium_session,
    end_call,
    have_browser_tools,
    open_app,
    snap,
    speech_wav,
    start_call,
)
from tests.domain_fixtures import bookable_day, count
from tests.fake_realtime import FakeRealtimeServer, Script, call_tool, greet, on_caller_speech, say, user_said
from tests.page import APP, CALL, app_env, no_traceback, record_card, wait_for_card, wait_for_line

pytestmark = pytest.mark.timeout(180)
KEY = "sk-test-self-service-browser"


def test_a_change_and_a_cancellation_by_voice_and_the_changed_booking_as_a_calendar_file(tmp_path: Path) -> None:
    assert have_browser_tools(), "browser tests need /usr/bin/chromium, espeak-ng and sox"
    config = load_config()
    day, other_day = bookable_day(config), bookable_day(config, days_ahead=10)
    store = ReservationStore(tmp_path / "reservations.db")
    now = dt.datetime.now(dt.UTC)
    keep = store.book(Reservation("Yamada", dt.date.fromisoformat(day), dt.time(19, 0), 2), config, now)
    drop = store.book(Reservation("Yamada", dt.date.fromisoformat(other_day), dt.time(12, 0), 3), config, now)
    caller = [
        "I would like to change my booking, name Yamada.",
        "Please make it eight o'clock.",
        "Yes, that is right.",
        "And please cancel my other booking.",
        "Yes, cancel it.",
    ]
    agent = [
        "Hello, this is AI-SHIFT.",
        f"I found your booking {keep} on {day} at 19:00. What would you like to change?",
        f"That is {day} at 20:00 for two. Shall I change it?",
        f"Done. Your booking {keep} is now at 20:00.",
        f"I have booking {drop} on {other_day} at 12:00. Shall I cancel it?",
        f"Booking {drop} is cancelled.",
    ]
    script = Script(
        greet(agent[0]),
        on_caller_speech(
            user_said(caller[0]),
            call_tool("find_reservation", {"booking_id": keep, "guest_name": "Yamada"}),
            say(agent[1]),
        ),
        on_caller_speech(user_said(caller[1]), call_tool("update_reservation", {"time": "20:00"}), say(agent[2])),
        on_caller_speech(user_said(caller[2]), call_tool("confirm_reservation", {}), say(agent[3])),
        on_caller_speech(
            user_said(caller[3]),
            call_tool("find_reservation", {"booking_id": drop, "guest_name": "yamada"}),
            say(agent[4]),
        ),
        on_caller_speech(user_said(caller[4]), call_tool("cancel_reservation", {}), say(agent[5])),
    )
    wav = speech_wav(caller, tmp_path / "caller.wav", pad_silence_s=4.0, lead_silence_s=3.0, tail_silence_s=90)

    with (
        sync_playwright() as playwright,
        FakeRealtimeServer(script, api_key=KEY, ms_per_char=15, min_audio_ms=300) as server,
        AppProcess(APP, tmp_path, app_env(tmp_path, server, KEY)) as app,
        chromium_session(playwright, wav, tmp_path) as page,
    ):
        open_app(page, app.url)
        ics_button = page.locator("#booking-ics")
        assert not ics_button.is_visible(), "a calendar file is offered before anything was booked"
        record_card(page)
        start_call(page, root=CALL)

        # The booking is found: the card shows it, marked as a change of that booking.
        wait_for_line(page, "user", caller[0])
        at, state = wait_for_card(page, lambda s: s["changing"] == keep, "the booking being changed")
        assert state["fields"]["time"]["value"] == "19:00" and state["fields"]["guest_name"]["value"] == "Yamada"
        wait_for_line(page, "bot", agent[1])
        snap(page, tmp_path, "booking-found")

        # The change is read back, confirmed, and saved under the same number.
        at, state = wait_for_card(page, lambda s: s["fields"]["time"]["value"] == "20:00", "the new time", since=at)
        assert state["status"] == "ready" and state["changing"] == keep
        at, state = wait_for_card(page, lambda s: s["status"] == "confirmed", "the saved change", since=at)
        assert state["booking_id"]["attr"] == keep and state["outcome"] == "booked"
        wait_for_line(page, "bot", agent[3])

        # The changed booking can be taken away as a calendar file.
        ics_button.wait_for(state="visible", timeout=10_000)
        with page.expect_download() as download:
            ics_button.click()
        saved = tmp_path / "downloaded.ics"
        download.value.save_as(saved)
        assert download.value.suggested_filename == f"{keep}.ics"
        snap(page, tmp_path, "change-saved")

        # The other booking is found and cancelled.
        at, state = wait_for_card(page, lambda s: s["changing"] == drop, "the second booking", since=at)
        at, state = wait_for_card(page, lambda s: s["status"] == "cancelled", "the cancellation", since=at)
        assert state["booking_id"]["attr"] == drop and state["outcome"] == "cancelled"
        assert state["badge"] == "取り消し済み"
        wait_for_line(page, "bot", agent[5])
        ics_button.wait_for(state="hidden", timeout=10_000)  # a cancelled booking is nothing to keep
        snap(page, tmp_path, "booking-cancelled")
        end_call(page, root=CALL)
        no_traceback(page)
        assert server.problems() == [], server.problems()

    calendar = Calendar.from_ical(saved.read_bytes())
    (event,) = calendar.walk("VEVENT")
    start = event.decoded("dtstart")
    assert (start.date().isoformat(), start.strftime("%H:%M"), str(start.tzinfo)) == (day, "20:00", config.timezone)
    assert event.decoded("dtend") - start == dt.timedelta(minutes=config.table_minutes)
    assert keep in str(event["summary"]) and config.name("ja") in str(event["summary"])
    assert str(event["location"]) == config.address.ja
    assert str(event["status"]) == "CONFIRMED"
    assert calendar.walk("VTIMEZONE")[0]["tzid"] == config.timezone

    kept, dropped = store.get(keep), store.get(drop)
    assert (kept["status"], kept["time"], kept["date"]) == ("confirmed", "20:00", day)
    assert dropped["status"] == "cancelled" and dropped["cancelled_at"]
    assert count(store) == 2
    assert [entry["action"] for entry in store.audit.entries()][:2] == ["cancelled", "changed"]
