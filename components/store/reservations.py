"""The booking store: bookings, their changes and cancellations, each decided in one write transaction.

Several calls run at once (threads in one process, or several replicas on one PostgreSQL), and two of them
may race for the last table. `book`, `change` and `cancel` therefore take the write lock for the dates
concerned first (see `database`), then read the neighbouring bookings, re-run
`components.restaurant.rules.validate_reservation` and write, all before committing: the loser of a race
waits for the lock and then sees the winner's row. A booking being changed does not count against itself, a
cancelled one frees its table at once, and nothing is ever deleted. Every write is audited in the same
transaction. Callback requests (`callbacks`), the audit log (`audit`) and the calls made on the owner's key
(`usage`) share the database.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import secrets
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

from sqlalchemy import Connection, func, or_, select, update
from sqlalchemy.exc import DBAPIError, IntegrityError

from components.restaurant.book import CANCELLED, CONFIRMED, BookingRefused, StoreUnavailable
from components.restaurant.config import RestaurantConfig
from components.restaurant.fields import Reservation
from components.restaurant.problems import Code, Problem
from components.restaurant.rules import area_for, validate_reservation
from components.restaurant.seating import Seated, free_at, plan
from components.settings import Settings
from components.store.audit import AuditLog, record
from components.store.callbacks import CallbackBook
from components.store.database import MIGRATION_LOCK, SQLITE_BUSY_S, Database
from components.store.schema import migrate, reservations, utc_stamp
from components.store.slots import ONE_DAY, around, seated
from components.store.tally import Tally
from components.store.texts import TextLog
from components.store.usage import UsageLedger
from components.store.waitlist import WaitList

# Booking ids are read aloud over the phone: no 0/O, 1/I/L to confuse.
ID_ALPHABET = "23456789ABCDEFGHJKMNPQRSTUVWXYZ"
ID_LENGTH = 6  # 31^6, about 900 million: a guessed number is as good as none
_ID_ATTEMPTS = 50
_ROW = [column for column in reservations.c if column.name not in ("id", "transcript")]


def new_booking_id(prefix: str) -> str:
    """A random id like ``AS-7K3-QM2``: read aloud in two threes, random so ids reveal nothing about volume and
    cannot be guessed."""
    while True:
        text = "".join(secrets.choice(ID_ALPHABET) for _ in range(ID_LENGTH))
        if not text.startswith(prefix):  # said without its prefix, it still reads as itself (`booking_key`)
            return f"{prefix}-{text[:3]}-{text[3:]}"


class ReservationStore:
    """The scenario's `BookingBook`: bookings in one database (see `components.store.database`), whose schema is
    made on first use.

    `location` is a `postgresql://` URL or a SQLite path (default: see `database.default_location`); `on_space`
    says the app runs on a Space (whose own disk is wiped on restart). `booking_ids` makes the ids (a prefix in,
    an id out); by default random ones.
    """

    def __init__(
        self,
        location: str | os.PathLike | None = None,
        *,
        on_space: bool = False,
        booking_ids: Callable[[str], str] = new_booking_id,
    ) -> None:
        self.db = Database(location, on_space=on_space)
        self.callbacks = CallbackBook(self.db, self._ensure_schema)
        self.audit = AuditLog(self.db, self._ensure_schema)
        self.usage = UsageLedger(self.db, self._ensure_schema)
        self.tally = Tally(self.db, self._ensure_schema)
        self.waitlist = WaitList(self.db, self._ensure_schema)
        self.texts = TextLog(self.db, self._ensure_schema)
        self._booking_ids = booking_ids
        self._schema_ready = False
        self._schema_lock = threading.Lock()

    @classmethod
    def from_settings(cls, settings: Settings) -> ReservationStore:
        """The database the settings name (`DATABASE_URL`, else `RESERVATIONS_DB`), else the default place."""
        return cls(settings.secret("database_url") or settings.reservations_db, on_space=settings.on_space)

    # ---- writes ------------------------------------------------------------------------------------

    def book(
        self,
        reservation: Reservation,
        config: RestaurantConfig,
        now: dt.datetime,
        language: str | None = None,
        *,
        source: str = "web",
        actor: str | None = None,
        override: str | None = None,
    ) -> str:
        """Validate and write ``reservation`` atomically; return its booking id or raise :class:`BookingRefused`.

        ``override`` (the owner's console only) says why the party-size limit is set aside; it is recorded.
        """
        self._ensure_schema()
        day = reservation.date
        with self.db.write(around(day)) as connection:
            existing = seated(connection, day - ONE_DAY, day + ONE_DAY) if day else []
            problems = validate_reservation(reservation, config, now, existing, party_limit=override is None)
            if problems:
                raise BookingRefused(problems)
            row = {
                **reservation.to_dict(),
                **_seat(connection, reservation, config, existing, now),
                "language": language or config.default_language,
                "created_at": utc_stamp(now),
                "status": CONFIRMED,
                "source": source,
                "override": override,
            }
            booking_id = self._insert(connection, row, config.booking_id_prefix)
            record(connection, now, actor or f"agent:{source}", "booked", booking_id, _public(row, override))
        return booking_id

    def change(
        self,
        booking_id: str,
        reservation: Reservation,
        config: RestaurantConfig,
        now: dt.datetime,
        *,
        actor: str,
        override: str | None = None,
    ) -> dict[str, Any]:
        """Replace a confirmed booking's details under the same id, re-checking rules and capacity without the
        booking itself; the updated row, or :class:`BookingRefused`."""
        self._ensure_schema()
        booking_id = normalize_id(booking_id)
        before = self.get(booking_id)
        if before is None or before["status"] != CONFIRMED:
            raise BookingRefused([Problem(Code.NOT_FOUND)])
        days = around(reservation.date) | around(dt.date.fromisoformat(before["date"]))
        with self.db.write(days) as connection:
            current = _row(connection, booking_id, lock=True)
            if current is None or current["status"] != CONFIRMED:
                raise BookingRefused([Problem(Code.NOT_FOUND)])
            day = reservation.date
            existing = seated(connection, day - ONE_DAY, day + ONE_DAY, exclude=booking_id) if day else []
            problems = validate_reservation(reservation, config, now, existing, party_limit=override is None)
            if problems:
                raise BookingRefused(problems)
            values = {
                **reservation.to_dict(),
                **_seat(connection, reservation, config, existing, now),
                "updated_at": utc_stamp(now),
                "override": override,
            }
            connection.execute(update(reservations).where(reservations.c.booking_id == booking_id).values(**values))
            changes = {key: [current[key], value] for key, value in values.items() if current.get(key) != value}
            changes.pop("updated_at", None)
            record(connection, now, actor, "changed", booking_id, _public(changes, override))
            return _row(connection, booking_id) or {}

    def cancel(self, booking_id: str, now: dt.datetime, *, actor: str) -> dict[str, Any]:
        """Cancel a confirmed booking (kept, marked cancelled): its table is free at once. The updated row, or
        :class:`BookingRefused` if there is no such confirmed booking."""
        self._ensure_schema()
        booking_id = normalize_id(booking_id)
        before = self.get(booking_id)
        if before is None or before["status"] != CONFIRMED:
            raise BookingRefused([Problem(Code.NOT_FOUND)])
        with self.db.write(around(dt.date.fromisoformat(before["date"]))) as connection:
            done = connection.execute(
                update(reservations)
                .where(reservations.c.booking_id == booking_id, reservations.c.status == CONFIRMED)
                .values(status=CANCELLED, cancelled_at=utc_stamp(now), updated_at=utc_stamp(now))
            )
            if done.rowcount != 1:
                raise BookingRefused([Problem(Code.NOT_FOUND)])
            record(connection, now, actor, "cancelled", booking_id, {"date": before["date"], "time": before["time"]})
            return _row(connection, booking_id) or {}

    def move(self, booking_id: str, tables: Iterable[str], config: RestaurantConfig, now: dt.datetime, *, actor: str):
        """The owner puts a confirmed booking at ``tables`` (one area's, free for its stay as the evening is seated
        now); it stays there, never moved to make room. The updated row, or :class:`BookingRefused`."""
        self._ensure_schema()
        booking_id, wanted = normalize_id(booking_id), tuple(dict.fromkeys(name.strip() for name in tables if name))
        before = self.get(booking_id)
        if before is None or before["status"] != CONFIRMED:
            raise BookingRefused([Problem(Code.NOT_FOUND)])
        day = dt.date.fromisoformat(before["date"])
        with self.db.write(around(day)) as connection:
            start = dt.datetime.fromisoformat(f"{before['date']}T{before['time']}")
            others = seated(connection, day - ONE_DAY, day + ONE_DAY, exclude=booking_id)
            if not wanted or not free_at(wanted, start, config, others):
                raise BookingRefused([Problem(Code.TABLE_TAKEN, "tables", {"tables": "+".join(wanted) or "-"})])
            values = {"tables": "+".join(wanted), "tables_pinned": 1, "updated_at": utc_stamp(now)}
            connection.execute(update(reservations).where(reservations.c.booking_id == booking_id).values(**values))
            record(connection, now, actor, "moved", booking_id, {"tables": [before["tables"], values["tables"]]})
            return _row(connection, booking_id) or {}

    def save_transcript(self, booking_ids: Iterable[str], view: dict[str, Any]) -> None:
        """Keep the view of the call (transcript, card, figures) with the bookings it made or changed."""
        ids = [normalize_id(booking_id) for booking_id in booking_ids]
        if not ids:
            return
        self._ensure_schema()
        with self.db.write() as connection:
            connection.execute(
                update(reservations)
                .where(reservations.c.booking_id.in_(ids))
                .values(transcript=json.dumps(view, ensure_ascii=False, default=str))
            )

    # ---- reads -------------------------------------------------------------------------------------

    def get(self, booking_id: str) -> dict[str, Any] | None:
        self._ensure_schema()
        with self.db.read() as connection:
            return _row(connection, normalize_id(booking_id))

    def transcript(self, booking_id: str) -> dict[str, Any] | None:
        """The view of the call that made or last changed the booking, if one was kept."""
        self._ensure_schema()
        with self.db.read() as connection:
            text = connection.execute(
                select(reservations.c.transcript).where(reservations.c.booking_id == normalize_id(booking_id))
            ).scalar()
        return json.loads(text) if text else None

    def bookings_from(
        self,
        day: dt.date | str,
        *,
        until: dt.date | str | None = None,
        status: str | None = None,
        search: str | None = None,
        limit: int = 1000,
    ) -> list[dict[str, Any]]:
        """Bookings dated ``day`` (to ``until``), optionally of one ``status`` and matching ``search`` (a name or
        id fragment), in date and time order."""
        self._ensure_schema()
        query = select(*_ROW).where(reservations.c.date >= str(day))
        if until is not None:
            query = query.where(reservations.c.date <= str(until))
        if status:
            query = query.where(reservations.c.status == status)
        if search and search.strip():
            pattern = f"%{search.strip().lower()}%"
            query = query.where(
                or_(
                    func.lower(reservations.c.guest_name).like(pattern),
                    func.lower(reservations.c.booking_id).like(pattern),
                )
            )
        query = query.order_by(reservations.c.date, reservations.c.time, reservations.c.id).limit(limit)
        with self.db.read() as connection:
            return [dict(row._mapping) for row in connection.execute(query)]

    def seated_between(self, first: dt.date, last: dt.date, exclude: str | None = None) -> list[Seated]:
        """Confirmed bookings dated ``first`` to ``last`` inclusive as the seating sees them, but for the booking
        ``exclude`` (one being changed does not compete with itself)."""
        self._ensure_schema()
        with self.db.read() as connection:
            return seated(connection, first, last, exclude=exclude)

    # ---- the schema --------------------------------------------------------------------------------

    def _ensure_schema(self) -> None:
        with self._schema_lock:
            if self._schema_ready:
                return
            if self.db.backend == "sqlite":
                self._enable_wal()
            with self.db.write(lock=MIGRATION_LOCK) as connection:
                migrate(connection, utc_stamp(dt.datetime.now(dt.UTC)))
            self._schema_ready = True

    def _enable_wal(self) -> None:
        """Switch the SQLite file to WAL (recorded in the file, so once per file): a committed booking survives a
        crash and readers never wait for a writer. The switch needs the file to itself, and SQLite reports
        "locked" at once instead of waiting, so when several processes open a new file together this retries."""
        deadline = time.monotonic() + SQLITE_BUSY_S
        while True:
            try:
                raw = self.db.engine.raw_connection()  # outside any transaction, which the switch needs
                try:
                    if raw.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
                        raw.execute("PRAGMA journal_mode = WAL")
                finally:
                    raw.close()
                return
            except (sqlite3.DatabaseError, DBAPIError) as error:
                locked = "locked" in str(error)
                if not locked or time.monotonic() > deadline:
                    raise StoreUnavailable(type(getattr(error, "orig", error)).__name__) from error
                time.sleep(0.01)

    def _insert(self, connection: Connection, row: dict[str, Any], prefix: str) -> str:
        for _ in range(_ID_ATTEMPTS):
            booking_id = self._booking_ids(prefix)
            try:
                with connection.begin_nested():  # a savepoint: a taken id must not abort the whole transaction
                    connection.execute(reservations.insert().values(**row, booking_id=booking_id))
                return booking_id
            except IntegrityError as error:
                if "booking_id" not in str(error.orig):
                    raise
        raise RuntimeError(f"no free booking id with prefix {prefix!r} after {_ID_ATTEMPTS} tries")


def _seat(
    connection: Connection,
    reservation: Reservation,
    config: RestaurantConfig,
    existing: list[Seated],
    now: dt.datetime,
) -> dict[str, Any]:
    """The tables a validated booking takes (and where the guest asked to sit), writing the tables of the bookings
    seated again to make room; inside the booking's transaction, so two replicas never sell one table twice."""
    assert reservation.date and reservation.time and reservation.party_size
    area = area_for(reservation.seating, config)
    largest = max(option.seats for option in config.seat_options)  # an owner's override may exceed every table
    start = dt.datetime.combine(reservation.date, reservation.time)
    found = plan(start, min(reservation.party_size, largest), config, existing, area)
    if found is None:  # validated a moment ago in this same transaction: cannot happen
        raise BookingRefused([Problem(Code.FULLY_BOOKED, "time")])
    for booking_id, tables in found.moves.items():
        connection.execute(
            update(reservations).where(reservations.c.booking_id == booking_id).values(tables="+".join(tables))
        )
    before = {booking.booking_id: booking.tables for booking in existing}
    moved = {booking_id: "+".join(tables) for booking_id, tables in found.moves.items() if before.get(booking_id)}
    if moved:
        record(connection, now, "system", "reseated", None, moved)
    return {"seating": area, "tables": "+".join(found.seats.tables), "tables_pinned": 0}


def normalize_id(booking_id: str) -> str:
    return booking_id.strip().upper()


def _row(connection: Connection, booking_id: str, lock: bool = False) -> dict[str, Any] | None:
    query = select(*_ROW).where(reservations.c.booking_id == booking_id)
    if lock:
        query = query.with_for_update()
    row = connection.execute(query).first()
    return dict(row._mapping) if row else None


def _public(values: dict[str, Any], override: str | None) -> dict[str, Any]:
    """What the audit log keeps of a write: the booking's details and any override (the phone is masked)."""
    kept = {key: value for key, value in values.items() if key not in ("created_at", "status", "override")}
    if override:
        kept["override"] = override
    return kept
