"""Where bookings live and how the store talks to it: one SQLAlchemy engine, SQLite or PostgreSQL.

The place, in order: `DATABASE_URL` (`postgresql://…`, for replicas sharing one server), `RESERVATIONS_DB` (a
SQLite file), `/data/reservations.db` when the Space has persistent storage mounted at `/data`, else
`data/reservations.db` next to the app (lost when a Space restarts). The settings name the first two; this
module knows the last two.

What both backends guarantee, so the rest of the store is written once:

* **capacity is decided in one transaction** (`write`): SQLite takes its database write lock up front
  (`BEGIN IMMEDIATE`); PostgreSQL takes a transaction-scoped advisory lock per affected date
  (`pg_advisory_xact_lock`, in date order, so two writers never wait on each other in a circle). An
  advisory lock rather than SERIALIZABLE: the capacity rule reads a range of other rows, which SERIALIZABLE
  would answer with serialization failures to retry under load, while a lock per date simply queues the
  few writers of the same evening and leaves other dates alone;
* **nothing hangs and nothing leaks**: bounded connect, statement, lock and pool waits; a database that is
  down or unreachable raises `StoreUnavailable` (which the tools turn into "could not save, nothing was
  booked"), and a transaction that fails is rolled back whole.
"""

from __future__ import annotations

import datetime as dt
import os
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import Connection, Engine, create_engine, event, func, select
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import DBAPIError, IntegrityError, SQLAlchemyError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.pool import NullPool

from components.restaurant.book import StoreUnavailable
from components.settings import PROJECT_ROOT

DEFAULT_DB_PATH = PROJECT_ROOT / "data" / "reservations.db"
PERSISTENT_DIR = Path("/data")  # a Space's persistent storage, when the owner has added it

SQLITE_BUSY_S = 15.0  # how long a writer waits for SQLite's lock (a booking holds it for milliseconds)
PG_CONNECT_S = 5
PG_STATEMENT_MS = 10_000  # also bounds the wait for another writer's lock on the same date
POOL_WAIT_S = 10.0
_LOCK_SPACE = 0x5253  # first key of our advisory locks ("RS"); the second is the date's ordinal
MIGRATION_LOCK = 0  # second key of the lock that migrations take


EPHEMERAL_WARNING = (
    "予約はこのSpaceの一時ディスク（{place}）に保存されています。Spaceの再起動・再ビルド・スリープで失われます。"
    "Settings → Persistent storage を追加するか、Secret の DATABASE_URL に PostgreSQL を設定してください。\n"
    "Bookings are kept on this Space's temporary disk ({place}) and will be lost when the Space restarts, is "
    "rebuilt or sleeps. Add persistent storage (Settings → Persistent storage) or set the secret DATABASE_URL to "
    "a PostgreSQL database."
)


def default_location() -> str:
    """Where bookings go when the owner names no database: persistent storage if the Space has it."""
    if PERSISTENT_DIR.is_dir() and os.access(PERSISTENT_DIR, os.W_OK):
        return str(PERSISTENT_DIR / "reservations.db")
    return str(DEFAULT_DB_PATH)


def _url(location: str | os.PathLike) -> URL:
    text = str(location)
    if "://" not in text:
        return URL.create("sqlite", database=str(Path(text)))
    url = make_url(text)
    if url.drivername in ("postgres", "postgresql"):  # hosted providers hand out the plain scheme
        url = url.set(drivername="postgresql+psycopg")
    if url.get_backend_name() not in ("sqlite", "postgresql"):
        raise ValueError(f"DATABASE_URL must be a postgresql:// URL (got a {url.get_backend_name()} URL)")
    return url


