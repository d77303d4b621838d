"""Who may open the owner's console, and what its tables and exports hold."""

from __future__ import annotations

import csv
import datetime as dt
import io
from types import SimpleNamespace

import pytest

from components.console.access import FEED_TOKEN_S, OwnerAccess, SignIn
from components.console.views import bookings_csv, bookings_frame, load_frame
from components.restaurant.config import load_config
from components.settings import Settings

CONFIG = load_config()


def hf_request(username: str | None) -> SimpleNamespace:
    """A `gr.Request` as Gradio hands it over once its OAuth put a Hugging Face user in the session."""
    userinfo = {"preferred_username": username} if username else {}
    return SimpleNamespace(session={"oauth_info": {"userinfo": userinfo}} if username else {})


class Clocks:
    """The monotonic and wall clocks `OwnerAccess` reads, moved by hand."""

    def __init__(self) -> None:
        self.now = 0.0

    def mono(self) -> float:
        return self.now

    def wall(self) -> float:
        return 1_800_000_000.0 + self.now


def test_the_password_opens_a_session_and_wrong_ones_make_only_their_address_wait() -> None:
    clocks = Clocks()
    access = OwnerAccess(password="s3cret", clock=clocks.mono, wall=clocks.wall)
    assert access.sign_in("a", "203.0.113.9") == SignIn()  # wrong: checked, no session
    assert access.sign_in("s3cret", "203.0.113.9").retry_in_s == pytest.approx(1.0)  # too soon: not even checked
    clocks.now += 1.0
    assert access.sign_in("b", "203.0.113.9") == SignIn()
    assert access.sign_in("c", "203.0.113.9").retry_in_s == pytest.approx(2.0)  # the wait doubles
    signed = access.sign_in("s3cret", "198.51.100.7")  # the owner, elsewhere, is not kept waiting
    assert signed.retry_in_s == 0 and access.owner(signed.token) == "password"
    access.sign_out(signed.token)
    assert access.owner(signed.token) is None and access.owner("made-up") is None


def test_wrong_passwords_are_forgotten_and_the_wait_is_capped() -> None:
    clocks = Clocks()
    access = OwnerAccess(password="s3cret", clock=clocks.mono, wall=clocks.wall)
    waits = []
    for _ in range(12):
        assert access.sign_in("guess", "203.0.113.9").token is None
        waits.append(access.sign_in("guess", "203.0.113.9").retry_in_s)
        clocks.now += waits[-1]
    assert waits[:3] == pytest.approx([1.0, 2.0, 4.0]) and max(waits) == pytest.approx(300.0)
    clocks.now += 900.0  # fifteen quiet minutes: the failures decay
    assert access.sign_in("s3cret", "203.0.113.9").token is not None


def test_the_password_as_a_whole_is_checked_at_most_sixty_times_a_minute() -> None:
    clocks = Clocks()
    access = OwnerAccess(password="s3cret", clock=clocks.mono, wall=clocks.wall)
    for n in range(60):  # sixty addresses, one guess each
        assert access.sign_in("guess", f"198.51.100.{n}") == SignIn()
    refused = access.sign_in("s3cret", "203.0.113.9")
    assert refused.token is None and 0 < refused.retry_in_s <= 60
    clocks.now += 60.0
    assert access.sign_in("s3cret", "203.0.113.9").token is not None


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


def test_the_feed_token_is_signed_with_the_credential_and_expires() -> None:
    clocks = Clocks()
    one = OwnerAccess(password="s3cret", clock=clocks.mono, wall=clocks.wall)
    same = OwnerAccess(password="s3cret", clock=clocks.mono, wall=clocks.wall)
    other = OwnerAccess(password="other", clock=clocks.mono, wall=clocks.wall)
    token = one.feed_token()
    assert token == same.feed_token() != other.feed_token()  # the same on every replica
    assert "s3cret" not in token and same.opens_feed(token)
    assert not other.opens_feed(token) and not one.opens_feed(None) and not one.opens_feed(token + "0")
    expires, _, signature = token.partition(".")
    assert not one.opens_feed(f"{int(expires) + 3600}.{signature}")  # a later expiry is not signed
    clocks.now += FEED_TOKEN_S + 1
    assert not one.opens_feed(token)  # expired
    assert OwnerAccess().feed_token() is None and not OwnerAccess().opens_feed("")


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


def test_the_days_load_shows_each_area_with_tables_pushed_together_counted_each(tmp_path) -> None:
    from tests.domain_fixtures import seating_config

    config = load_config(seating_config(tmp_path))
    rows = [
        {**ROWS[1], "tables": "T1+T2"},  # four at 19:00 on two two-tops
        {**ROWS[0], "tables": "C1"},  # two at 18:00 at the counter, whose stay is 90 minutes
    ]
    frame = load_frame(rows, dt.date(2026, 4, 21), config)
    at = frame.set_index(["series", "time"])["tables"]
    table, counter = "テーブル席（使用中） / table in use", "カウンター（使用中） / counter in use"
    assert at[(table, dt.datetime(2026, 4, 21, 19, 30))] == 2
    assert at[(counter, dt.datetime(2026, 4, 21, 19, 0))] == 1 and at[(counter, dt.datetime(2026, 4, 21, 19, 30))] == 0
    assert set(frame[frame["series"] == "席数 / Tables"]["tables"]) == {5}
    assert list(bookings_frame(rows, config, show_phone=False)["席 / Tables"]) == ["T1+T2", "C1"]


def test_a_waitlist_entry_whose_slot_has_begun_shows_as_expired() -> None:
    from components.console.views import waitlist_frame

    entries = [
        {"date": "2026-04-21", "time": "19:00", "party_size": 2, "guest_name": "Ito", "phone": "09033334444",
         "status": "waiting", "notified_at": None, "freed_by": None},
        {"date": "2026-04-21", "time": "21:00", "party_size": 2, "guest_name": "Mori", "phone": "09011112222",
         "status": "waiting", "notified_at": None, "freed_by": None},
    ]  # fmt: skip
    at_eight = dt.datetime(2026, 4, 21, 20, 0, tzinfo=CONFIG.tz)
    frame = waitlist_frame(entries, CONFIG, show_phone=False, now=at_eight)
    assert list(frame["状態 / Status"]) == ["expired", "waiting"]


def test_the_csv_opens_in_excel_with_japanese_names() -> None:
    data = bookings_csv(ROWS, show_phone=False)
    assert data.startswith(b"\xef\xbb\xbf")
    rows = list(csv.DictReader(io.StringIO(data.decode("utf-8-sig"))))
    assert [row["guest_name"] for row in rows] == ["山田", "Smith", "佐藤"]
    assert rows[0]["phone"] == "••••••••5678" and rows[2]["status"] == "cancelled"
