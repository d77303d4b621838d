"""Helpers shared by the domain tests: fixed clocks, config variants, and a booking worker for race tests.

Plain functions rather than pytest fixtures, so spawned worker processes can
import this module without pytest and test modules need no conftest.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from zoneinfo import ZoneInfo

from components.restaurant.config import DEFAULT_CONFIG_PATH, RestaurantConfig, load_config
from components.restaurant.fields import Reservation
from components.restaurant.session import ReservationSession
from components.restaurant.store import BookingRefused, ReservationStore

JST = ZoneInfo("Asia/Tokyo")
ID_PATTERN = r"^AS-[A-Z2-9]{4}$"


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


def make_session(
    directory: Path, now: dt.datetime, language: str = "ja", config: RestaurantConfig | None = None
) -> ReservationSession:
    store = ReservationStore(directory / "reservations.db")
    return ReservationSession(config or load_config(DEFAULT_CONFIG_PATH), store, language, clock=lambda: now)


def booking(day: dt.date, hour: int, minute: int = 0, name: str = "Guest", party_size: int = 2) -> Reservation:
    return Reservation(guest_name=name, date=day, time=dt.time(hour, minute), party_size=party_size)


def race_to_book(db_path: str, config_path: str, now: dt.datetime, slot: Reservation, barrier, results) -> None:
    """Wait for every racer, then try to book ``slot``; put ``("ok", id)`` or ``("refused", codes)`` on ``results``.

    Runs in a thread or in a spawned process, so it builds its own store and config.
    """
    store, config = ReservationStore(db_path), load_config(config_path)
    barrier.wait(timeout=120)
    try:
        results.put(("ok", store.book(slot, config, now)))
    except BookingRefused as refusal:
        results.put(("refused", sorted(problem.code.value for problem in refusal.problems)))
