"""The booking store: one SQLite file, where every booking is decided in one write transaction.

Several calls can run at once (threads in the Space, or several processes on
one file), and two of them may race for the last table. :meth:`ReservationStore.book`
therefore takes SQLite's write lock first (``BEGIN IMMEDIATE``), then reads the
neighbouring bookings, re-runs :func:`components.restaurant.rules.validate_reservation` and
inserts, all before committing; the loser of a race waits for the lock and then
sees the winner's row. WAL journaling with ``synchronous=FULL`` means a
committed booking survives a crash, and an uncommitted one leaves no trace.
Each operation opens its own connection, so the store is safe to share between
threads without a lock of its own.
"""

from __future__ import annotations

import datetime as dt
import os
import secrets
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from components.restaurant.config import PROJECT_ROOT, RestaurantConfig
from components.restaurant.fields import Reservation
from components.restaurant.problems import Problem
from components.restaurant.rules import validate_reservation

DB_ENV_VAR = "RESERVATIONS_DB"
DEFAULT_DB_PATH = PROJECT_ROOT / "data" / "reservations.db"

# Booking ids are read aloud over the phone: no 0/O, 1/I/L to confuse.
ID_ALPHABET = "23456789ABCDEFGHJKMNPQRSTUVWXYZ"
ID_LENGTH = 4
_ID_ATTEMPTS = 50
_BUSY_TIMEOUT_S = 30.0

_SCHEMA = (
    """
    CREATE TABLE IF NOT EXISTS reservations (
        id          INTEGER PRIMARY KEY AUTOINCREMENT,
        booking_id  TEXT    NOT NULL UNIQUE,
        guest_name  TEXT    NOT NULL,
        date        TEXT    NOT NULL,            -- YYYY-MM-DD, restaurant-local
        time        TEXT    NOT NULL,            -- HH:MM, restaurant-local
        party_size  INTEGER NOT NULL CHECK (party_size > 0),
        requests    TEXT,
        language    TEXT    NOT NULL,
        created_at  TEXT    NOT NULL             -- ISO 8601, UTC
    )
    """,
    "CREATE INDEX IF NOT EXISTS reservations_by_slot ON reservations (date, time)",
)
_COLUMNS = "booking_id, guest_name, date, time, party_size, requests, language, created_at"
_PLACEHOLDERS = ", ".join(f":{column}" for column in _COLUMNS.split(", "))


def new_booking_id(prefix: str) -> str:
    """A random id like ``AS-7K3Q``: short enough to read aloud, random so ids reveal nothing about volume."""
    return f"{prefix}-{''.join(secrets.choice(ID_ALPHABET) for _ in range(ID_LENGTH))}"


class BookingRefused(Exception):
    """The store would not write a booking; ``problems`` say why (same codes as the rules)."""

    def __init__(self, problems: Sequence[Problem]) -> None:
        super().__init__(", ".join(problem.code.value for problem in problems))
        self.problems = list(problems)


