"""Who may open the owner's console, and what its tables and exports hold."""

from __future__ import annotations

import asyncio
import csv
import datetime as dt
import io
import time
from types import SimpleNamespace

import pytest

from components.console.access import OwnerAccess
from components.console.views import bookings_csv, bookings_frame, load_frame
from components.restaurant.config import load_config
from components.settings import Settings
from components.web.visitor import client_address

CONFIG = load_config()


def hf_request(username: str | None) -> SimpleNamespace:
    """A `gr.Request` as Gradio hands it over once its OAuth put a Hugging Face user in the session."""
    userinfo = {"preferred_username": username} if username else {}
    return SimpleNamespace(session={"oauth_info": {"userinfo": userinfo}} if username else {})


def test_the_password_opens_a_session_and_wrong_ones_slow_down_each_address() -> None:
    access = OwnerAccess(password="s3cret")

    async def attempts() -> tuple[list[float], str | None, float]:
        waits = []
        for guess in ("a", "b", "c"):
            started = time.monotonic()
            assert await access.sign_in(guess, "203.0.113.9") is None
            waits.append(time.monotonic() - started)
        started = time.monotonic()
        other = await access.sign_in("s3cret", "198.51.100.7")  # another address is not held up
        return waits, other, time.monotonic() - started

    waits, token, other_wait = asyncio.run(attempts())
    assert waits[0] < 0.2 and 0.4 < waits[1] < 0.8 and 0.9 < waits[2] < 1.5  # 0, 0.5 s, 1 s
    assert other_wait < 0.2
    assert access.owner(token) == "password"
    access.sign_out(token)
    assert access.owner(token) is None and access.owner("made-up") is None


def test_hugging_face_users_are_let_in_only_when_oauth_is_on_and_they_are_listed() -> None:
    access = OwnerAccess(users=frozenset({"alice", "carol"}), oauth=True)
    assert access.configured
    assert access.owner(None, hf_request("Alice")) == "Alice"
    assert access.owner(None, hf_request("bob")) is None
    assert access.owner(None, hf_request(None)) is None
    assert OwnerAccess(users=frozenset({"alice"}), oauth=False).owner(None, hf_request("alice")) is None
    assert not OwnerAccess().configured


def test_the_space_owner_and_owner_users_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SPACE_AUTHOR_NAME", "Alice")
    monkeypatch.setenv("OWNER_USERS", " carol, Dave ,")
    monkeypatch.setenv("OWNER_PASSWORD", "pw")
    monkeypatch.delenv("OAUTH_CLIENT_ID", raising=False)
    access = OwnerAccess.from_settings(Settings.load())
    assert access.users == {"alice", "carol", "dave"} and not access.oauth and access.password == "pw"
    assert "pw" not in repr(access)


def test_the_feed_token_is_derived_from_the_credential_and_checked_in_constant_time() -> None:
    one, same, other = OwnerAccess(password="a"), OwnerAccess(password="a"), OwnerAccess(password="b")
    assert one.feed_token() == same.feed_token() != other.feed_token()  # the same on every replica
    assert "a" != one.feed_token() and len(one.feed_token()) == 64
    assert one.opens_feed(one.feed_token()) and not one.opens_feed(other.feed_token()) and not one.opens_feed(None)
    assert OwnerAccess().feed_token() is None and not OwnerAccess().opens_feed("")


def test_a_visitor_is_known_by_the_first_forwarded_address_on_a_space(monkeypatch: pytest.MonkeyPatch) -> None:
    request = SimpleNamespace(
        headers={"x-forwarded-for": "203.0.113.9, 10.0.0.1"}, client=SimpleNamespace(host="10.0.0.1")
    )
    monkeypatch.delenv("SPACE_ID", raising=False)
    assert client_address(request, Settings.load().on_space) == "10.0.0.1"  # off a Space, anyone's claim
    monkeypatch.setenv("SPACE_ID", "owner/voicebot")
    assert client_address(request, Settings.load().on_space) == "203.0.113.9"


ROWS = [
    {"booking_id": "AS-2222", "guest_name": "山田", "date": "2026-04-21", "time": "18:00", "party_size": 2,
     "requests": "窓際", "phone": "+819012345678", "source": "phone", "status": "confirmed",
     "created_at": "2026-04-20T00:00:00+00:00"},
    {"booking_id": "AS-3333", "guest_name": "Smith", "date": "2026-04-21", "time": "19:00", "party_size": 4,
     "requests": None, "phone": None, "source": "web", "status": "confirmed",
     "created_at": "2026-04-20T01:30:00+00:00"},
    {"booking_id": "AS-4444", "guest_name": "佐藤", "date": "2026-04-21", "time": "19:00", "party_size": 2,
     "requests": None, "phone": None, "source": "web", "status": "cancelled",
     "created_at": "2026-04-20T02:00:00+00:00"},
]  # fmt: skip


def test_the_bookings_table_masks_numbers_and_shows_the_restaurants_clock() -> None:
    masked = bookings_frame(ROWS, CONFIG, show_phone=False)
    assert list(masked["電話 / Phone"]) == ["••••••••5678", "", ""]
    assert list(masked["受付 / Made"]) == ["2026-04-20 09:00", "2026-04-20 10:30", "2026-04-20 11:00"]  # JST
    assert list(bookings_frame(ROWS, CONFIG, show_phone=True)["電話 / Phone"])[0] == "+819012345678"


def test_the_days_load_counts_tables_in_use_at_each_step_and_ignores_cancellations() -> None:
    frame = load_frame(ROWS, dt.date(2026, 4, 21), CONFIG)
    in_use = frame[frame["series"].str.contains("in use")].set_index("time")["tables"]
    tables = frame[frame["series"].str.contains("席数")]["tables"]
    assert in_use[dt.datetime(2026, 4, 21, 17, 45)] == 0
    assert in_use[dt.datetime(2026, 4, 21, 18, 0)] == 1
    assert in_use[dt.datetime(2026, 4, 21, 19, 30)] == 2  # 18:00 and 19:00 (the cancelled one is free)
    assert in_use[dt.datetime(2026, 4, 21, 20, 0)] == 1
    assert set(tables) == {CONFIG.tables}
    assert in_use.index[0] == dt.datetime(2026, 4, 21, 11, 0) and in_use.index[-1] == dt.datetime(2026, 4, 21, 22, 0)
    assert load_frame(ROWS, dt.date(2026, 12, 31), CONFIG).empty  # closed


def test_the_csv_opens_in_excel_with_japanese_names() -> None:
    data = bookings_csv(ROWS, show_phone=False)
    assert data.startswith(b"\xef\xbb\xbf")
    rows = list(csv.DictReader(io.StringIO(data.decode("utf-8-sig"))))
    assert [row["guest_name"] for row in rows] == ["山田", "Smith", "佐藤"]
    assert rows[0]["phone"] == "••••••••5678" and rows[2]["status"] == "cancelled"
