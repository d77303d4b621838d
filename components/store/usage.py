"""What the owner's OpenAI key has been spent on: one row per call made on it, for the demo's allowances.

Kept in the booking database, so a restart does not reset the counts and every replica sees the same ones.
Admitting a call checks the visitor's calls of the day and inserts the new one in one write transaction, under
a lock of its own, so two replicas cannot both let a visitor's last call through.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import func, select, update

from components.store.database import Database
from components.store.schema import call_usage, utc_stamp

USAGE_LOCK = 1  # second key of the advisory lock admissions take (0 is the migrations'; no date is day 1 AD)


@dataclass(frozen=True)
class DayUsage:
    """One day's calls on the owner's key: how many, for how long, at what estimated cost."""

    calls: int
    seconds: float
    cost_usd: float


class UsageLedger:
    """Calls on the owner's key, per restaurant day and visitor."""

    def __init__(self, db: Database, ready: Callable[[], None]) -> None:
        self.db = db
        self._ready = ready

    def admit(
        self, call_id: str, *, day: dt.date, visitor: str, engine: str, now: dt.datetime, per_visitor: int | None
    ) -> bool:
        """Record a new call, unless `visitor` has already made `per_visitor` calls on `day`."""
        self._ready()
        with self.db.write(lock=USAGE_LOCK) as connection:
            if per_visitor is not None:
                made = connection.execute(
                    select(func.count())
                    .select_from(call_usage)
                    .where(call_usage.c.day == day.isoformat(), call_usage.c.visitor == visitor)
                ).scalar()
                if int(made or 0) >= per_visitor:
                    return False
            connection.execute(
                call_usage.insert().values(
                    call_id=call_id,
                    day=day.isoformat(),
                    visitor=visitor[:128],
                    engine=engine,
                    started_at=utc_stamp(now),
                    seconds=0.0,
                    cost_usd=0.0,
                )
            )
        return True

    def record(self, call_id: str, *, seconds: float, cost_usd: float, close_reason: str | None = None) -> None:
        """How long the call has lasted so far and its estimated cost (called as it goes), and at its end why it
        ended."""
        self._ready()
        values = {"seconds": round(seconds, 1), "cost_usd": round(cost_usd, 6)}
        if close_reason is not None:
            values["close_reason"] = close_reason[:16]
        with self.db.write() as connection:
            connection.execute(update(call_usage).where(call_usage.c.call_id == call_id).values(**values))

    def day(self, day: dt.date) -> DayUsage:
        self._ready()
        total = func.coalesce(func.sum(call_usage.c.seconds), 0), func.coalesce(func.sum(call_usage.c.cost_usd), 0)
        query = select(func.count(), *total)
        with self.db.read() as connection:
            calls, seconds, cost = connection.execute(query.where(call_usage.c.day == day.isoformat())).one()
        return DayUsage(int(calls), float(seconds), float(cost))

    def visitor_calls(self, day: dt.date, visitor: str) -> int:
        self._ready()
        query = select(func.count()).select_from(call_usage)
        with self.db.read() as connection:
            return int(
                connection.execute(
                    query.where(call_usage.c.day == day.isoformat(), call_usage.c.visitor == visitor)
                ).scalar()
                or 0
            )
