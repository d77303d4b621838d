"""The waitlist: guests who wanted a full slot, and the first of them told when a table frees up there.

A guest joins for the date, time and party size they asked for. When a booking on that date is cancelled or moved,
`notify_freed` looks, inside one write transaction under the same date locks as bookings (so two replicas never
tell two guests about one table), for the oldest waiting entry whose slot the rules now accept, and marks it
notified: the owner's console shows it, and the phone line may text the guest. An entry whose slot has passed is
simply no longer offered anything; the console lists entries from today on.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

from sqlalchemy import select, update

from components.restaurant.config import RestaurantConfig
from components.restaurant.fields import Reservation
from components.restaurant.rules import validate_reservation
from components.store.audit import record
from components.store.database import Database
from components.store.schema import utc_stamp, waitlist
from components.store.slots import ONE_DAY, around, seated

WAITING, NOTIFIED = "waiting", "notified"


class WaitList:
    """Waiting guests per slot (see the module docstring)."""

    def __init__(self, db: Database, ready: Callable[[], None]) -> None:
        self.db = db
        self._ready = ready

    def join(self, reservation: Reservation, now: dt.datetime, *, phone: str, language: str, source: str) -> int:
        """Put a complete draft (name, date, time, party) on the waitlist; the entry's number."""
        self._ready()
        assert reservation.date and reservation.time and reservation.party_size and reservation.guest_name
        with self.db.write() as connection:
            created = connection.execute(
                waitlist.insert().values(
                    created_at=utc_stamp(now),
                    date=reservation.date.isoformat(),
                    time=reservation.time.strftime("%H:%M"),
                    party_size=reservation.party_size,
                    guest_name=reservation.guest_name,
                    phone=phone,
                    language=language,
                    source=source,
                    status=WAITING,
                )
            )
            entry = int(created.inserted_primary_key[0])
            record(connection, now, f"agent:{source}", "waitlisted", None, {"waitlist": entry})
        return entry

    def listed(self, first: dt.date, limit: int = 200) -> list[dict[str, Any]]:
        """Entries for slots from `first` on, soonest first."""
        self._ready()
        query = (
            select(waitlist)
            .where(waitlist.c.date >= first.isoformat())
            .order_by(waitlist.c.date, waitlist.c.time, waitlist.c.id)
            .limit(limit)
        )
        with self.db.read() as connection:
            return [dict(row._mapping) for row in connection.execute(query)]

    def notify_freed(
        self, day: dt.date, config: RestaurantConfig, now: dt.datetime, *, freed_by: str
    ) -> dict[str, Any] | None:
        """After a booking on `day` was cancelled or moved: the oldest waiting entry on `day` that now fits, marked
        notified (None if none fits)."""
        self._ready()
        with self.db.write(around(day)) as connection:
            existing = seated(connection, day - ONE_DAY, day + ONE_DAY)
            query = (
                select(waitlist)
                .where(waitlist.c.date == day.isoformat(), waitlist.c.status == WAITING)
                .order_by(waitlist.c.id)
            )
            for row in connection.execute(query).mappings().all():
                wanted = Reservation(
                    guest_name=row["guest_name"],
                    date=day,
                    time=dt.time.fromisoformat(row["time"]),
                    party_size=row["party_size"],
                )
                if validate_reservation(wanted, config, now, existing):
                    continue  # still full for them, or their slot has passed
                connection.execute(
                    update(waitlist)
                    .where(waitlist.c.id == row["id"])
                    .values(status=NOTIFIED, notified_at=utc_stamp(now), freed_by=freed_by)
                )
                record(connection, now, "system", "waitlist_notified", freed_by, {"waitlist": row["id"]})
                return {**row, "status": NOTIFIED, "notified_at": utc_stamp(now), "freed_by": freed_by}
        return None
