"""Callback requests: a guest the agent could not help (a party too large, a question the restaurant's facts
do not answer) leaves a name, a number and what they wanted, for the staff to call back."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

from sqlalchemy import select, update

from components.store.audit import record
from components.store.database import Database
from components.store.schema import callbacks, utc_stamp

OPEN, DONE = "open", "done"


class CallbackBook:
    """The callback requests, newest first; each is open until someone at the restaurant marks it done."""

    def __init__(self, db: Database, ready: Callable[[], None]) -> None:
        self.db = db
        self._ready = ready

    def add(
        self, now: dt.datetime, *, guest_name: str | None, phone: str, request: str, language: str, source: str
    ) -> int:
        self._ready()
        with self.db.write() as connection:
            created = connection.execute(
                callbacks.insert().values(
                    created_at=utc_stamp(now),
                    guest_name=guest_name,
                    phone=phone,
                    request=request,
                    language=language,
                    source=source,
                    status=OPEN,
                )
            )
            callback_id = int(created.inserted_primary_key[0])
            record(connection, now, f"agent:{source}", "callback_requested", None, {"callback": callback_id})
        return callback_id

    def listed(self, status: str | None = None, limit: int = 200) -> list[dict[str, Any]]:
        self._ready()
        query = select(callbacks).order_by(callbacks.c.id.desc()).limit(limit)
        if status:
            query = query.where(callbacks.c.status == status)
        with self.db.read() as connection:
            return [dict(row._mapping) for row in connection.execute(query)]

    def mark_done(self, callback_id: int, now: dt.datetime, *, actor: str) -> bool:
        """Mark a request done; False if there is no such open request."""
        self._ready()
        with self.db.write() as connection:
            done = connection.execute(
                update(callbacks)
                .where(callbacks.c.id == int(callback_id), callbacks.c.status == OPEN)
                .values(status=DONE, done_at=utc_stamp(now), done_by=actor[:80])
            )
            if done.rowcount == 1:
                record(connection, now, actor, "callback_done", None, {"callback": int(callback_id)})
            return done.rowcount == 1