class Database:
    """One database (a URL or a SQLite path), opened lazily: constructing it touches nothing. `on_space`: the app
    runs on a Hugging Face Space, whose own disk is wiped on restart."""

    def __init__(self, location: str | os.PathLike | None = None, *, on_space: bool = False) -> None:
        self.url = _url(location if location is not None else default_location())
        self.on_space = on_space
        self.backend = self.url.get_backend_name()
        self.path = Path(self.url.database) if self.backend == "sqlite" and self.url.database else None
        self._engine: Engine | None = None
        self._lock = threading.Lock()

    @property
    def persistent(self) -> bool:
        """Whether bookings outlive a Space restart: a database server, or a file on persistent storage."""
        if self.backend != "sqlite" or not self.on_space:
            return True
        return self.path is not None and PERSISTENT_DIR in self.path.resolve().parents

    def warning(self) -> str | None:
        """What the owner must know about where bookings are kept, or None when they are safe."""
        return None if self.persistent else EPHEMERAL_WARNING.format(place=self.describe())

    def describe(self) -> str:
        """Where bookings are kept, safe to log (no password)."""
        if self.backend == "sqlite":
            return f"SQLite file {self.path}"
        return f"PostgreSQL at {self.url.host or 'localhost'}:{self.url.port or 5432}/{self.url.database or ''}"

    @property
    def engine(self) -> Engine:
        with self._lock:
            if self._engine is None:
                self._engine = self._create_engine()
            return self._engine

    def _create_engine(self) -> Engine:
        if self.backend == "sqlite":
            assert self.path is not None
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as error:
                raise StoreUnavailable(f"cannot create {self.path.parent}: {error.strerror}") from None
            # A connection per use: SQLite connections are cheap, and none is ever shared between threads.
            engine = create_engine(
                self.url, poolclass=NullPool, connect_args={"timeout": SQLITE_BUSY_S, "check_same_thread": False}
            )
            event.listen(engine, "connect", _sqlite_connect)
            event.listen(engine, "begin", _sqlite_begin)
            return engine
        return create_engine(
            self.url,
            pool_size=5,
            max_overflow=10,
            pool_timeout=POOL_WAIT_S,
            pool_pre_ping=True,  # a server that restarted leaves dead pooled connections: test before use
            pool_recycle=600,
            connect_args={
                "connect_timeout": PG_CONNECT_S,
                "options": f"-c statement_timeout={PG_STATEMENT_MS} -c lock_timeout={PG_STATEMENT_MS}",
                "application_name": "reservation-voicebot",
            },
        )

    @contextmanager
    def read(self) -> Iterator[Connection]:
        """A read-only transaction."""
        with self._translated(), self.engine.connect() as connection, connection.begin():
            yield connection

    @contextmanager
    def write(self, days: Iterable[dt.date] = (), *, lock: int | None = None) -> Iterator[Connection]:
        """A write transaction that holds the locks for `days` (and the extra lock `lock`) until it commits."""
        with self._translated(), self.engine.connect() as connection:
            connection = connection.execution_options(sqlite_write=True)
            with connection.begin():
                if self.backend == "postgresql":
                    keys = sorted({day.toordinal() for day in days} | ({lock} if lock is not None else set()))
                    for key in keys:
                        connection.execute(select(func.pg_advisory_xact_lock(_LOCK_SPACE, key)))
                yield connection

    @contextmanager
    def _translated(self) -> Iterator[None]:
        """A database that is down, locked for too long or unreadable becomes `StoreUnavailable`."""
        try:
            yield
        except IntegrityError:
            raise
        except (DBAPIError, PoolTimeout) as error:
            raise StoreUnavailable(type(getattr(error, "orig", None) or error).__name__) from error
        except SQLAlchemyError as error:
            raise StoreUnavailable(type(error).__name__) from error


def _sqlite_connect(dbapi_connection, _record) -> None:  # noqa: ANN001 (SQLAlchemy's event signature)
    # No implicit transactions from the driver: `_sqlite_begin` says exactly how each one begins.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA synchronous = FULL")
    cursor.close()


def _sqlite_begin(connection: Connection) -> None:
    """Writers take SQLite's write lock at BEGIN, so the loser of a race waits and then sees the winner's row."""
    immediate = connection.get_execution_options().get("sqlite_write", False)
    connection.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")
