"""Bookings as an iCalendar file (`.ics`), made with `icalendar`: a guest's confirmation to keep, or the owner's
export of the day's book.

Each event carries the restaurant's name, address and time zone (with its VTIMEZONE, so any calendar shows
the right local time), the booking number in its title and a stable UID, so importing an updated file moves
the event instead of adding a second one. A cancelled booking is exported as a cancelled event.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from typing import Any

from icalendar import Calendar, Event

from components.restaurant.config import RestaurantConfig

_WORDS = {
    "ja": {"guests": "{n}名", "booking": "予約番号", "name": "お名前", "requests": "ご要望", "title": "ご予約"},
    "en": {"guests": "{n} guests", "booking": "Booking", "name": "Name", "requests": "Requests", "title": "Booking"},
}


def bookings_calendar(bookings: Iterable[Mapping[str, Any]], config: RestaurantConfig, language: str) -> bytes:
    """The bookings (rows with booking_id, guest_name, date, time, party_size, requests, status) as one calendar."""
    words = _WORDS["en" if language == "en" else "ja"]
    calendar = Calendar()
    calendar.add("prodid", "-//reservation-voicebot//EN")
    calendar.add("version", "2.0")
    calendar.add("calscale", "GREGORIAN")
    calendar.add("x-wr-calname", f"{config.name(language)} {words['title']}")
    calendar.add("x-wr-timezone", config.timezone)
    stamp = dt.datetime.now(dt.UTC)
    for booking in bookings:
        calendar.add_component(_event(booking, config, language, words, stamp))
    calendar.add_missing_timezones()
    return calendar.to_ical()


def _event(
    booking: Mapping[str, Any], config: RestaurantConfig, language: str, words: dict[str, str], stamp: dt.datetime
) -> Event:
    start = dt.datetime.combine(
        dt.date.fromisoformat(booking["date"]), dt.time.fromisoformat(booking["time"]), tzinfo=config.tz
    )
    guests = words["guests"].format(n=booking["party_size"])
    details = [f"{words['booking']}: {booking['booking_id']}", f"{words['name']}: {booking['guest_name']}", guests]
    if booking.get("requests"):
        details.append(f"{words['requests']}: {booking['requests']}")
    if config.phone:
        details.append(config.phone)
    event = Event()
    event.add("uid", f"{booking['booking_id']}@{config.booking_id_prefix.lower()}.reservation-voicebot")
    event.add("dtstamp", stamp)
    event.add("dtstart", start)
    event.add("dtend", start + dt.timedelta(minutes=config.table_minutes))
    event.add("summary", f"{config.name(language)} · {guests} ({booking['booking_id']})")
    event.add("description", "\n".join(details))
    if config.address.get(language):
        event.add("location", config.address.get(language))
    event.add("status", "CANCELLED" if booking.get("status") == "cancelled" else "CONFIRMED")
    return event
