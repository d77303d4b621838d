"""The bookings that compete for tables with one on a given day: read inside a write transaction by the booking
book and the waitlist alike (a stay may run past midnight, so the days around it count too)."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import Connection, select

from components.restaurant.book import CONFIRMED
from components.store.schema import reservations

ONE_DAY = dt.timedelta(days=1)


def around(day: dt.date | None) -> set[dt.date]:
    """The dates whose bookings can share a table with one on ``day``: a stay may run past midnight."""
    return set() if day is None else {day - ONE_DAY, day, day + ONE_DAY}


def starts(connection: Connection, first: dt.date, last: dt.date, exclude: str | None = None) -> list[dt.datetime]:
    query = select(reservations.c.date, reservations.c.time).where(
        reservations.c.status == CONFIRMED,
        reservations.c.date >= first.isoformat(),
        reservations.c.date <= last.isoformat(),
    )
    if exclude:
        query = query.where(reservations.c.booking_id != exclude)
    return [dt.datetime.fromisoformat(f"{day}T{moment}") for day, moment in connection.execute(query)]
