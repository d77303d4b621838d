"""What a caller did across calls (lookup misses, bookings, callback requests), and the phone calls answered.

A limit that lives in one call is reset by hanging up and calling again, so these counts live in the booking
database: every call and every replica sees the same ones, and a restart does not forget them. A caller is
`tel:<number>` on the phone and the page's visitor (`ip:<address>` or `hf:<user>`) in a browser. Counting and
adding are one write transaction under a lock of their own, so two calls of one caller cannot both take the last
one. Rows older than `KEEP` are deleted as new ones come in: the table stays the size of two days.

`first_answer` remembers each Twilio `CallSid` answered, so a replayed (still validly signed) webhook gets no line.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

from sqlalchemy import delete, func, select
from sqlalchemy.exc import IntegrityError

from components.store.database import Database
from components.store.schema import phone_calls, tally, utc_stamp

TALLY_LOCK = 2  # second key of the advisory lock tallies take (0 and 1 are the migrations' and the usage's)
KEEP = dt.timedelta(days=2)
KEEP_CALLS = dt.timedelta(days=7)  # Twilio retries a webhook for minutes; a week is far past any replay window


class Tally:
    """Counts per kind and caller over a window (see the module docstring)."""

    def __init__(self, db: Database, ready: Callable[[], None]) -> None:
        self.db = db
        self._ready = ready

    def count(self, kind: str, who: str, since: dt.datetime) -> int:
        self._ready()
        query = select(func.count()).where(tally.c.kind == kind, tally.c.who == who, tally.c.at > utc_stamp(since))
        with self.db.read() as connection:
            return int(connection.execute(query).scalar_one())

    def take(self, kind: str, who: str, now: dt.datetime, *, since: dt.datetime, limit: int | None) -> bool:
        """Count one more `kind` for `who` at `now` unless `limit` were already counted since `since` (None: no
        limit); whether it was counted."""
        self._ready()
        with self.db.write(lock=TALLY_LOCK) as connection:
            if limit is not None:
                query = select(func.count()).where(
                    tally.c.kind == kind, tally.c.who == who, tally.c.at > utc_stamp(since)
                )
                if int(connection.execute(query).scalar_one()) >= limit:
                    return False
            connection.execute(delete(tally).where(tally.c.kind == kind, tally.c.at < utc_stamp(now - KEEP)))
            connection.execute(tally.insert().values(kind=kind, who=who[:128], at=utc_stamp(now)))
            return True

    def first_answer(self, call_sid: str, now: dt.datetime) -> bool:
        """Whether the phone call `call_sid` is answered for the first time (remembering it); False for a replay."""
        self._ready()
        try:
            with self.db.write(lock=TALLY_LOCK) as connection:
                connection.execute(delete(phone_calls).where(phone_calls.c.at < utc_stamp(now - KEEP_CALLS)))
                connection.execute(phone_calls.insert().values(call_sid=call_sid, at=utc_stamp(now)))
        except IntegrityError:
            return False
        return True
