"""The owner's console in the real app and a real browser: only the restaurant gets in, and it runs the book.

The app runs as a subprocess on its own SQLite file, with the scripted Realtime fake as the model where a call
is made. The owner signs in with `OWNER_PASSWORD`, or with Hugging Face through a protocol-level fake of the
Hub's OAuth (`tests.fake_hub_oauth`) reached through the URLs Gradio reads. A visitor, and any API client,
must see nothing of anyone's booking.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from icalendar import Calendar
from playwright.sync_api import sync_playwright

from components.restaurant.book import BookingRefused
from components.restaurant.config import load_config
from components.restaurant.fields import Reservation
from components.store.reservations import ReservationStore
from tests.browser import (
    MIC_ACCESS_BUTTON,
    START_BUTTON,
    AppProcess,
    chromium_session,
    have_browser_tools,
    open_app,
    silence_wav,
    snap,
    speech_wav,
)
from tests.browser import start_call as press_record_and_wait
from tests.domain_fixtures import bookable_day, seating_config, write_config
from tests.fake_hub_oauth import FakeHubOAuth
from tests.fake_realtime import FakeRealtimeServer, Script, call_tool, greet, on_caller_speech, say, user_said
from tests.page import (
    APP,
    CALL,
    app_env,
    no_traceback,
    open_console,
    record_card,
    select_booking,
    show_bookings_from,
    wait_for_card,
    wait_for_line,
    wait_for_rows,
)

pytestmark = pytest.mark.timeout(240)
KEY = "sk-test-console"
PASSWORD = "correct horse battery staple"
NAME = "Yamadazaki"  # a name to look for in every answer a stranger can get


@pytest.fixture(autouse=True)
def _browser_tools() -> None:
    assert have_browser_tools(), "browser tests need /usr/bin/chromium, espeak-ng and sox"


def one_table_config(tmp_path: Path) -> Path:
    """The shipped restaurant with a single table, so one booking fills a slot."""
    return write_config(tmp_path, {"tables = 6": "tables = 1"})


def test_a_voice_booking_is_in_the_console_and_the_owner_cancels_and_exports_it(tmp_path: Path) -> None:
    config_path = one_table_config(tmp_path)
    config = load_config(config_path)
    day = bookable_day(config)
    caller = ["Yamadazaki, two people at seven, my number is zero nine zero one two three four five six seven eight."]
    script = Script(
        greet("Hello, this is AI-SHIFT."),
        on_caller_speech(
            user_said(caller[0]),
            call_tool(
                "update_reservation",
                {"guest_name": NAME, "date": day, "time": "19:00", "party_size": 2, "phone": "090-1234-5678"},
            ),
            call_tool("confirm_reservation", {}),
            say(lambda out: f"Booked, {out['booking_id']}."),
        ),
    )
    wav = speech_wav(caller, tmp_path / "caller.wav", pad_silence_s=3.0, lead_silence_s=3.0, tail_silence_s=60)
    env = {**app_env(tmp_path, None, KEY), "OWNER_PASSWORD": PASSWORD, "RESTAURANT_CONFIG": str(config_path)}

    with (
        sync_playwright() as playwright,
        FakeRealtimeServer(script, api_key=KEY, ms_per_char=15, min_audio_ms=300) as server,
        AppProcess(APP, tmp_path, {**env, **app_env(tmp_path, server, KEY)}) as app,
        chromium_session(playwright, wav, tmp_path) as page,
    ):
        open_app(page, app.url)
        record_card(page)
        press_record_and_wait(page, root=CALL)
        _, state = wait_for_card(page, lambda s: s["status"] == "confirmed", "the booking", timeout_s=40)
        booking_id = state["booking_id"]["attr"]
        wait_for_line(page, "bot", f"Booked, {booking_id}.")

        # A wrong password is refused and shows nothing; this address's next try is checked a second later.
        open_console(page, "not the password")
        page.wait_for_function(
            "() => document.querySelector('#owner-status')?.innerText.includes('not right')", timeout=20_000
        )
        assert not page.locator("#owner-console").is_visible()
        assert NAME not in page.inner_text("body")
        open_console(page, PASSWORD)  # too soon: not even checked
        page.wait_for_function(
            "() => document.querySelector('#owner-status')?.innerText.includes('try again in 1 s')", timeout=20_000
        )
        page.wait_for_timeout(1100)

        # The right one opens the console with the booking, its phone number masked until asked for, and the
        # day's spending on the restaurant's key.
        open_console(page, PASSWORD)
        page.wait_for_selector("#owner-console", state="visible", timeout=20_000)
        assert "Today on the restaurant's key: 1 calls" in page.inner_text("#owner-console")
        show_bookings_from(page, day)
        rows = wait_for_rows(
            page, "owner-bookings", lambda rows: any(r["予約番号 / Booking"] == booking_id for r in rows), "the booking"
        )
        (row,) = [r for r in rows if r["予約番号 / Booking"] == booking_id]
        assert (row["お名前 / Name"], row["時間 / Time"], row["人数 / Party"]) == (NAME, "19:00", "2")
        assert (row["電話 / Phone"], row["経路 / Source"], row["状態 / Status"]) == ("•••••••5678", "web", "confirmed")
        page.get_by_label("電話番号を表示 / Show phone numbers").check()
        wait_for_rows(
            page, "owner-bookings", lambda rows: any(r["電話 / Phone"] == "09012345678" for r in rows), "the number"
        )
        snap(page, tmp_path, "console-bookings")

        # The booking's call is kept with it.
        select_booking(page, NAME, booking_id)
        page.wait_for_function(
            "(line) => document.querySelector('#owner-call')?.innerText.includes(line)", arg=caller[0], timeout=10_000
        )

        # While it stands, the slot is full; the owner cancels it and the slot is free again.
        store = ReservationStore(tmp_path / "reservations.db")
        walk_in = Reservation("Walk-in", dt.date.fromisoformat(day), dt.time(19, 0), 2)
        with pytest.raises(BookingRefused):
            store.book(walk_in, config, dt.datetime.now(dt.UTC))
        hoping = Reservation("Ito", dt.date.fromisoformat(day), dt.time(19, 0), 2)  # a guest on the waitlist for it
        store.waitlist.join(hoping, dt.datetime.now(dt.UTC), phone="09033334444", language="ja", source="phone")
        page.click("#owner-cancel")
        wait_for_rows(
            page, "owner-bookings", lambda rows: any(r["状態 / Status"] == "cancelled" for r in rows), "cancelled"
        )
        assert "cancelled; its table is free again" in page.inner_text("#owner-result")
        assert "A table is free for Ito on the waitlist" in page.inner_text("#owner-result")
        waiting = wait_for_rows(
            page, "owner-waitlist", lambda rows: rows and rows[0]["状態 / Status"] == "notified", "the waitlist"
        )
        assert (waiting[0]["お名前 / Name"], waiting[0]["空いた予約 / Freed by"]) == ("Ito", booking_id)
        assert store.book(walk_in, config, dt.datetime.now(dt.UTC))
        audit = wait_for_rows(
            page, "owner-audit", lambda rows: any(row["操作 / What"] == "cancelled" for row in rows), "the audit"
        )
        (cancelled,) = [row for row in audit if row["操作 / What"] == "cancelled"]
        assert (cancelled["誰が / Who"], cancelled["予約番号 / Booking"]) == ("owner:password", booking_id)
        assert audit[0]["操作 / What"] == "waitlist_notified"  # newest first: the waitlisted guest was told
        page.click("#owner-refresh")
        wait_for_rows(
            page, "owner-bookings", lambda rows: any(r["お名前 / Name"] == "Walk-in" for r in rows), "the walk-in"
        )
        snap(page, tmp_path, "console-cancelled")

        # Both exports download and parse back.
        with page.expect_download() as download:
            page.click("#owner-csv")
        exported = list(csv.DictReader(io.StringIO(Path(download.value.path()).read_bytes().decode("utf-8-sig"))))
        assert Path(download.value.path()).read_bytes().startswith(b"\xef\xbb\xbf")  # Excel reads it as UTF-8
        assert {(r["booking_id"], r["guest_name"], r["status"], r["phone"]) for r in exported} >= {
            (booking_id, NAME, "cancelled", "09012345678")
        }
        with page.expect_download() as download:
            page.click("#owner-ics")
        events = Calendar.from_ical(Path(download.value.path()).read_bytes()).walk("VEVENT")
        ours = [event for event in events if booking_id in str(event["summary"])]
        assert len(ours) == 1 and str(ours[0]["status"]) == "CANCELLED"
        assert ours[0].decoded("dtstart").strftime("%H:%M") == "19:00"
        no_traceback(page)


def test_a_visitor_and_every_api_endpoint_get_no_booking_data(tmp_path: Path) -> None:
    store = ReservationStore(tmp_path / "reservations.db")
    config = load_config()
    day = bookable_day(config)
    reservation = Reservation(NAME, dt.date.fromisoformat(day), dt.time(19, 0), 2, phone="090-1234-5678")
    booking_id = store.book(reservation, config, dt.datetime.now(dt.UTC))
    store.callbacks.add(
        dt.datetime.now(dt.UTC), guest_name=NAME, phone="0312345678", request="x", language="en", source="web"
    )
    env = {**app_env(tmp_path, None, KEY), "OWNER_PASSWORD": PASSWORD}

    with (
        sync_playwright() as playwright,
        AppProcess(APP, tmp_path, env) as app,
        chromium_session(playwright, silence_wav(tmp_path / "quiet.wav", 5), tmp_path) as page,
    ):
        # The page, both tabs, signed out.
        open_app(page, app.url)
        assert NAME not in page.content() and booking_id not in page.content()
        open_console(page, None)
        page.wait_for_selector("#owner-password", timeout=10_000)
        assert NAME not in page.inner_text("body") and not page.locator("#owner-console").is_visible()
        snap(page, tmp_path, "console-signed-out")

        # Every endpoint Gradio lists, and every event of the page by its index, called without a credential.
        base = app.url.rstrip("/")
        info = httpx.get(f"{base}/gradio_api/info", timeout=10).json()
        answers = [call_named(base, name) for name in info["named_endpoints"]]
        config_json = httpx.get(f"{base}/config", timeout=10).json()
        answers += [call_by_index(base, dependency["id"], dependency) for dependency in config_json["dependencies"]]
        assert not any(name.startswith("/sign_in") or "owner" in name for name in info["named_endpoints"])

    assert len(answers) > 20  # the console's events were all called
    # the numbers whole or masked; a bare "5678" also turns up in the queue's random timings
    phone_traces = ("12345678", "1234-5678", "•5678", "\\u20225678")
    leaked = [a for a in answers if NAME in a or booking_id in a or any(trace in a for trace in phone_traces)]
    assert leaked == []


def call_named(base: str, name: str) -> str:
    """`POST /gradio_api/call/<name>` with empty inputs, then everything its event stream says."""
    started = httpx.post(f"{base}/gradio_api/call{name}", json={"data": []}, timeout=10)
    if started.status_code != 200:
        return started.text
    event_id = started.json().get("event_id")
    with httpx.stream("GET", f"{base}/gradio_api/call{name}/{event_id}", timeout=30) as response:
        return "".join(response.iter_text())


def call_by_index(base: str, fn_index: int, dependency: dict[str, Any]) -> str:
    """Join the queue for one event by its index, as a page would, with empty inputs, and read the answer."""
    session = f"stranger{fn_index}{int(time.time() * 1000)}"
    data = [None] * len(dependency.get("inputs", []))
    joined = httpx.post(
        f"{base}/gradio_api/queue/join",
        json={
            "data": data,
            "fn_index": fn_index,
            "session_hash": session,
            "event_data": {"index": [0, 2], "value": ""},
        },
        timeout=10,
    )
    if joined.status_code != 200:
        return joined.text
    out = []
    with httpx.stream("GET", f"{base}/gradio_api/queue/data", params={"session_hash": session}, timeout=30) as stream:
        for line in stream.iter_lines():
            out.append(line)
            if "process_completed" in line or "close_stream" in line:
                break
    return "\n".join(out)


def test_signing_in_with_hugging_face_opens_the_console_for_the_owner_only(tmp_path: Path) -> None:
    store = ReservationStore(tmp_path / "reservations.db")
    config = load_config()
    day = bookable_day(config)
    booking_id = store.book(
        Reservation(NAME, dt.date.fromisoformat(day), dt.time(12, 0), 2), config, dt.datetime.now(dt.UTC)
    )

    with FakeHubOAuth(client_id="space-client-id", client_secret="space-client-secret") as hub:
        env = {
            **app_env(tmp_path, None, KEY),
            "SYSTEM": "spaces",  # what a Space sets, and what Gradio looks for
            "SPACE_ID": "alice/voicebot",
            "SPACE_AUTHOR_NAME": "alice",
            "OWNER_USERS": "carol",
            "OAUTH_CLIENT_ID": "space-client-id",
            "OAUTH_CLIENT_SECRET": "space-client-secret",
            "OAUTH_SCOPES": "openid profile",
            "OPENID_PROVIDER_URL": hub.base_url,
        }
        with (
            sync_playwright() as playwright,
            AppProcess(APP, tmp_path, env) as app,
            chromium_session(playwright, silence_wav(tmp_path / "quiet.wav", 5), tmp_path) as page,
        ):
            for user, allowed in (("bob", False), ("alice", True)):
                hub.user = user
                page.context.clear_cookies()
                open_app(page, app.url)
                open_console(page, None)
                exchanged = len(hub.token_requests)
                page.get_by_role("button", name="Hugging Face でサインイン / Sign in with Hugging Face").click()
                deadline = time.monotonic() + 20
                while not (len(hub.token_requests) > exchanged and signed_in_cookie(page) and back_home(page, app.url)):
                    assert time.monotonic() < deadline, "the sign-in never came back from the Hub"
                    page.wait_for_timeout(100)
                reopen_after_sign_in(page)
                open_console(page, None)
                if allowed:
                    page.wait_for_selector("#owner-console", state="visible", timeout=20_000)
                    assert "Hugging Face: alice" in page.inner_text("#owner-console")
                    show_bookings_from(page, day)
                    wait_for_rows(
                        page,
                        "owner-bookings",
                        lambda rows: any(r["お名前 / Name"] == NAME for r in rows),
                        "the booking",
                    )
                    snap(page, tmp_path, "console-oauth")
                else:
                    page.wait_for_timeout(2000)
                    assert not page.locator("#owner-console").is_visible()
                    assert NAME not in page.inner_text("body")
            log = app.log_text()

    assert [request["client_id"] for request in hub.authorizations] == ["space-client-id"] * 2
    assert len(hub.token_requests) == 2 and all(r["grant_type"] == "authorization_code" for r in hub.token_requests)
    assert "space-client-secret" not in log and booking_id not in log


def reopen_after_sign_in(page: Any) -> None:
    """Wait for the app's page the OAuth callback sent the browser back to. Gradio's page may reload itself
    once after the callback, so navigating there ourselves would race it: wait until the page stays put."""
    for _ in range(2):
        page.wait_for_load_state("domcontentloaded", timeout=30_000)
        page.wait_for_selector(f"{START_BUTTON}, {MIC_ACCESS_BUTTON}", timeout=30_000)
        page.wait_for_timeout(1500)


def back_home(page: Any, app_url: str) -> bool:
    """The browser has followed the OAuth callback's redirect back to the app's page."""
    return page.url.split("?")[0].rstrip("/") == app_url.rstrip("/")


def signed_in_cookie(page: Any) -> bool:
    """Gradio's session cookie, which its OAuth callback sets once the Hub's code is exchanged."""
    return any(cookie["name"] == "session" for cookie in page.context.cookies())


def test_without_a_credential_the_console_says_how_to_turn_it_on(tmp_path: Path) -> None:
    store = ReservationStore(tmp_path / "reservations.db")
    config = load_config()
    store.book(
        Reservation(NAME, dt.date.fromisoformat(bookable_day(config)), dt.time(12, 0), 2),
        config,
        dt.datetime.now(dt.UTC),
    )
    with (
        sync_playwright() as playwright,
        AppProcess(APP, tmp_path, app_env(tmp_path, None, KEY)) as app,
        chromium_session(playwright, silence_wav(tmp_path / "quiet.wav", 5), tmp_path) as page,
    ):
        open_app(page, app.url)
        open_console(page, None)
        page.wait_for_selector("#owner-not-set-up", timeout=10_000)
        text = page.inner_text("#owner-not-set-up")
        assert "OWNER_PASSWORD" in text and "hf_oauth: true" in text
        assert NAME not in page.inner_text("body")
        assert page.locator("#owner-password").count() == 0
        assert json.dumps(httpx.get(f"{app.url}config", timeout=10).json()).count(NAME) == 0


def test_the_console_fits_a_phone_screen(tmp_path: Path) -> None:
    from tests.browser import PHONE

    store = ReservationStore(tmp_path / "reservations.db")
    config = load_config()
    day = bookable_day(config)
    for hour in (12, 18, 19):
        reservation = Reservation(f"Guest {hour}", dt.date.fromisoformat(day), dt.time(hour, 0), 2, requests="窓際の席")
        store.book(reservation, config, dt.datetime.now(dt.UTC))
    env = {**app_env(tmp_path, None, KEY), "OWNER_PASSWORD": PASSWORD}
    with (
        sync_playwright() as playwright,
        AppProcess(APP, tmp_path, env) as app,
        chromium_session(playwright, silence_wav(tmp_path / "quiet.wav", 5), tmp_path, viewport=PHONE) as page,
    ):
        open_app(page, app.url)
        open_console(page, PASSWORD)
        show_bookings_from(page, day)
        wait_for_rows(page, "owner-bookings", lambda rows: len(rows) == 3, "the three bookings")
        overflow = page.evaluate("() => document.documentElement.scrollWidth - window.innerWidth")
        assert overflow <= 1, f"the page scrolls sideways by {overflow}px on a phone"
        for control in ("#owner-day", "#owner-refresh", "#owner-cancel", "#owner-csv"):
            box = page.locator(control).first.bounding_box()
            assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= PHONE["width"] + 1, control
        snap(page, tmp_path, "console-phone")


def test_the_owner_sees_each_bookings_tables_and_moves_one_to_another_table(tmp_path: Path) -> None:
    config_path = seating_config(tmp_path)
    config = load_config(config_path)
    store = ReservationStore(tmp_path / "reservations.db")
    day = bookable_day(config)
    at_seven = {"date": dt.date.fromisoformat(day), "time": dt.time(19, 0), "party_size": 2}
    now = dt.datetime.now(dt.UTC)
    pair = store.book(Reservation("Pair", **at_seven), config, now)
    store.book(Reservation("Counter pair", seating="counter", **at_seven), config, now)
    env = {**app_env(tmp_path, None, KEY), "OWNER_PASSWORD": PASSWORD, "RESTAURANT_CONFIG": str(config_path)}
    with (
        sync_playwright() as playwright,
        AppProcess(APP, tmp_path, env) as app,
        chromium_session(playwright, silence_wav(tmp_path / "quiet.wav", 5), tmp_path) as page,
    ):
        open_app(page, app.url)
        open_console(page, PASSWORD)
        show_bookings_from(page, day)
        rows = wait_for_rows(page, "owner-bookings", lambda rows: len(rows) == 2, "the two bookings")
        assert {r["お名前 / Name"]: r["席 / Tables"] for r in rows} == {"Pair": "T1", "Counter pair": "C1"}
        assert "table: T1, T2, T3; counter: C1, C2" in page.inner_text("#owner-selected")

        select_booking(page, "Pair", pair)
        tables = page.locator("#owner-tables textarea, #owner-tables input").first
        assert tables.input_value() == "T1"
        tables.fill("C1")  # taken by the counter pair: refused, nothing moves
        page.click("#owner-move")
        page.wait_for_function(
            "() => document.querySelector('#owner-result')?.innerText.includes('cannot take that booking')",
            timeout=15_000,
        )
        tables.fill("T3")
        page.click("#owner-move")
        rows = wait_for_rows(
            page, "owner-bookings", lambda rows: any(r["席 / Tables"] == "T3 📌" for r in rows), "the moved booking"
        )
        assert f"{pair} moved to T3" in page.inner_text("#owner-result")
        snap(page, tmp_path, "console-tables")
        no_traceback(page)
    assert (store.get(pair)["tables"], store.get(pair)["tables_pinned"]) == ("T3", 1)
