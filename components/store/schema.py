"""The store's tables and the versioned migrations that build them, on SQLite and PostgreSQL alike.

Each migration is one numbered step, applied once, in order, inside one write transaction that also holds the
migration lock: replicas starting together apply each step exactly once, and a step that fails leaves the
database as it was (both backends run DDL inside transactions). The steps only add (tables, nullable or
defaulted columns), so an existing database is migrated in place and loses nothing. This small scheme rather
than Alembic: a handful of additive steps, run at start-up by the app itself, needs no migration environment,
script directory or separate command for an owner to learn; SQLAlchemy still writes every statement, so
there is no hand-written dialect SQL.

Version 1 is the schema the first release created (`reservations` with nine columns); a database that has
that table but no `schema_version` is taken to be at version 1.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

from sqlalchemy import Column, Connection, Float, Index, Integer, MetaData, String, Table, Text, inspect, select
from sqlalchemy.schema import CreateColumn

from components.restaurant.fields import MAX_NAME_LENGTH, MAX_REQUESTS_LENGTH, MAX_SEATING_LENGTH


def utc_stamp(moment: dt.datetime) -> str:
    """How every moment is stored: UTC, to the second, in ISO form (so stamps sort and compare as text)."""
    return moment.astimezone(dt.UTC).isoformat(timespec="seconds")


def _v1_columns() -> list[Column]:
    return [
        Column("id", Integer, primary_key=True, autoincrement=True),
        Column("booking_id", String(16), nullable=False, unique=True),
        Column("guest_name", String(MAX_NAME_LENGTH * 2), nullable=False),
        Column("date", String(10), nullable=False),  # YYYY-MM-DD, restaurant-local
        Column("time", String(5), nullable=False),  # HH:MM, restaurant-local
        Column("party_size", Integer, nullable=False),
        Column("requests", Text),
        Column("language", String(8), nullable=False),
        Column("created_at", String(32), nullable=False),  # ISO 8601, UTC
    ]


def _v2_columns() -> list[Column]:
    return [
        Column("status", String(16), nullable=False, server_default="confirmed"),  # confirmed / cancelled
        Column("source", String(16), nullable=False, server_default="web"),  # web / phone / owner
        Column("phone", String(32)),
        Column("updated_at", String(32)),
        Column("cancelled_at", String(32)),
        Column("override", Text),  # why a rule was set aside on purpose, and by whom (the owner's console)
        Column("transcript", Text),  # JSON: the view of the call that made or last changed the booking
    ]


def _v7_columns() -> list[Column]:
    return [
        Column("seating", String(MAX_SEATING_LENGTH * 2)),  # where the guest asked to sit (an area), if anywhere
        Column("tables", String(160)),  # the tables it holds, "T1+T2"; empty until seated (bookings made before)
        Column("tables_pinned", Integer, nullable=False, server_default="0"),  # 1: the owner put it there
    ]


metadata = MetaData()

reservations = Table(
    "reservations",
    metadata,
    *_v1_columns(),
    *_v2_columns(),
    *_v7_columns(),
    Index("reservations_by_slot", "date", "time"),
    sqlite_autoincrement=True,
)

callbacks = Table(
    "callbacks",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("created_at", String(32), nullable=False),
    Column("guest_name", String(MAX_NAME_LENGTH * 2)),
    Column("phone", String(32), nullable=False),
    Column("request", String(MAX_REQUESTS_LENGTH * 2), nullable=False),
    Column("language", String(8), nullable=False),
    Column("source", String(16), nullable=False),
    Column("status", String(16), nullable=False, server_default="open"),  # open / done
    Column("done_at", String(32)),
    Column("done_by", String(80)),
)

audit_log = Table(
    "audit_log",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("at", String(32), nullable=False),
    Column("actor", String(80), nullable=False),  # agent:web, agent:phone, owner:<name>
    Column("action", String(32), nullable=False),  # booked, changed, cancelled, callback_done, ...
    Column("booking_id", String(16)),
    Column("detail", Text),  # JSON
    Index("audit_by_time", "at"),
)

call_usage = Table(
    "call_usage",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("call_id", String(64), nullable=False, unique=True),
    Column("day", String(10), nullable=False),  # the restaurant's date the call started on
    Column("visitor", String(128), nullable=False),
    Column("engine", String(16), nullable=False),
    Column("started_at", String(32), nullable=False),
    Column("seconds", Float, nullable=False, server_default="0"),
    Column("cost_usd", Float, nullable=False, server_default="0"),
    Column("close_reason", String(16)),  # why the call ended (`call.state.CloseReason`), once it has
    Index("usage_by_day", "day", "visitor"),
)

tally = Table(
    "tally",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("kind", String(16), nullable=False),  # lookup_miss, booking, callback (`store.tally`)
    Column("who", String(128), nullable=False),  # the caller: tel:<number>, ip:<address>, hf:<user>
    Column("at", String(32), nullable=False),  # ISO 8601, UTC
    Index("tally_by_who", "kind", "who", "at"),
)

phone_calls = Table(
    "phone_calls",
    metadata,
    Column("call_sid", String(64), primary_key=True),  # Twilio's CallSid, answered once
    Column("at", String(32), nullable=False),
)

waitlist = Table(
    "waitlist",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("created_at", String(32), nullable=False),
    Column("date", String(10), nullable=False),  # the slot asked for, restaurant-local
    Column("time", String(5), nullable=False),
    Column("party_size", Integer, nullable=False),
    Column("guest_name", String(MAX_NAME_LENGTH * 2), nullable=False),
    Column("phone", String(32), nullable=False),
    Column("language", String(8), nullable=False),
    Column("source", String(16), nullable=False),
    Column("status", String(16), nullable=False, server_default="waiting"),  # waiting / notified
    Column("notified_at", String(32)),
    Column("freed_by", String(16)),  # the booking whose cancellation or change freed the table
    Index("waitlist_by_slot", "date", "status"),
)

texts_sent = Table(
    "texts_sent",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("booking_id", String(16), nullable=False),
    Column("kind", String(64), nullable=False),  # booked, changed@<when>, cancelled, reminder@<date>
    Column("at", String(32), nullable=False),
    Column("status", String(16), nullable=False, server_default="claimed"),  # claimed / sent / failed / opted_out
    Index("texts_once", "booking_id", "kind", unique=True),  # one sender per message, whatever the replicas
)

texts_opted_out = Table(
    "texts_opted_out",
    metadata,
    Column("number", String(32), primary_key=True),  # `fields.phone_key` of a number that replied STOP
    Column("at", String(32), nullable=False),
)

schema_version = Table(
    "schema_version",
    metadata,
    Column("version", Integer, primary_key=True, autoincrement=False),
    Column("applied_at", String(32), nullable=False),
)


def _create_v1(connection: Connection) -> None:
    first = Table(
        "reservations",
        MetaData(),
        *_v1_columns(),
        Index("reservations_by_slot", "date", "time"),
        sqlite_autoincrement=True,
    )
    first.create(connection, checkfirst=True)


def _add_columns(connection: Connection, columns: list[Column]) -> None:
    present = {column["name"] for column in inspect(connection).get_columns("reservations")}
    for column in columns:
        if column.name not in present:
            spec = CreateColumn(column).compile(dialect=connection.dialect)
            connection.exec_driver_sql(f"ALTER TABLE reservations ADD COLUMN {spec}")


def _add_v2(connection: Connection) -> None:
    """Statuses, sources, phone numbers, overrides and transcripts on bookings; callbacks and the audit log."""
    _add_columns(connection, _v2_columns())
    callbacks.create(connection, checkfirst=True)
    audit_log.create(connection, checkfirst=True)


def _add_v3(connection: Connection) -> None:
    """Calls counted against the demo's allowances (per visitor, per day, in minutes and dollars)."""
    call_usage.create(connection, checkfirst=True)


