"""Helpers shared by the domain tests: fixed clocks, config variants, and a booking worker for race tests.

Plain functions rather than pytest fixtures, so spawned worker processes can
import this module without pytest and test modules need no conftest.
"""

from __future__ import annotations

import datetime as dt
import sqlite3
from pathlib import Path
from zoneinfo import ZoneInfo

import psycopg

from components.restaurant.book import BookingRefused
from components.restaurant.config import DEFAULT_CONFIG_PATH, RestaurantConfig, load_config
from components.restaurant.fields import Reservation
from components.restaurant.session import ReservationSession
from components.store.reservations import ReservationStore

JST = ZoneInfo("Asia/Tokyo")
ID_PATTERN = r"^AS-[A-Z2-9]{3}-[A-Z2-9]{3}$"


def jst(year: int, month: int, day: int, hour: int = 12, minute: int = 0) -> dt.datetime:
    """An aware datetime on the restaurant's wall clock."""
    return dt.datetime(year, month, day, hour, minute, tzinfo=JST)


def bookable_day(config: RestaurantConfig, days_ahead: int = 7) -> str:
    """A date a week or so ahead that is not in a closed period, in the restaurant's time zone."""
    day = dt.datetime.now(config.tz).date() + dt.timedelta(days=days_ahead)
    while any(period.contains(day) for period in config.closed_periods) or day.weekday() in config.closed_weekdays:
        day += dt.timedelta(days=1)
    return day.isoformat()


def write_config(directory: Path, replacements: dict[str, str]) -> Path:
    """A copy of the shipped config with exact text replacements, as an owner would edit it."""
    text = DEFAULT_CONFIG_PATH.read_text(encoding="utf-8")
    for old, new in replacements.items():
        assert old in text, f"{old!r} not in the shipped config"
        text = text.replace(old, new)
    path = directory / "restaurant.toml"
    path.write_text(text, encoding="utf-8")
    return path


# A restaurant with real seating: two two-tops that push together, a four-top, a counter with a shorter stay,
# and parties of five to ten for the owner (the shipped example, switched on).
SEATING = """[[area]]
id = "table"
name.ja = "テーブル席"
name.en = "table"
tables = [{ id = "T1", seats = 2 }, { id = "T2", seats = 2 }, { id = "T3", seats = 4, min = 2 }]
combine = [["T1", "T2"]]

[[area]]
id = "counter"
name.ja = "カウンター"
name.en = "counter"
table_minutes = 90
tables = [{ id = "C1", seats = 2 }, { id = "C2", seats = 2 }]

[facts]"""


def seating_config(directory: Path) -> Path:
    """The shipped config with areas instead of `tables = 6`, as an owner would switch them on."""
    return write_config(
        directory, {"tables = 6\n": "", "\n[facts]": "\n" + SEATING, "# large_party_max = 10": "large_party_max = 10"}
    )


def count(store: ReservationStore, status: str | None = None) -> int:
    """How many bookings the store holds (of one `status`), whatever their date."""
    return len(store.bookings_from(dt.date.min, status=status, limit=1_000_000))


def make_session(
    directory: Path, now: dt.datetime, language: str = "ja", config: RestaurantConfig | None = None
) -> ReservationSession:
    store = ReservationStore(directory / "reservations.db")
    return ReservationSession(config or load_config(DEFAULT_CONFIG_PATH), store, language, clock=lambda: now)


def booking(day: dt.date, hour: int, minute: int = 0, name: str = "Guest", party_size: int = 2) -> Reservation:
    return Reservation(guest_name=name, date=day, time=dt.time(hour, minute), party_size=party_size)


def race_to_book(db: str, config_path: str, now: dt.datetime, slot: Reservation, barrier, results) -> None:
    """Wait for every racer, then try to book ``slot``; put ``("ok", id)`` or ``("refused", codes)`` on ``results``.

    Runs in a thread or in a spawned process, so it builds its own store (``db`` is a SQLite path or a database
    URL) and config.
    """
    store, config = ReservationStore(db), load_config(config_path)
    barrier.wait(timeout=120)
    try:
        results.put(("ok", store.book(slot, config, now)))
    except BookingRefused as refusal:
        results.put(("refused", sorted(problem.code.value for problem in refusal.problems)))


# The schema the first release created, word for word (SQLite), and the same table on PostgreSQL.
FIRST_RELEASE_SQLITE = (
    """
    CREATE TABLE IF NOT EXISTS reservations (
        id          INTEGER PRIMARY KEY AUTOINCREMENT,
        booking_id  TEXT    NOT NULL UNIQUE,
        guest_name  TEXT    NOT NULL,
        date        TEXT    NOT NULL,            -- YYYY-MM-DD, restaurant-local
        time        TEXT    NOT NULL,            -- HH:MM, restaurant-local
        party_size  INTEGER NOT NULL CHECK (party_size > 0),
        requests    TEXT,
        language    TEXT    NOT NULL,
        created_at  TEXT    NOT NULL             -- ISO 8601, UTC
    )
    """,
    "CREATE INDEX IF NOT EXISTS reservations_by_slot ON reservations (date, time)",
)
FIRST_RELEASE_ROWS = [
    ("AS-7K3Q", "山田 太郎", "2026-04-21", "19:00", 4, "窓際の席", "ja", "2026-04-01T03:00:00+00:00"),
    ("AS-M2X9", "Smith", "2026-04-21", "19:00", 2, None, "en", "2026-04-02T10:30:00+00:00"),
    ("AS-PQ4R", "佐藤", "2026-04-22", "12:15", 1, "誕生日", "ja", "2026-04-03T01:00:00+00:00"),
]


def first_release_database(location: str, rows: list[tuple] = FIRST_RELEASE_ROWS) -> None:
    """A database as the first release left it: its schema, no version table, and `rows`."""
    columns = "booking_id, guest_name, date, time, party_size, requests, language, created_at"
    if "://" not in location:
        with sqlite3.connect(location) as connection:
            connection.execute("PRAGMA journal_mode = WAL")
            for statement in FIRST_RELEASE_SQLITE:
                connection.execute(statement)
            connection.executemany(f"INSERT INTO reservations ({columns}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)", rows)
        return
    with psycopg.connect(location, autocommit=True) as connection:
        connection.execute(FIRST_RELEASE_SQLITE[0].replace("INTEGER PRIMARY KEY AUTOINCREMENT", "SERIAL PRIMARY KEY"))
        connection.execute(FIRST_RELEASE_SQLITE[1])
        for row in rows:
            connection.execute(f"INSERT INTO reservations ({columns}) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)", row)