class ReservationStore:
    """Bookings in a SQLite file (``$RESERVATIONS_DB`` or ``data/reservations.db`` by default).

    The file, its folder and the schema are created on first use, so merely
    constructing a store (e.g. at import of the app) touches nothing on disk.
    """

    def __init__(self, path: str | os.PathLike | None = None) -> None:
        self.path = Path(path or os.environ.get(DB_ENV_VAR) or DEFAULT_DB_PATH)
        self._schema_ready = False
        self._schema_lock = threading.Lock()

    def book(
        self, reservation: Reservation, config: RestaurantConfig, now: dt.datetime, language: str | None = None
    ) -> str:
        """Validate and write ``reservation`` atomically; return its booking id or raise :class:`BookingRefused`."""
        with self._connection() as connection:
            connection.execute("BEGIN IMMEDIATE")
            try:
                existing = self._starts_near(connection, reservation.date) if reservation.date else []
                problems = validate_reservation(reservation, config, now, existing)
                if problems:
                    raise BookingRefused(problems)
                booking_id = self._insert(connection, reservation, config, now, language or config.default_language)
                connection.execute("COMMIT")
            except BaseException:
                if connection.in_transaction:
                    connection.execute("ROLLBACK")
                raise
        return booking_id

    def get(self, booking_id: str) -> dict | None:
        with self._connection() as connection:
            row = connection.execute(
                f"SELECT {_COLUMNS} FROM reservations WHERE booking_id = ?", (booking_id.strip().upper(),)
            ).fetchone()
        return dict(row) if row else None

    def bookings_on(self, day: dt.date | str) -> list[dict]:
        with self._connection() as connection:
            rows = connection.execute(
                f"SELECT {_COLUMNS} FROM reservations WHERE date = ? ORDER BY time, id", (str(day),)
            ).fetchall()
        return [dict(row) for row in rows]

    def count(self) -> int:
        with self._connection() as connection:
            return connection.execute("SELECT COUNT(*) FROM reservations").fetchone()[0]

    def starts_between(self, first: dt.date, last: dt.date) -> list[dt.datetime]:
        """Start times (restaurant-local wall clock) of bookings dated ``first`` to ``last`` inclusive."""
        with self._connection() as connection:
            return self._starts(connection, first, last)

    @staticmethod
    def _starts(connection: sqlite3.Connection, first: dt.date, last: dt.date) -> list[dt.datetime]:
        rows = connection.execute(
            "SELECT date, time FROM reservations WHERE date BETWEEN ? AND ?", (first.isoformat(), last.isoformat())
        )
        return [dt.datetime.fromisoformat(f"{day}T{moment}") for day, moment in rows]

    def _starts_near(self, connection: sqlite3.Connection, day: dt.date) -> list[dt.datetime]:
        """Bookings that can share a table with one on ``day``: a stay may run past midnight."""
        one_day = dt.timedelta(days=1)
        return self._starts(connection, day - one_day, day + one_day)

    def _insert(
        self,
        connection: sqlite3.Connection,
        reservation: Reservation,
        config: RestaurantConfig,
        now: dt.datetime,
        language: str,
    ) -> str:
        row = {
            **reservation.to_dict(),
            "language": language,
            "created_at": now.astimezone(dt.UTC).isoformat(timespec="seconds"),
        }
        for _ in range(_ID_ATTEMPTS):
            row["booking_id"] = new_booking_id(config.booking_id_prefix)
            try:
                connection.execute(f"INSERT INTO reservations ({_COLUMNS}) VALUES ({_PLACEHOLDERS})", row)
                return row["booking_id"]
            except sqlite3.IntegrityError as error:
                if "booking_id" not in str(error):
                    raise
        raise RuntimeError(f"no free booking id with prefix {config.booking_id_prefix!r} after {_ID_ATTEMPTS} tries")

    @contextmanager
    def _connection(self) -> Iterator[sqlite3.Connection]:
        self._ensure_schema()
        connection = self._open()
        try:
            yield connection
        finally:
            connection.close()

    def _open(self) -> sqlite3.Connection:
        # isolation_level=None: no implicit transactions; book() says exactly where its transaction begins.
        connection = sqlite3.connect(self.path, timeout=_BUSY_TIMEOUT_S, isolation_level=None)
        connection.row_factory = sqlite3.Row
        connection.execute("PRAGMA synchronous = FULL")
        return connection

    def _ensure_schema(self) -> None:
        with self._schema_lock:
            if self._schema_ready:
                return
            self.path.parent.mkdir(parents=True, exist_ok=True)
            connection = self._open()
            try:
                _enable_wal(connection)
                for statement in _SCHEMA:
                    connection.execute(statement)
            finally:
                connection.close()
            self._schema_ready = True


def _enable_wal(connection: sqlite3.Connection) -> None:
    """Switch the file to WAL (recorded in the file, so once per file).

    The switch needs the file to itself and SQLite reports "locked" at once
    instead of waiting, so when several processes open a new file together this
    retries until the busy timeout.
    """
    deadline = time.monotonic() + _BUSY_TIMEOUT_S
    while True:
        try:
            if connection.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
                connection.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as error:
            if "locked" not in str(error) or time.monotonic() > deadline:
                raise
            time.sleep(0.01)
