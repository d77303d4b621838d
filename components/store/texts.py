"""The text messages sent about bookings, and the numbers that asked for none (a STOP reply).

Several replicas may try to send the same message (every replica runs the reminder round). `claim` inserts the
message's row under a unique key, so exactly one of them wins and sends it; the row then records how it went. A
claimed message is never sent again, even if sending failed: a guest gets a text at most once.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

from sqlalchemy import delete, select, update
from sqlalchemy.exc import IntegrityError

from components.restaurant.fields import phone_key
from components.store.database import Database
from components.store.schema import texts_opted_out, texts_sent, utc_stamp


class TextLog:
    """Which texts were sent (or are being sent), and who opted out."""

    def __init__(self, db: Database, ready: Callable[[], None]) -> None:
        self.db = db
        self._ready = ready

    def claim(self, booking_id: str, kind: str, now: dt.datetime) -> bool:
        """Take the sending of one message; False if it is someone else's (or was sent already)."""
        self._ready()
        try:
            with self.db.write() as connection:
                connection.execute(texts_sent.insert().values(booking_id=booking_id, kind=kind, at=utc_stamp(now)))
        except IntegrityError:
            return False
        return True

    def settle(self, booking_id: str, kind: str, status: str) -> None:
        self._ready()
        with self.db.write() as connection:
            connection.execute(
                update(texts_sent)
                .where(texts_sent.c.booking_id == booking_id, texts_sent.c.kind == kind)
                .values(status=status)
            )

    def sent(self, booking_id: str) -> list[tuple[str, str]]:
        """The messages about a booking: (kind, status), oldest first."""
        self._ready()
        query = select(texts_sent.c.kind, texts_sent.c.status).where(texts_sent.c.booking_id == booking_id)
        with self.db.read() as connection:
            return [(kind, status) for kind, status in connection.execute(query.order_by(texts_sent.c.id))]

    def opt_out(self, number: str, now: dt.datetime) -> None:
        key = phone_key(number)
        if not key:
            return
        self._ready()
        with self.db.write() as connection:
            if connection.execute(select(texts_opted_out.c.number).where(texts_opted_out.c.number == key)).first():
                return
            connection.execute(texts_opted_out.insert().values(number=key, at=utc_stamp(now)))

    def opt_in(self, number: str) -> None:
        self._ready()
        with self.db.write() as connection:
            connection.execute(delete(texts_opted_out).where(texts_opted_out.c.number == phone_key(number)))

    def opted_out(self, number: str) -> bool:
        self._ready()
        query = select(texts_opted_out.c.number).where(texts_opted_out.c.number == phone_key(number))
        with self.db.read() as connection:
            return connection.execute(query).first() is not None
