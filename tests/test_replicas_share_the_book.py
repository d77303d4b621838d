"""Two replicas of the server on one PostgreSQL database agree on the book, one call after the other.

Two `python app.py --server` processes share a `DATABASE_URL` on the test PostgreSQL server and the scripted
Realtime fake. A phone caller books the restaurant's only table at 19:00 through the first; then a second caller
asks for the same table through the second and is told it is taken. The owner's console on each replica lists
the booking, and a cancellation made on one is what the other shows. (Two writers racing for the last table at
the same moment, across processes, are `test_domain_store.py`'s race tests.)
"""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

import pytest
from playwright.sync_api import sync_playwright

from components.restaurant.config import load_config
from components.store.reservations import ReservationStore
from tests import postgres
from tests.browser import AppProcess, chromium_session, have_browser_tools, open_app, silence_wav
from tests.domain_fixtures import bookable_day, count, write_config
from tests.fake_realtime import FakeRealtimeServer, Script, call_tool, greet, on_caller_speech, say, user_said
from tests.page import APP, open_console, select_booking, show_bookings_from, wait_for_rows
from tests.twilio_caller import TwilioCaller, incoming, new_sid, parse_twiml

pytestmark = pytest.mark.timeout(240)
KEY = "sk-test-replicas"
PASSWORD = "replica-owner-password"


def phone_booking(url: str, fake: FakeRealtimeServer) -> None:
    """A caller asks for the table at 19:00 and says yes; returns once the agent has answered."""
    confirmed = len(fake.tool_outputs("confirm_reservation"))

    async def call() -> None:
        call_sid = new_sid("CA")  # Twilio's stream carries the CallSid its webhook did: the token is for that call
        twiml = parse_twiml(incoming(url, call_sid))
        async with TwilioCaller(twiml.stream_url, parameters=twiml.parameters, call_sid=call_sid) as caller:
            await caller.until(lambda: caller.audible_ms() > 200, timeout=30, what="the greeting")
            await caller.until_quiet()
            heard = caller.audible_ms()
            await caller.say("Two people at seven, please book it.")
            await caller.until(lambda: len(fake.tool_outputs("confirm_reservation")) > confirmed, what="the booking")
            await caller.until(lambda: caller.audible_ms() > heard + 100, what="the answer")
            await caller.until_quiet()

    asyncio.run(call())


def test_a_booking_on_one_replica_fills_the_table_on_the_other_and_a_cancellation_shows_on_both(tmp_path: Path) -> None:
    assert have_browser_tools(), "browser tests need /usr/bin/chromium, espeak-ng and sox"
    config_path = write_config(tmp_path, {"tables = 6": "tables = 1"})
    day = bookable_day(load_config(config_path))
    database = postgres.fresh_database()
    script = Script(
        greet("Hello, this is AI-SHIFT."),
        on_caller_speech(
            user_said("Two people at seven, please book it."),
            call_tool("update_reservation", {"guest_name": "Replica", "date": day, "time": "19:00", "party_size": 2}),
            call_tool("confirm_reservation", {}),
            say(lambda out: f"Booked, {out['booking_id']}." if out["booking_id"] else out["problems"][0]["message"]),
        ),
    )
    with FakeRealtimeServer(script, api_key=KEY, ms_per_char=15, min_audio_ms=300) as fake:
        env = {
            "DATABASE_URL": database,
            "RESTAURANT_CONFIG": str(config_path),
            "OPENAI_API_KEY": KEY,
            "OPENAI_BASE_URL": fake.base_url,
            "VOICE_ENGINE": "realtime",  # the engine the fake plays, on the phone line
            "OWNER_PASSWORD": PASSWORD,
            "TWILIO_AUTH_TOKEN": "",
            "TWILIO_VALIDATE_SIGNATURE": "false",  # unsigned webhooks: a local test
            "PUBLIC_URL": "",
        }
        with (
            AppProcess(APP, tmp_path / "one", env, args=("--server",), name="one") as one,
            AppProcess(APP, tmp_path / "two", env, args=("--server",), name="two") as two,
        ):
            phone_booking(one.url.rstrip("/"), fake)
            phone_booking(two.url.rstrip("/"), fake)
            booked, refused = [output.output for output in fake.tool_outputs("confirm_reservation")]
            second_ask = fake.tool_outputs("update_reservation")[-1].output

            assert booked["status"] == "confirmed" and booked["booking_id"]
            assert [problem["code"] for problem in second_ask["problems"]] == ["fully_booked"]  # seen by the other
            assert refused["booking_id"] is None and "fully_booked" in [p["code"] for p in refused["problems"]]

            with sync_playwright() as playwright, contextlib.ExitStack() as browsers:
                quiet = silence_wav(tmp_path / "quiet.wav", 5)
                pages = []
                for server in (one, two):
                    page = browsers.enter_context(chromium_session(playwright, quiet, server.log_dir))
                    pages.append(page)
                    open_app(page, server.url)
                    open_console(page, PASSWORD)
                    show_bookings_from(page, day)
                    rows = wait_for_rows(page, "owner-bookings", lambda rows: len(rows) == 1, "the booking")
                    assert (rows[0]["予約番号 / Booking"], rows[0]["経路 / Source"]) == (booked["booking_id"], "phone")
                # A cancellation on the second replica is what the first one shows.
                first, second = pages
                select_booking(second, "Replica", booked["booking_id"])
                second.click("#owner-cancel")
                wait_for_rows(
                    second, "owner-bookings", lambda rows: rows[0]["状態 / Status"] == "cancelled", "cancelled"
                )
                first.click("#owner-refresh")
                wait_for_rows(
                    first, "owner-bookings", lambda rows: rows[0]["状態 / Status"] == "cancelled", "cancelled"
                )

    store = ReservationStore(database)
    assert count(store) == 1 and store.get(booked["booking_id"])["status"] == "cancelled"
    assert [entry["action"] for entry in store.audit.entries()] == ["cancelled", "booked"]
