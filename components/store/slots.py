"""The bookings that compete for tables with one on a given day: read inside a write transaction by the booking
book and the waitlist alike (a stay may run past midnight, so the days around it count too)."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import Connection, select

from components.restaurant.book import CONFIRMED
from components.restaurant.seating import Seated
from components.store.schema import reservations

ONE_DAY = dt.timedelta(days=1)
_COLUMNS = ("booking_id", "date", "time", "party_size", "tables", "seating", "tables_pinned")


def around(day: dt.date | None) -> set[dt.date]:
    """The dates whose bookings can share a table with one on ``day``: a stay may run past midnight."""
    return set() if day is None else {day - ONE_DAY, day, day + ONE_DAY}


def seated(connection: Connection, first: dt.date, last: dt.date, exclude: str | None = None) -> list[Seated]:
    """The confirmed bookings dated ``first`` to ``last``, but ``exclude`` (a booking being changed does not
    compete with itself), as the seating sees them."""
    query = select(*(reservations.c[name] for name in _COLUMNS)).where(
        reservations.c.status == CONFIRMED,
        reservations.c.date >= first.isoformat(),
        reservations.c.date <= last.isoformat(),
    )
    if exclude:
        query = query.where(reservations.c.booking_id != exclude)
    return [
        Seated(
            start=dt.datetime.fromisoformat(f"{row.date}T{row.time}"),
            party=row.party_size,
            tables=tuple(row.tables.split("+")) if row.tables else (),
            area=row.seating,
            pinned=bool(row.tables_pinned),
            booking_id=row.booking_id,
        )
        for row in connection.execute(query)
    ]