def _add_v4(connection: Connection) -> None:
    """Why each counted call ended."""
    if "close_reason" not in {column["name"] for column in inspect(connection).get_columns("call_usage")}:
        spec = CreateColumn(call_usage.c.close_reason).compile(dialect=connection.dialect)
        connection.exec_driver_sql(f"ALTER TABLE call_usage ADD COLUMN {spec}")


def _add_v5(connection: Connection) -> None:
    """What strangers may do, counted across calls and replicas; the phone calls already answered."""
    tally.create(connection, checkfirst=True)
    phone_calls.create(connection, checkfirst=True)


def _add_v6(connection: Connection) -> None:
    """The waitlist for full evenings."""
    waitlist.create(connection, checkfirst=True)


def _add_v7(connection: Connection) -> None:
    """Tables: where a guest asked to sit and the tables each booking holds. Bookings made before have none and
    are seated by the next booking around them (`restaurant.seating`), so every one stays valid."""
    _add_columns(connection, _v7_columns())


def _add_v8(connection: Connection) -> None:
    """Text messages: each one sent once (across replicas), and the numbers that asked for none."""
    texts_sent.create(connection, checkfirst=True)
    texts_opted_out.create(connection, checkfirst=True)


MIGRATIONS: tuple[tuple[int, Callable[[Connection], None]], ...] = (
    (1, _create_v1),
    (2, _add_v2),
    (3, _add_v3),
    (4, _add_v4),
    (5, _add_v5),
    (6, _add_v6),
    (7, _add_v7),
    (8, _add_v8),
)
LATEST = MIGRATIONS[-1][0]


def migrate(connection: Connection, now: str) -> list[int]:
    """Bring the database to `LATEST` inside the caller's (locked) transaction; the versions applied."""
    tables = set(inspect(connection).get_table_names())
    if "schema_version" not in tables:
        schema_version.create(connection)
        if "reservations" in tables:  # made by the first release, which kept no version
            connection.execute(schema_version.insert().values(version=1, applied_at=now))
    current = connection.execute(select(schema_version.c.version)).scalars().all()
    applied = []
    for version, step in MIGRATIONS:
        if version not in current:
            step(connection)
            connection.execute(schema_version.insert().values(version=version, applied_at=now))
            applied.append(version)
    return applied
