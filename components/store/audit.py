"""The audit log: who changed which booking, when, and how. Written in the same transaction as the change."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable
from typing import Any

from sqlalchemy import Connection, select

from components.store.database import Database
from components.store.schema import audit_log, utc_stamp


def record(
    connection: Connection, now: dt.datetime, actor: str, action: str, booking_id: str | None, detail: Any
) -> None:
    """Add one entry inside the caller's transaction, so a change and its entry commit or vanish together."""
    connection.execute(
        audit_log.insert().values(
            at=utc_stamp(now),
            actor=actor[:80],
            action=action,
            booking_id=booking_id,
            detail=json.dumps(detail, ensure_ascii=False, default=str),
        )
    )


class AuditLog:
    """Reading the log (the owner's console); entries are written by the store's own writes."""

    def __init__(self, db: Database, ready: Callable[[], None]) -> None:
        self.db = db
        self._ready = ready

    def add(self, now: dt.datetime, actor: str, action: str, detail: Any = None) -> None:
        """An event that is not a booking's write (a hand-over to staff nobody answered)."""
        self._ready()
        with self.db.write() as connection:
            record(connection, now, actor, action, None, detail)

    def entries(self, limit: int = 200, booking_id: str | None = None) -> list[dict[str, Any]]:
        """The newest entries first."""
        self._ready()
        query = select(audit_log).order_by(audit_log.c.id.desc()).limit(limit)
        if booking_id:
            query = query.where(audit_log.c.booking_id == booking_id.strip().upper())
        with self.db.read() as connection:
            rows = [dict(row._mapping) for row in connection.execute(query)]
        for row in rows:
            row["detail"] = json.loads(row["detail"]) if row["detail"] else None
        return rows
